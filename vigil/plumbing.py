"""Process plumbing that every layer needs, one copy each: a free loopback port, the wait for a
server started as a child to answer, a child that dies with its parent, and which process owns
a run, so that a later run can tell a crashed one (its process gone) from a live one. Prefect
flow runs, MLflow runs and Optuna trials all carry the same two marks.

A leaf: it imports nothing of the repo (tests/test_layout.py checks it), so tasks and flows
may use it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Mapping

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
OWNER_PID = "vigil.pid"
OWNER_HOST = "vigil.host"


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answers(url: str, proc, seconds: float) -> str | None:
    """Wait for the server ``proc`` started to answer ``url`` (a 2xx reply): None once it does,
    else why not, to finish a sentence naming the server ("exited with code 1", "did not answer
    at URL within 60 s")."""
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3):
                return None
        except (OSError, ValueError):
            pass
        if proc.poll() is not None:
            return f"exited with code {proc.returncode} before it answered at {url}"
        if time.monotonic() > deadline:
            return f"did not answer at {url} within {seconds:g} s"
        time.sleep(0.3)


def die_with_parent(parent: int):
    """A ``preexec_fn`` for `subprocess.Popen`: the kernel sends the child SIGTERM when its
    parent (pid ``parent``) dies, whatever the parent died of (``PR_SET_PDEATHSIG``)."""

    def set_up() -> None:  # runs in the child, between fork and exec
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return set_up


def owner_marks() -> dict[str, str]:
    """This process's marks for a run it starts: its pid and its host."""
    return {OWNER_PID: str(os.getpid()), OWNER_HOST: socket.gethostname()}


def owner_gone(marks: Mapping[str, object]) -> str | None:
    """The pid of the process that owned a run with these marks if it ran on this machine and
    is gone (SIGKILL, power); None where it lives, ran elsewhere (another host's runs are left
    to their own), or the run carries no marks."""
    import psutil

    pid = marks.get(OWNER_PID)
    if marks.get(OWNER_HOST) != socket.gethostname() or not pid or not str(pid).isdigit():
        return None
    return None if psutil.pid_exists(int(pid)) else str(pid)


def marks_as_tags(marks: Mapping[str, str]) -> list[str]:
    """Marks as the ``key:value`` strings of a store whose tags are plain strings (Prefect's)."""
    return [f"{k}:{v}" for k, v in marks.items()]


def marks_from_tags(tags) -> dict[str, str]:
    """The marks among ``key:value`` tag strings."""
    pairs = (t.split(":", 1) for t in tags if ":" in t)
    return {k: v for k, v in pairs if k in (OWNER_PID, OWNER_HOST)}


def debugging() -> bool:
    """``--debug`` on the command line, or VIGIL_DEBUG=1: show tracebacks and Prefect's console logs."""
    return "--debug" in sys.argv or os.environ.get("VIGIL_DEBUG", "") not in ("", "0")


def quiet_prefect() -> None:
    """Prefect without a server (a temporary local API per process) and quiet consoles; set
    before Prefect is imported, so `flows/__init__.py` calls it (and
    `vigil/__init__.py`, for the commands). Unless debugging, Prefect's
    console shows nothing below CRITICAL: a failed task's traceback still reaches the Prefect
    API and UI, and the command prints the error a user can act on in one paragraph."""
    if not debugging():
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "great_expectations", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


# MLflow's server also starts its job runners (a huey consumer per job kind, each importing
# MLflow): they serve GenAI jobs Vigil never submits, so Vigil's MLflow servers leave them off
MLFLOW_WITHOUT_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
