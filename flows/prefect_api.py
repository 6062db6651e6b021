"""The Prefect API a command's flows report to. Where ``PREFECT_API_URL`` names a server (a
persistent one, `vigil ui`), that one. Otherwise a temporary one, started here rather than by
Prefect so that it dies with the command: Prefect's own temporary server is stopped at exit by
`atexit`, which a SIGKILL or a second Ctrl-C skips, leaving it running with its port. Here the
kernel stops it when its parent dies (``PR_SET_PDEATHSIG``), whatever the parent died of.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent: int):
    def set_up() -> None:  # runs in the child, between fork and exec
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return set_up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def prefect_api(startup_seconds: float = 60.0):
    """Run the body against the configured Prefect API, or a temporary one that dies with us."""
    import httpx
    import prefect
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    port = _free_port()
    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        # the temporary server Prefect itself would start: no UI, ephemeral
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(prefect.__module_path__.parent),
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ],
        env=env,
        preexec_fn=_die_with_parent(os.getpid()),
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the temporary Prefect API on 127.0.0.1:{port} did not start (exit code {server.poll()})"
                )
            time.sleep(0.1)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
