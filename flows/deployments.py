"""Deployments, declared here, with schedules and pools from params (``deployments``):

- ``pipeline/vigil-train``: the pipeline, on ``deployments.train.cron`` (weekly by default);
- ``score/vigil-score``: the landing folder scored by the champion every
  ``deployments.score.interval_minutes``;
- ``slo-train/vigil-slo-train``: the SLO-violation predictors fitted on the recorded runs and
  registered, run by hand;
- ``slo-predict/vigil-stream-predict``: the registered predictors on the ``aggregate`` topic,
  a run that lasts until cancelled (it resumes where the last one stopped);
- ``tune/vigil-tune`` and ``benchmark/vigil-benchmark``: registered on a work pool
  (``deployments.tune.pool``, ``deployments.benchmark.pool``; ``gpu`` by default), run by hand
  from the UI, by the process workers on GPU hosts (``prefect worker start --pool gpu``).

`vigil serve` registers all six and serves the first four until interrupted, on the Prefect
server ``PREFECT_API_URL`` names, or one at 127.0.0.1:4200 (`vigil ui`'s, or started by `vigil
serve`): a persistent server, whose scheduler makes the scheduled runs (Prefect's temporary API
has none).

A deployment carries the parameters as parsed and checked when it was registered (the ``cfg``
parameter, shown and editable per run in the UI): flows never read params.yaml. After editing
params.yaml, restart `vigil serve` (or `vigil tune --deploy`) to register them again.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from vigil.config import Config

from .pipeline import pipeline

TRAIN_DEPLOYMENT = "vigil-train"
SCORE_DEPLOYMENT = "vigil-score"
TUNE_DEPLOYMENT = "vigil-tune"
BENCHMARK_DEPLOYMENT = "vigil-benchmark"
SLO_TRAIN_DEPLOYMENT = "vigil-slo-train"
STREAM_PREDICT_DEPLOYMENT = "vigil-stream-predict"
GPU_POOL = "gpu"


def _parameters(cfg: Config, repo_root: str | None, **more) -> dict:
    """A deployment's parameters: the parsed config as JSON, the checkout where one is named."""
    return {"cfg": cfg.model_dump(mode="json"), **({"repo_root": repo_root} if repo_root else {}), **more}


def build_train_deployment(cfg: Config, params: str = "params.yaml", repo_root: str | None = None):
    """The pipeline on its cron (a real Prefect RunnerDeployment; nothing is started)."""
    return pipeline.to_deployment(
        name=TRAIN_DEPLOYMENT,
        cron=cfg.deployments.train.cron,
        parameters=_parameters(cfg, repo_root, params=params),
        description="Vigil pipeline on a schedule: data version, validation, training, evaluation, registry.",
        tags=["vigil", "train"],
    )


def build_score_deployment(cfg: Config, repo_root: str | None = None):
    """The score flow every few minutes: new files of the landing folder into the alerts store."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    from .score import score_flow

    return score_flow.to_deployment(
        name=SCORE_DEPLOYMENT,
        interval=timedelta(minutes=cfg.deployments.score.interval_minutes),
        # one run at a time: a run due while the last still scores (a backlog, a slow store) is
        # cancelled rather than queued behind the checkout's lock, as runs would pile up, each a
        # process; the next one scores whatever is waiting
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        parameters=_parameters(cfg, repo_root),
        description="The champion scores the files waiting in the landing folder; alerts and incidents to the store.",
        tags=["vigil", "score"],
    )


def build_stream_deployments(cfg: Config, repo_root: str | None = None):
    """The SLO predictors' training and the live predictor, both started by hand."""
    from .stream import slo_predict_flow, slo_train_flow

    parameters = _parameters(cfg, repo_root)
    return [
        slo_train_flow.to_deployment(
            name=SLO_TRAIN_DEPLOYMENT,
            parameters=parameters,
            description="Fit the SLO-violation predictors on the recorded runs (data/slo), register them in MLflow.",
            tags=["vigil", "stream"],
        ),
        slo_predict_flow.to_deployment(
            name=STREAM_PREDICT_DEPLOYMENT,
            parameters=parameters,
            description="The registered SLO predictors on the aggregate topic, to predictions, until cancelled.",
            tags=["vigil", "stream"],
        ),
    ]


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


def _deploy_from_checkout(flow_fn, entrypoint: str, name: str, checkout: Path, cfg: Config, pool: str, **kw):
    """Register ``flow_fn`` (at ``entrypoint`` of ``checkout``: a path that each worker's host
    has, holding Vigil and its data) as deployment ``name`` on work pool ``pool`` (made if
    missing), run on demand. Returns the deployment id."""
    ensure_process_pool(pool)
    checkout = Path(checkout).resolve()
    source = flow_fn.from_source(source=str(checkout), entrypoint=entrypoint)
    return source.deploy(
        name=name,
        work_pool_name=pool,
        parameters=_parameters(cfg, str(checkout)),
        build=False,
        push=False,
        print_next_steps=False,
        **kw,
    )


def deploy_tune(checkout: Path, cfg: Config, pool: str = GPU_POOL):
    """`tune` as deployment ``tune/vigil-tune``."""
    from .tune import tune_flow

    return _deploy_from_checkout(
        tune_flow,
        "flows/tune.py:tune_flow",
        TUNE_DEPLOYMENT,
        checkout,
        cfg,
        pool,
        description="Optuna tuning of every detector (train and validation only); trials on the worker's GPU if any.",
        tags=["vigil", "tuning"],
    )


def deploy_benchmark(checkout: Path, cfg: Config, pool: str = GPU_POOL):
    """`benchmark` as deployment ``benchmark/vigil-benchmark``, triggered by hand (no schedule)."""
    from .benchmark import benchmark_flow

    return _deploy_from_checkout(
        benchmark_flow,
        "flows/benchmark.py:benchmark_flow",
        BENCHMARK_DEPLOYMENT,
        checkout,
        cfg,
        pool,
        description="Every benchmark series x every detector and PyOD peer; reports/benchmark.* and MLflow.",
        tags=["vigil", "benchmark"],
    )


def register_pool_deployments(cfg: Config, checkout: Path) -> list[str]:
    """vigil-tune and vigil-benchmark on their pools; one line each."""
    d = cfg.deployments
    lines = []
    for fn, pool, name in (
        (deploy_tune, d.tune.pool, f"tune/{TUNE_DEPLOYMENT}"),
        (deploy_benchmark, d.benchmark.pool, f"benchmark/{BENCHMARK_DEPLOYMENT}"),
    ):
        fn(checkout, cfg, pool)
        lines.append(
            f"registered {name} on work pool {pool!r} (runs by hand; workers: prefect worker start --pool {pool})"
        )
    return lines


def serve(cfg: Config, params: str = "params.yaml", checkout: Path | None = None) -> None:
    """Serve vigil-train, vigil-score and the stream deployments from this process until interrupted."""
    from prefect import serve as prefect_serve

    root = str(Path(checkout).resolve()) if checkout else None
    prefect_serve(
        build_train_deployment(cfg, params, root),
        build_score_deployment(cfg, root),
        *build_stream_deployments(cfg, root),
    )
