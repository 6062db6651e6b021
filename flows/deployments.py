"""Deployments. `vigil serve` serves the `pipeline` flow with the cron schedule from params
(``schedule.cron``), until interrupted. `vigil tune --deploy` registers the `tune` flow on the
work pool ``gpu``, which process workers on GPU hosts serve (``prefect worker start --pool
gpu``); several workers running it share each detector's study through ``tuning.storage``.

Start a Prefect server first (`vigil ui`, or `prefect server start`) and point
``PREFECT_API_URL`` at it (``http://127.0.0.1:4200/api``) so that the deployment, its schedule
and its runs show in the UI.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .pipeline import pipeline

DEPLOYMENT = "vigil-scheduled"
TUNE_DEPLOYMENT = "vigil-tune"
GPU_POOL = "gpu"


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


def ensure_process_pool(name: str) -> bool:
    """Create the process work pool ``name`` on the Prefect server if it is not there; True if
    created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return True


def deploy_tune(checkout: Path, params: str = "params.yaml", pool: str = GPU_POOL):
    """Register `tune` as deployment ``tune/vigil-tune`` on work pool ``pool`` (made if
    missing), its code and data at ``checkout``: a path that each worker's host has, holding
    Vigil with its prepared data. Returns the deployment id."""
    from .tune import tune_flow

    ensure_process_pool(pool)
    checkout = Path(checkout).resolve()
    source = tune_flow.from_source(source=str(checkout), entrypoint="flows/tune.py:tune_flow")
    return source.deploy(
        name=TUNE_DEPLOYMENT,
        work_pool_name=pool,
        parameters={"params": params, "repo_root": str(checkout)},
        description="Optuna tuning of every detector (train and validation only); trials on the worker's GPU if any.",
        tags=["vigil", "tuning"],
        build=False,
        push=False,
        print_next_steps=False,
    )
