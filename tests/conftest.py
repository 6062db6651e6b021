import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def _folder(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real {name} data absent: {path} does not exist (see ../shared/data/README.md)")
    return path


@pytest.fixture
def nab_root() -> Path:
    return _folder("NAB")


@pytest.fixture
def msl_root() -> Path:
    return _folder("MSL")


@pytest.fixture
def smd_root() -> Path:
    return _folder("SMD")


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], url: str, *, env: dict | None = None, timeout: float = 120, cwd=None):
    """Start a real server, ``cmd`` (in ``cwd``), in its own process group; wait until ``url``
    answers; yield the process; then stop the whole group (SIGTERM)."""
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, f"{cmd[0]} did not start"
                time.sleep(0.5)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@functools.cache
def _migrated_prefect_home() -> Path:
    """A Prefect home whose database a temporary API has created and migrated, once a session."""
    home = Path(tempfile.mkdtemp(prefix="vigil-prefect-home-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    code = "from flows.prefect_api import prefect_api\nwith prefect_api():\n    pass\n"
    subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PREFECT_HOME": str(home)}, check=True, timeout=300
    )
    return home


def prefect_home(path: Path) -> str:
    """``path`` as the Prefect home of a test's commands: its own database, started as a copy of
    one migrated once a session (a new database spends some 5 s on migrations at the first
    command that opens it, a cost a user pays once and the tests would pay in every workspace).
    A home that has a database already keeps it."""
    path = Path(path)
    if not (path / "prefect.db").exists():
        path.mkdir(parents=True, exist_ok=True)
        template = _migrated_prefect_home()
        for name in ("prefect.db", "prefect.db-wal", "memo_store.toml"):  # the log it was left with; block types done
            if (template / name).exists():
                shutil.copy2(template / name, path / name)
    return str(path)


@contextlib.contextmanager
def prefect_server(home: Path):
    """A real `prefect server` on a free loopback port, its state under ``home``; yields the
    `prefect` command and the environment that points clients at it."""
    port = free_port()
    prefect = str(Path(sys.executable).parent / "prefect")
    env = {**os.environ, "PREFECT_HOME": prefect_home(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    server = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with serving(server, f"http://127.0.0.1:{port}/api/health", env=env):
        yield prefect, env


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server (Debian's package) on a free loopback port, in a temporary data
    folder, stopped after the session; its SQLAlchemy URL. Skips where the package is absent
    (`make test` installs it where the machine allows)."""
    import glob
    import pwd
    import shutil

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL absent: no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")
    bin_dir = Path(bins[-1]).parent
    as_user: list[str] = []
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="vigil-postgres-"))  # not under pytest's 0700 folder: postgres reads it
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as its own user
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data, sockets, port = folder / "data", folder, free_port()

    def run(*cmd):
        subprocess.run([*as_user, *map(str, cmd)], check=True, capture_output=True, text=True, cwd=folder)

    run(bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    run(bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", folder / "log", "-w", "start")
    try:
        run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "vigil")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/vigil"
    finally:
        run(bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
