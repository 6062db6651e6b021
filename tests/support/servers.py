"""Real servers for the tests, started on a free loopback port in a temporary folder and
stopped after: any command (`serving`), Prefect (`prefect_home`, `prefect_server`),
PostgreSQL (`postgres`), Chromium through Debian's chromedriver (`WebDriver`), Debian's
Alertmanager (`running_alertmanager`) and a webhook receiver that records what it is sent
(`Receiver`)."""

import atexit
import base64
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vigil.plumbing import free_port

from . import REPO

__all__ = [
    "ALERTMANAGER",
    "Receiver",
    "dask_cluster",
    "WebDriver",
    "free_port",
    "postgres",
    "prefect_env",
    "prefect_home",
    "prefect_server",
    "openmetrics",
    "running_alertmanager",
    "running_prometheus",
    "serving",
]


@contextlib.contextmanager
def serving(cmd: list[str], url: str, *, env: dict | None = None, timeout: float = 120, cwd=None, refusal_ok=False):
    """Start a real server, ``cmd`` (in ``cwd``), in its own process group; wait until ``url``
    answers (``refusal_ok``: an HTTP error status counts as an answer); yield the process; then
    stop the whole group (SIGTERM)."""
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except urllib.error.HTTPError:
                if refusal_ok:
                    break
                assert time.monotonic() < deadline and proc.poll() is None, f"{cmd[0]} did not start"
                time.sleep(0.5)
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, f"{cmd[0]} did not start"
                time.sleep(0.5)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


