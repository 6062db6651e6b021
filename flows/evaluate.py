"""The `evaluate` flow (DVC stage ``evaluate``): threshold on validation (or by the label-free
rule), measure on test, choose the best model, log to MLflow, register and maybe promote.
Run alone: ``python -m flows.evaluate [--params FILE]``."""

from __future__ import annotations

import argparse
import json
import math
import sys

from prefect import flow
from prefect.logging import get_run_logger

from components.evaluation import DetectorResult
from components.selection import candidate_scores, selection_rule
from tasks.data import Processed
from tasks.measure import measure_detector
from tasks.registry import RegistryDecision, register
from tasks.selection_prior import label_free_prior
from tasks.versioning import prepared_version

from .config import Config, load_config, params_hash
from .entry import run_entry
from .results_table import format_results_table
from .run_lock import holds_checkout
from .workspace import Workspace


def _json_figures(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if v is not None and math.isfinite(v) else None) for k, v in metrics.items()}


def metrics_report(results: list[DetectorResult], figures: dict[str, float], selection_key: str) -> dict:
    """reports/metrics.json: per detector, both splits (undefined figures as null), the
    selection figure, the threshold rule and why any figure is undefined."""
    return {
        r.name: {
            "test": _json_figures(r.test),
            "validation": _json_figures(r.validation),
            "selection": _json_figures({selection_key: figures[r.name]}),
            "threshold_rule": r.threshold.rule,
            "threshold_detail": r.threshold.detail,
            "alert_rule": r.threshold.to_dict(),  # what the registered model applies
            "undefined": r.undefined,
        }
        for r in results
    }


@flow(name="evaluate")
@holds_checkout
def evaluate_flow(
    params: str = "params.yaml",
    repo_root: str = ".",
    wait_for_lock: bool = True,
    run_id: str | None = None,
    cfg: Config | None = None,
) -> dict:
    """Standalone (no ``run_id``) it reads the published data and models and publishes
    reports/metrics.json at the end; inside the pipeline it works in the run's folder.
    ``cfg``: the parameters, parsed once by the caller (else read from ``params``)."""
    logger = get_run_logger()
    root = Workspace.at(repo_root)
    cfg = cfg or load_config(root.root / params)
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


def summary(out: dict) -> str:
    d: RegistryDecision = out["decision"]
    if d.promoted:
        if d.champion_before is None:
            before = ""
        elif d.champion_note:
            before = f" (the champion before it, {d.champion_note})"
        else:
            before = f" (beat version {d.champion_before}: {d.champion_before_score:.4f})"
        verdict = (
            f"registered {d.model} version {d.version} ({d.detector}, {d.criterion} {d.score:.4f}) "
            f"and made it @champion{before}"
        )
    else:
        verdict = (
            f"registered {d.model} version {d.version} ({d.detector}, {d.criterion} {d.score:.4f}); "
            f"champion stays version {d.champion} ({d.champion_before_score:.4f} on this data)"
        )
    return "\n".join([out["table"], "", verdict])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.evaluate", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")
    args = parser.parse_args(argv)
    return run_entry(lambda: summary(evaluate_flow(args.params)))


if __name__ == "__main__":
    sys.exit(main())
