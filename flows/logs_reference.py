"""The reference models of the log formats (`vigil logs reference`, the Prefect flow
``logs-reference``, DVC stage ``logs_reference``): dCache billing's logistic regression and
Rucio's duration predictor, run as published, their figures (and what they measure) in
``reports/logs_reference.json`` and one MLflow run each (experiment ``logs.reference.experiment``).
Run alone: ``python -m flows.logs_reference [--params FILE] [--format F ...]``."""

from __future__ import annotations

import argparse
import json
import sys

from prefect import flow

from .config import LOG_SOURCES, load_config
from .entry import run_entry
from .logs import REFERENCE_REPORT, add_reference_arguments, generator_settings
from .run_lock import holds_checkout
from .workspace import Workspace


@flow(name="logs-reference")
@holds_checkout
def reference_flow(
    params: str = "params.yaml", formats: list[str] | None = None, repo_root: str = ".", wait_for_lock: bool = True
) -> dict:
    from tasks.files import write_atomic
    from tasks.logs import ensure_logs, log_inputs, logs_digest
    from tasks.logs_reference import log_reference_run, run_reference
    from tasks.urls import storage_url

    ws = Workspace.at(repo_root)
    cfg = load_config(ws.root / params)
    ref = cfg.logs.reference
    report_path = ws.root / REFERENCE_REPORT
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    for f in formats or LOG_SOURCES:
        folder = ws.root / cfg.logs.source(f).logs
        ensure_logs(f, folder, generator_settings(cfg.logs, f))
        settings = (ref.billing if f == "dcache_billing" else ref.transfers).model_dump()
        figures = run_reference(f, folder, settings, cfg.logs.train_fraction)
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


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def reference_summary(result: dict) -> str:
    lines = []
    if "dcache_billing" in result:
        lines += [
            "dCache billing, reference logistic regression (test part of its 70/30 split):",
            "  order   hours=1  test +share  ROC AUC  accuracy  majority acc.  AUC status code alone  "
            "AUC vs failed  AUC vs incidents",
        ]
        for order, r in ((k, v) for k, v in result["dcache_billing"].items() if k in ("time", "random")):
            if "undefined" in r:
                lines.append(
                    f"  {order:<7} {r['hours_labelled_1']:>7}  {_pct(r['positive_share_test']):>11}  "
                    f"undefined: {r['undefined']}"
                )
                continue
            lines.append(
                f"  {order:<7} {r['hours_labelled_1']:>7}  {_pct(r['positive_share_test']):>11}  "
                f"{_num(r['roc_auc']):>7}  {_num(r['accuracy']):>8}  {_num(r['accuracy_of_majority_class']):>13}  "
                f"{_num(r['roc_auc_of_status_code_alone']):>21}  {_num(r['roc_auc_against_initial_label']):>13}  "
                f"{_num(r['roc_auc_against_incidents']):>16}"
            )
    if "rucio_transfers" in result:
        r = result["rucio_transfers"]
        lines += [
            f"Rucio transfers, reference duration predictor (test part: {r['transfers']['test']} transfers, "
            f"{_pct(r['incident_share_test'])} in incidents): {_pct(r['share_within'])} within {r['within_s']:.0f} s, "
            f"median error {r['median_abs_error_s']:.1f} s",
            "  rule                         flagged  precision  recall",
        ]
        for name, label in (
            ("fixed", f"prediction + {r['fixed']['threshold_s']:.0f} s"),
            ("calibrated", "per-link quantile"),
            ("pot", "per-link POT"),
        ):
            x = r[name]
            lines.append(
                f"  {label:<28} {_pct(x['flagged_share']):>7}  {_pct(x['precision']):>9}  {_pct(x['recall']):>6}"
            )
    return "\n".join(lines + [f"report: {REFERENCE_REPORT}"])


def run(args: argparse.Namespace) -> int:
    return run_entry(lambda: reference_summary(reference_flow(args.params, args.formats)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.logs_reference", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")
    add_reference_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
