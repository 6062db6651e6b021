"""The ``logs`` flow (`vigil logs build`, DVC stage ``logs``; README: Telemetry from logs): each
log format's folder read strictly, featurised by ``logs.engine`` (DuckDB, or Spark at
``logs.spark_master``) into one series per pool / link, written to ``logs.<format>.out``, the
root of the dataset kind of the same name. Generated logs are written first where
``logs.<format>.generate`` is set."""

from __future__ import annotations

from prefect import flow

from tasks.logs import make_telemetry
from vigil.config import LOG_SOURCES, LogsConfig
from vigil.run_lock import holds_checkout
from vigil.workspace import Workspace


@flow(name="logs")
@holds_checkout
def logs_flow(
    logs: LogsConfig,
    formats: list[str] | None = None,
    engine: str | None = None,
    force: bool = False,
    repo_root: str = ".",
    wait_for_lock: bool = True,
) -> dict:
    """Telemetry of every format in ``formats`` (default: both), each rebuilt only when its
    logs or settings changed (``force``: always), on ``engine`` (default: ``logs.engine``)."""
    ws = Workspace.at(repo_root)
    return {f: make_telemetry(ws.root, logs, f, engine, force) for f in formats or LOG_SOURCES}
