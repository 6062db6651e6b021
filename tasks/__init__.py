"""Prefect tasks: thin adapters that call `components` and do the I/O with DVC, GX, Optuna and
MLflow. They take plain values or the one config section they use, never the whole config,
and never import `flows`."""

from __future__ import annotations

import logging
import sys


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