class WebDriver:
    """The W3C WebDriver protocol spoken to Debian's chromedriver: a real headless Chromium."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self._urlopen = urllib.request.urlopen
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,900"]  # fmt: skip
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        return json.loads(self._urlopen(req, timeout=60).read())["value"]

    def go(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def js(self, script: str):
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": []})

    def wait_for(self, script: str, deadline_s: float = 60):
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            value = self.js(script)
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"page never satisfied: {script}")

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot")))

    def alert_open(self) -> bool:
        """Whether a dialog (alert, confirm, prompt) is open on the page."""
        try:
            self._call("GET", f"/session/{self.session}/alert/text")
            return True
        except urllib.error.HTTPError as exc:  # 404 "no such alert"
            if exc.code == 404:
                return False
            raise

    def quit(self) -> None:
        self._call("DELETE", f"/session/{self.session}")


def mlflow_server_env() -> dict:
    """The environment of a test's `mlflow server`, as `vigil ui` starts MLflow: without the job
    runners (a process per job kind, each importing MLflow) for GenAI jobs Vigil never submits."""
    from vigil.plumbing import MLFLOW_WITHOUT_JOBS

    return {**os.environ, **MLFLOW_WITHOUT_JOBS}


@functools.cache
def _migrated_prefect_home() -> Path:
    """A Prefect home whose database a temporary API has created and migrated, once a session."""
    home = Path(tempfile.mkdtemp(prefix="vigil-prefect-home-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    code = "from vigil.prefect_api import prefect_api\nwith prefect_api():\n    pass\n"
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


@functools.cache
def shared_prefect_api() -> str:
    """A Prefect API this test process's `vigil run` and `vigil score` commands share, started
    once (as `vigil.prefect_api` starts its temporary one: uvicorn on a free loopback port, its
    own home, dying with this process) and stopped at exit. Each command would otherwise start
    a temporary API of its own: some 3 s of CPU each, a tenth of the suite. The tests of the
    temporary API itself (interrupts, orphans) ask `prefect_env` for their own."""
    import httpx
    import prefect

    from vigil.prefect_api import TEMPORARY_API_ENV, start_server

    home = prefect_home(Path(tempfile.mkdtemp(prefix="vigil-prefect-shared-")))
    env = {**os.environ, "PREFECT_HOME": home, **TEMPORARY_API_ENV}
    for _ in range(3):  # a free port can be taken before the server binds it
        server, url = start_server(env, prefect.__module_path__.parent, 120.0, httpx)
        if server.poll() is None:
            break
    else:
        raise RuntimeError("the shared Prefect API did not start")

    def stop():
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(home, ignore_errors=True)

    atexit.register(stop)
    return url


def prefect_env(folder: Path, own_api: bool = False, **extra: str) -> dict:
    """The environment of a command with its own Prefect home, ``folder/prefect-home``, its flow
    runs reported to the Prefect API this test process shares (`shared_prefect_api`); with
    ``own_api``, to a temporary API the command starts and stops itself, as it does for a user
    (the tests of that API: interrupts, orphans)."""
    env = {**os.environ, "PREFECT_HOME": prefect_home(Path(folder) / "prefect-home"), **extra}
    if not own_api and "PREFECT_API_URL" not in extra:
        env["PREFECT_API_URL"] = shared_prefect_api()
    return env


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


@contextlib.contextmanager
def postgres():
    """A real PostgreSQL server (Debian's package) on a free loopback port, in a temporary data
    folder, stopped and removed when the block ends; yields its SQLAlchemy URL. Skips where the
    package is absent (`make test` installs it where the machine allows). The `postgres_url`
    fixture holds one for the session."""
    import glob
    import pwd

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL absent: no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")
    bin_dir = Path(bins[-1]).parent
    as_user: list[str] = []
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

    try:
        run(bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres")
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
        run(bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", folder / "log", "-w", "start")
        try:
            run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "vigil")
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/vigil"
        finally:
            run(bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


class Receiver:
    """A webhook receiver on a loopback port: every JSON body posted to it, in order."""

    def __init__(self):
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, seconds: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + seconds
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(self.bodies)


@contextlib.contextmanager
def running_alertmanager(folder, receiver: Receiver, port: int):
    """Alertmanager routing every incident (grouped by incident) to ``receiver`` within a
    second, resolved ones too; yields its base URL."""
    if ALERTMANAGER is None:
        pytest.skip("Debian's prometheus-alertmanager is not installed (`make test` installs it as root)")
    hook = {"url": receiver.url, "send_resolved": True}
    route = {"receiver": "hook", "group_by": ["incident"], "group_wait": "1s", "group_interval": "1s",
             "repeat_interval": "1h"}  # fmt: skip
    config = folder / "alertmanager.yml"
    config.write_text(json.dumps({"route": route, "receivers": [{"name": "hook", "webhook_configs": [hook]}]}))
    cmd = [ALERTMANAGER, f"--config.file={config}", f"--storage.path={folder / 'alertmanager'}",
           f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"]  # fmt: skip
    with serving(cmd, f"http://127.0.0.1:{port}/-/ready"):
        yield f"http://127.0.0.1:{port}"


PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")


def openmetrics(frame, features: list[str], series: str, prefix: str = "vigil_", time_column: str = "timestamp") -> str:
    """``frame``'s metrics as OpenMetrics text, one gauge ``<prefix><feature>`` per feature,
    labelled ``instance=<series>``, at the frame's times: what `promtool tsdb
    create-blocks-from openmetrics` backfills."""
    import pandas as pd

    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    seconds = ((pd.to_datetime(frame[time_column], utc=True) - epoch) // pd.Timedelta(seconds=1)).tolist()
    lines = []
    for f in features:
        lines.append(f"# TYPE {prefix}{f} gauge")
        lines += [f'{prefix}{f}{{instance="{series}"}} {v!r} {t}' for v, t in zip(frame[f].tolist(), seconds)]
    return "\n".join([*lines, "# EOF"]) + "\n"


@contextlib.contextmanager
def running_prometheus(folder: Path, backfill: str, port: int):
    """Debian's Prometheus on a loopback port, its TSDB backfilled from the OpenMetrics text
    ``backfill`` with its own tool (promtool), no scrapes; yields its base URL. Its lookback
    delta is 30 s: the backfilled samples lie on a 60 s grid and have no staleness markers, so
    a step past the last sample reads nothing instead of the last value for 5 minutes."""
    if not (PROMETHEUS and PROMTOOL):
        pytest.skip("Debian's prometheus is not installed (`make test` installs it as root)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "backfill.om").write_text(backfill)
    data = folder / "data"
    made = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(folder / "backfill.om"),
                           str(data)], capture_output=True, text=True)  # fmt: skip
    assert made.returncode == 0, made.stderr
    (folder / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
    cmd = [PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
           "--storage.tsdb.retention.time=100y", "--query.lookback-delta=30s",
           f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]  # fmt: skip
    with serving(cmd, f"http://127.0.0.1:{port}/-/ready"):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: int = 2):
    """A real Dask cluster on loopback: `dask scheduler` and ``workers`` `dask worker` processes
    of one thread each (this venv's commands, as an operator starts them, in ``folder``); yields
    the scheduler's address once every worker has joined; stops them all after."""
    from distributed import Client

    folder.mkdir(parents=True, exist_ok=True)
    bin_ = Path(sys.executable).parent
    port, dashboard = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = [str(bin_ / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port)]
    scheduler += ["--dashboard-address", f"127.0.0.1:{dashboard}"]
    worker = [str(bin_ / "dask"), "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"]
    worker += ["--local-directory", str(folder)]
    with contextlib.ExitStack() as stack:
        stack.enter_context(serving(scheduler, f"http://127.0.0.1:{dashboard}/health", cwd=folder))
        for _ in range(workers):
            proc = subprocess.Popen(
                worker, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            stack.callback(lambda p=proc: (os.killpg(p.pid, signal.SIGTERM), p.wait(timeout=30)))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
