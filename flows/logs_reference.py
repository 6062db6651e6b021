"""The ``logs-reference`` flow (`vigil logs reference`, DVC stage ``logs_reference``): the
reference models of the log formats, dCache billing's logistic regression and Rucio's duration
predictor, run as published, their figures (and what they measure) in
``reports/logs_reference.json`` and one MLflow run each (experiment ``logs.reference.experiment``)."""

from __future__ import annotations

import json
import time

from prefect import flow

from vigil.config import LOG_SOURCES, Config
from vigil.run_lock import holds_checkout
from vigil.workspace import Workspace


@flow(name="logs-reference")
@holds_checkout
def reference_flow(
    cfg: Config, formats: list[str] | None = None, repo_root: str = ".", wait_for_lock: bool = True
) -> dict:
    from tasks import progress
    from tasks.files import write_atomic
    from tasks.logs import ensure_logs, log_inputs, logs_digest
    from tasks.logs_reference import REFERENCE_REPORT, log_reference_run, run_reference
    from tasks.urls import storage_url

    ws = Workspace.at(repo_root)
    ref = cfg.logs.reference
    report_path = ws.root / REFERENCE_REPORT
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    for f in formats or LOG_SOURCES:
        folder = ws.root / cfg.logs.source(f).logs
        ensure_logs(f, folder, cfg.logs.generator_settings(f))
        settings = (ref.billing if f == "dcache_billing" else ref.transfers).model_dump()
        progress(f"logs reference: {f}: fitting the reference model(s) on {folder}")
        t0 = time.perf_counter()
        figures = run_reference(f, folder, settings, cfg.logs.train_fraction)
        progress(f"logs reference: {f}: done in {time.perf_counter() - t0:.0f} s")
        run_id = log_reference_run(
            figures,
            f,
            settings,
            storage_url(cfg.registry.tracking_uri, ws.root),
            ref.experiment,
            ws.root / cfg.registry.artifact_root,
            {"dataset": f, "detector": f"{f}_reference"},
        )
        digest = logs_digest(log_inputs(f, folder))  # the labels too: precision and recall read them
        report[f] = {"logs": str(cfg.logs.source(f).logs), "logs_sha256": digest, "mlflow_run": run_id, **figures}
    write_atomic(report_path, (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())
    return {f: report[f] for f in formats or LOG_SOURCES}
