"""Prefect tasks: thin adapters that call `components` and do the I/O with DVC, GX, Optuna and
MLflow. They take plain values or the one config section they use, never the whole config,
and never import `flows`."""

from __future__ import annotations

import logging
import sys
import time


def run_logger():
    """The Prefect run's logger inside a flow or task run; the module's logger where a task's
    code is called as a plain function (tests, scripts)."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("vigil.tasks")


def progress(message: str) -> None:
    """A progress line: to the run's log, and to stderr, where Prefect's own console logs stay
    at WARNING."""
    run_logger().info(message)
    print(message, file=sys.stderr, flush=True)


def every(seconds: float, t0: float):
    """The pace of a long loop's progress lines: a function that returns the seconds since
    ``t0`` when at least ``seconds`` have passed since it last did (or since ``t0``), else None."""
    last = [t0]

    def due() -> float | None:
        now = time.perf_counter()
        if now - last[0] < seconds:
            return None
        last[0] = now
        return now - t0

    return due
