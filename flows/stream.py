"""The SLO flows (README: Streaming): ``slo-record`` (DVC stage ``slo_record``) simulates and
aggregates the runs the predictors learn from; ``slo-train`` (DVC stage ``slo_train``) fits every
predictor, chooses thresholds on the validation run and registers each in MLflow (alias = its
name, the best ``@champion``); ``slo-predict`` (deployment ``vigil-stream-predict``) runs the
registered predictors on the aggregate topic until cancelled (the service in vigil/services.py).
`vigil stream` (vigil/stream.py) runs them and the services around them."""

from __future__ import annotations

import json

from prefect import flow

from tasks.slo import (
    VALIDATION_REPORT,
    champion_of,
    fit_predictors,
    load_runs,
    record_runs,
    register_predictors,
)
from tasks.urls import storage_url
from tasks.versioning import dvc_hash
from vigil.config import Config
from vigil.services import predict_service
from vigil.workspace import Workspace


@flow(name="slo-record")
def slo_record_flow(cfg: Config, repo_root: str = ".") -> dict:
    ws = Workspace.at(repo_root)
    runs = record_runs(ws.root / cfg.stream.data.folder, cfg.stream)
    return {r.name: {"role": r.role, "seconds": len(r.records), "violating": int(r.violation.sum())} for r in runs}


@flow(name="slo-train")
def slo_train_flow(cfg: Config, repo_root: str = ".") -> dict:
    """Fit, choose thresholds on the validation run, register; reports/slo_validation.json."""
    ws = Workspace.at(repo_root)
    st = cfg.stream
    folder = ws.root / st.data.folder
    runs = load_runs(folder)
    fitted = fit_predictors(runs, st.predictors, st.lead, st.early)
    # the md5 dvc.lock records for the folder, so the registered models trace to their inputs
    data_md5 = dvc_hash(ws.root, folder) if (ws.root / ".dvc").is_dir() else "not a DVC checkout"
    tracking = storage_url(cfg.registry.tracking_uri, ws.root)
    reg = register_predictors(fitted, runs, st, tracking, ws.root / cfg.registry.artifact_root, data_md5)
    report = {
        "split": "validation run (thresholds chosen on it too): figures for choosing, not for claims",
        "lead": st.lead,
        "best": champion_of(fitted).name,
        "promoted": reg["promoted"],  # False: the champion before did better on this run, and stays
        "champion_before": reg["champion_before"],
        "versions": reg["versions"],
        "predictors": {f.name: {"threshold": f.threshold, **f.validation} for f in fitted},
    }
    out = ws.root / VALIDATION_REPORT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return report


@flow(name="slo-predict")
def slo_predict_flow(cfg: Config, repo_root: str = ".") -> dict:
    """The registered predictors on ``aggregate`` until the run is cancelled (deployment
    ``vigil-stream-predict``); a new run resumes after the last second predicted. The champion's
    predictions go to the alerts store (``stream.store``, else ``scoring.store``)."""
    return predict_service(cfg, Workspace.at(repo_root).root)
