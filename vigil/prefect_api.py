"""The Prefect API a command's flows report to. Where ``PREFECT_API_URL`` names a server (a
persistent one, `vigil ui`), that one. Otherwise a temporary one, started here rather than by
Prefect so that it dies with the command: Prefect's own temporary server is stopped at exit by
`atexit`, which a SIGKILL or a second Ctrl-C skips, leaving it running with its port. Here the
kernel stops it when its parent dies (``PR_SET_PDEATHSIG``), whatever the parent died of.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, suppress

from vigil.plumbing import (
    OWNER_HOST,
    die_with_parent,
    free_port,
    marks_as_tags,
    marks_from_tags,
    owner_gone,
    owner_marks,
)

# the temporary server Prefect itself would start: no UI, ephemeral (only the services a
# short-lived API needs: no scheduler, no late-run or cancellation loops)
TEMPORARY_API_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def start_server(env: dict, app_dir, startup_seconds: float, httpx, while_starting: Callable[[], None] = lambda: None):
    """Start the API on a free loopback port; return once it answers, or has exited.
    ``while_starting`` runs here while the server boots in its own process."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(app_dir),
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
        preexec_fn=die_with_parent(os.getpid()),
        # outside the command's process group: a SIGTERM to the group (`timeout`, a service
        # manager) reaches the command, which unwinds while its API still answers, then stops it
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        while_starting()
    except BaseException:  # Ctrl-C during it: the server goes too, not only at our exit
        server.kill()
        server.wait()
        raise
    deadline = time.monotonic() + startup_seconds
    while server.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        if server.poll() is None:  # neither up nor down in time
            server.kill()
            server.wait()
    return server, url


@contextmanager
def prefect_api(startup_seconds: float = 60.0, warm_up: Sequence[str] = ()):
    """Run the body against the configured Prefect API, or a temporary one that dies with us.
    ``warm_up``: modules the body will import, imported while a temporary API starts."""
    import httpx
    import prefect
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True), **TEMPORARY_API_ENV}
    for _ in range(3):  # a free port can be taken before the server binds it: try another
        server, url = start_server(
            env, prefect.__module_path__.parent, startup_seconds, httpx, lambda: _import_quietly(warm_up)
        )
        if server.poll() is None:
            break
    else:
        raise RuntimeError(f"the temporary Prefect API did not start (exit code {server.poll()})")
    try:
        # No flow run heartbeats: they feed a server's zombie detection, and this API runs no
        # services and dies with the command (its runs' crashes are found by process tags,
        # `crash_runs_of_dead_processes`). Each flow run's end waits up to a second for the
        # heartbeat thread's sleep: 3.0-3.6 s of a 30-34 s `vigil run`, measured.
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            try:
                yield url
            finally:
                _drain_to(url)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _import_quietly(modules: Sequence[str]) -> None:
    """Import ``modules`` while the server boots in its own process (4 s here), so the seconds
    the body would spend on them later overlap it (a retry finds them in ``sys.modules``). A
    module that fails to import is left to the body, whose own import says why in context."""
    for name in modules:
        with suppress(ImportError):
            importlib.import_module(name)


def _drain_to(url: str) -> None:
    """Send the logs and events Prefect still holds before the API they go to stops (else Prefect
    reports 'Error logging to API' at exit). A failure here must not hide the run's own error."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=10)
        except Exception as exc:  # the run's outcome stands; say what was lost
            print(f"vigil: could not send Prefect's last {worker.__name__} items to {url}: {exc}", file=sys.stderr)


def process_tags() -> list[str]:
    """Tags on every flow run of this command: which process runs it, so that an interrupted or
    killed run can be told from a live one."""
    return marks_as_tags(owner_marks())


def _open_runs(client, tags: list[str], also_crashed: bool = False):
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    types = [StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED] + ([StateType.CRASHED] if also_crashed else [])
    open_states = FlowRunFilterStateType(any_=types)
    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=tags), state=FlowRunFilterState(type=open_states))
    )


def cancel_own_runs(message: str) -> int:
    """Mark this process's open flow runs Cancelled (after Ctrl-C), and those Prefect's engine
    marked Crashed on the KeyboardInterrupt: a run a user stopped was cancelled, not crashed."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        runs = _open_runs(client, process_tags(), also_crashed=True)
        for run in runs:
            client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
    return len(runs)


def crash_runs_of_dead_processes() -> int:
    """Flow runs still open whose process on this machine is gone (SIGKILL, power) become Crashed."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    host = marks_as_tags({OWNER_HOST: owner_marks()[OWNER_HOST]})
    crashed = 0
    with get_client(sync_client=True) as client:
        for run in _open_runs(client, host):
            pid = owner_gone(marks_from_tags(run.tags))
            if pid is None:
                continue
            client.set_flow_run_state(
                run.id, Crashed(message=f"process {pid} was gone; found by a later run"), force=True
            )
            crashed += 1
    return crashed
