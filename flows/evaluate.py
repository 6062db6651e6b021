"""The `evaluate` flow (DVC stage ``evaluate``, `vigil stage evaluate`): every trained detector
measured on the prepared splits, the best by the validation split registered in MLflow, and
reports/metrics.json."""

from __future__ import annotations

import json

from prefect import flow
from prefect.logging import get_run_logger

from components.reporting import format_results_table, metrics_report
from components.selection import candidate_scores, selection_rule
from tasks.data import Processed
from tasks.measure import measure_detector
from tasks.registry import register
from tasks.selection_prior import label_free_prior
from tasks.versioning import prepared_version
from vigil.config import Config, params_hash
from vigil.run_lock import holds_checkout
from vigil.run_names import dataset_run
from vigil.workspace import Workspace


@flow(name="evaluate", flow_run_name=dataset_run("evaluate"))
@holds_checkout
def evaluate_flow(cfg: Config, repo_root: str = ".", wait_for_lock: bool = True, run_id: str | None = None) -> dict:
    """Standalone (no ``run_id``) it reads the published data and models and publishes
    reports/metrics.json at the end; inside the pipeline it works in the run's folder."""
    logger = get_run_logger()
    root = Workspace.at(repo_root)
    out = root.run_folder(run_id)
    ws = out if run_id else root  # where the inputs are
    th, window, alerting = cfg.threshold, cfg.evaluation.vus_window, cfg.alert_settings()
    results = [
        measure_detector(name, ws.processed, ws.models, alerting=alerting, vus_window=window) for name in cfg.detectors
    ]
    data = Processed(ws.processed)
    reg = cfg.registry
    prior, why_not = None, ""
    if not data["validation_labels"].any():
        prior, why_not = label_free_prior(
            root.root / reg.benchmark_summary, reg.label_free_rule, cfg.dataset.kind, [r.name for r in results]
        )
    selection = selection_rule(reg.selection_metric, data["validation_labels"], window, len(results), prior)
    if why_not:
        logger.info("label-free selection by consensus: %s", why_not)
    figures = candidate_scores(
        selection, {r.name: r.val_scores for r in results}, {r.name: r.validation for r in results}
    )
    version = prepared_version(ws.root, cfg.dataset.root, params_hash(cfg), ws.processed, data.meta["raw_md5"])
    out.reports.mkdir(parents=True, exist_ok=True)
    report = metrics_report(results, figures, selection.key)
    (out.reports / "metrics.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    decision = register(
        tracking_uri=reg.tracking_uri,
        experiment=reg.experiment,
        artifact_root=ws.root / reg.artifact_root,
        model_name_override=reg.model_name,
        processed_dir=ws.processed,
        models_dir=ws.models,
        results=results,
        figures=figures,
        selection=selection,
        version=version,
        run_params={
            "threshold_method": th.method,
            "selection_metric": reg.selection_metric,
            **{f"preprocessing.{k}": v for k, v in cfg.preprocessing.model_dump().items()},
        },
        validation_report=ws.reports / "validation.json",
    )
    title = f"dataset {data.meta['dataset']} (data md5 {version.raw_md5}, {version.status})"
    table = format_results_table(title, results, selection, figures)
    logger.info("\n%s", table)
    if run_id is None:
        out.publish("reports")
        out.discard()
    return {"table": table, "decision": decision, "version": version.__dict__}
