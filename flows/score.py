"""The ``score`` flow (`vigil score`, deployment ``vigil-score`` every few minutes): the champion
scores the files waiting in the landing folder into the alerts store."""

from __future__ import annotations

from prefect import flow

from tasks.data import prepared_kind
from tasks.notify import notifiers
from tasks.prometheus import prometheus_source
from tasks.remedies import remedy_settings
from tasks.scoring import log_scoring_run, registry_errors, score_landing, scoring_model
from tasks.urls import storage_url
from vigil.config import Config
from vigil.run_lock import checkout_lock
from vigil.run_names import score_run
from vigil.workspace import Workspace


@flow(name="score", flow_run_name=score_run)
def score_flow(cfg: Config, repo_root: str = ".", wait_for_lock: bool = True) -> dict:
    """The champion (or ``scoring.model_name``) scores the landing folder's new files into the
    alerts store, holding the checkout's scoring lock."""
    ws = Workspace.at(repo_root)
    sc = cfg.scoring
    tracking = storage_url(cfg.registry.tracking_uri, ws.root)  # a relative SQLite store is the checkout's
    with checkout_lock(ws.root, wait=wait_for_lock, name="score"):
        result = score_landing(
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
            prometheus=prometheus_source(sc.prometheus),
        )
        with registry_errors(tracking):
            log_scoring_run(tracking, sc.experiment, ws.root / cfg.registry.artifact_root, result)
    return result
