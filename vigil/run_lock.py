"""One Vigil run at a time per checkout: runs share data/processed, models/, reports/, dvc.lock
and the MLflow store, so a second run (a scheduled one beside a manual one, `dvc repro` beside
`vigil run`) waits for the first, saying whose run it waits for, or refuses with
``wait=False``. The lock is an flock on ``.vigil/run.lock``: the kernel drops it when the
holder exits, SIGKILL included, so a killed run leaves no stale lock. The MLflow store is
created and migrated inside runs, so under this lock too.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from components.datasets import DataError

_state = threading.local()  # re-entrant per thread: the pipeline flow holds it while its stages take it again


class RunLocked(DataError):
    """Another run holds the checkout and this one was told not to wait."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        info = {}
    if not info:
        return "a run that has not said who it is"
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: {info.get('command')}"


@contextmanager
def checkout_lock(repo_root: str | Path, wait: bool = True, name: str = "run"):
    """``name``: which lock of the checkout; ``run`` guards what runs share, ``benchmark`` the
    benchmark's own cells and reports (a long benchmark does not hold up the pipeline)."""
    depth = getattr(_state, "depth", None)
    if depth is None:
        depth = _state.depth = {}
    if depth.get(name, 0):
        depth[name] += 1
        try:
            yield
        finally:
            depth[name] -= 1
        return
    path = Path(repo_root).resolve() / ".vigil" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                raise RunLocked(
                    f"{path.parent.parent}: another Vigil run holds this checkout ({holder}); "
                    f"run again when it has finished, or without --no-wait to wait for it"
                ) from None
            print(f"vigil: waiting for the run holding {path.parent.parent} ({holder})", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        depth[name] = 1
        try:
            yield
        finally:
            depth[name] = 0
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holds_checkout(flow_fn):
    """Run a flow function under `checkout_lock` of its ``repo_root``; its ``wait_for_lock``
    parameter says whether to wait. Put it under ``@flow``: Prefect sees the same signature."""
    import functools
    import inspect
    import typing

    signature = inspect.signature(flow_fn)

    @functools.wraps(flow_fn)
    def run_holding(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        with checkout_lock(bound.arguments["repo_root"], wait=bound.arguments["wait_for_lock"]):
            return flow_fn(*args, **kwargs)

    # the signature with its annotations resolved where the flow was written: Prefect
    # validates the parameters against it in this module, where a name such as Config is
    # not defined
    hints = typing.get_type_hints(flow_fn)
    run_holding.__signature__ = signature.replace(
        parameters=[p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()],
        return_annotation=hints.get("return", signature.return_annotation),
    )
    return run_holding
