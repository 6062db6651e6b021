"""Deployments. `vigil serve` serves the `pipeline` flow with the cron schedule from params
(``schedule.cron``), until interrupted. `vigil tune --deploy` registers the `tune` flow on the
work pool ``gpu``, which process workers on GPU hosts serve (``prefect worker start --pool
gpu``); several workers running it share each detector's study through ``tuning.storage``.
`vigil benchmark --deploy` registers the `benchmark` flow there too, to run by hand from the UI.

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
BENCHMARK_DEPLOYMENT = "vigil-benchmark"
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


def _deploy_from_checkout(flow_fn, entrypoint: str, name: str, checkout: Path, params: str, pool: str, **kw):
    """Register ``flow_fn`` (at ``entrypoint`` of ``checkout``: a path that each worker's host
    has, holding Vigil and its data) as deployment ``name`` on work pool ``pool`` (made if
    missing), run on demand. Returns the deployment id."""
    ensure_process_pool(pool)
    checkout = Path(checkout).resolve()
    source = flow_fn.from_source(source=str(checkout), entrypoint=entrypoint)
    return source.deploy(
        name=name,
        work_pool_name=pool,
        parameters={"params": params, "repo_root": str(checkout)},
        build=False,
        push=False,
        print_next_steps=False,
        **kw,
    )


def deploy_tune(checkout: Path, params: str = "params.yaml", pool: str = GPU_POOL):
    """`tune` as deployment ``tune/vigil-tune``."""
    from .tune import tune_flow

    return _deploy_from_checkout(
        tune_flow,
        "flows/tune.py:tune_flow",
        TUNE_DEPLOYMENT,
        checkout,
        params,
        pool,
        description="Optuna tuning of every detector (train and validation only); trials on the worker's GPU if any.",
        tags=["vigil", "tuning"],
    )


def deploy_benchmark(checkout: Path, params: str = "params.yaml", pool: str = GPU_POOL):
    """`benchmark` as deployment ``benchmark/vigil-benchmark``, triggered by hand (no schedule)."""
    from .benchmark import benchmark_flow

    return _deploy_from_checkout(
        benchmark_flow,
        "flows/benchmark.py:benchmark_flow",
        BENCHMARK_DEPLOYMENT,
        checkout,
        params,
        pool,
        description="Every benchmark series x every detector and PyOD peer; reports/benchmark.* and MLflow.",
        tags=["vigil", "benchmark"],
    )
