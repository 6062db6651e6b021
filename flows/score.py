"""The ``score`` flow (`vigil score`, deployment ``vigil-score`` every few minutes): the champion
scores the files waiting in the landing folder into the alerts store."""

from __future__ import annotations

from prefect import flow

from tasks.cluster import handed_over, task_runner
from tasks.data import prepared_kind
from tasks.notify import notifiers
from tasks.prometheus import prometheus_source
from tasks.remedies import remedy_settings
from tasks.scoring import (
    ScoringRun,
    finish_scoring,
    log_scoring_run,
    registry_errors,
    score_sources,
    scoring_model,
    start_scoring,
)
from tasks.urls import storage_url
from vigil.config import Config
from vigil.run_lock import checkout_lock
from vigil.run_names import score_run
from vigil.workspace import Workspace

from .cluster import fan_out


@flow(name="score", flow_run_name=score_run)
def score_flow(cfg: Config, repo_root: str = ".", wait_for_lock: bool = True) -> dict:
    """The champion (or ``scoring.model_name``) scores the landing folder's new files into the
    alerts store, holding the checkout's scoring lock: in this process, or on the ``cluster``,
    a task per ``cluster.series_per_task`` series."""
    ws = Workspace.at(repo_root)
    sc = cfg.scoring
    tracking = storage_url(cfg.registry.tracking_uri, ws.root)  # a relative SQLite store is the checkout's
    with checkout_lock(ws.root, wait=wait_for_lock, name="score"):
        job = ScoringRun(
            storage_url(sc.store, ws.root),
            tracking,
            scoring_model(sc.model_name or cfg.registry.model_name, ws.processed),
            str(ws.root / sc.landing),
            sc.time_column,
            sc.keep_values,
            remedies=remedy_settings(cfg.remedies, ws.root),
            kind=prepared_kind(ws.processed, cfg.dataset.kind),
            artifact_root=ws.root / cfg.registry.artifact_root,
            settle_seconds=sc.settle_seconds,
            notify=notifiers(cfg.notify),
        )
        job, opened, previous, sources, skipped = start_scoring(job, prometheus_source(sc.prometheus))
        outcomes = []
        if cfg.cluster.distributed:  # a task per batch of series, each opening the store and model itself
            n = cfg.cluster.series_per_task
            batches = [{"job": job, "sources": sources[i : i + n]} for i in range(0, len(sources), n)]
            with handed_over(score_sources, batches, outcomes.extend) as work:
                fan_out.with_options(task_runner=task_runner(cfg.cluster))(f"score: {len(sources)} series", work)
        elif sources:
            outcomes = score_sources(job, sources, opened)
        result = finish_scoring(job, opened, previous, outcomes, skipped)
        with registry_errors(tracking):
            log_scoring_run(tracking, sc.experiment, ws.root / cfg.registry.artifact_root, result)
    return result
