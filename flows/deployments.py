"""Scheduled runs in the Prefect UI: `vigil serve` serves the `pipeline` flow as a deployment
with the cron schedule from params (``schedule.cron``), until interrupted.

Start a Prefect server first (`vigil ui`, or `prefect server start`) and point
``PREFECT_API_URL`` at it (``http://127.0.0.1:4200/api``) so that the deployment, its schedule
and its runs show in the UI.
"""

from __future__ import annotations

from .config import Config
from .pipeline import pipeline

DEPLOYMENT = "vigil-scheduled"


def build_deployment(cfg: Config, params: str = "params.yaml"):
    """The deployment object (a real Prefect RunnerDeployment; nothing is started)."""
    return pipeline.to_deployment(
        name=DEPLOYMENT,
        cron=cfg.schedule.cron,
        parameters={"params": params},
        description="Vigil pipeline on a schedule: data version, validation, training, evaluation, registry.",
        tags=["vigil"],
    )


def serve(cfg: Config, params: str = "params.yaml") -> None:
    from prefect import serve as prefect_serve

    prefect_serve(build_deployment(cfg, params))
