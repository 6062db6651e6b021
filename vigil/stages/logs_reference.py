"""DVC stage ``logs_reference`` (`vigil logs reference`): the reference models of both log
formats, reports/logs_reference.json and MLflow."""

from __future__ import annotations

import argparse

from tasks.logs_reference import REFERENCE_REPORT
from vigil.config import LOG_SOURCES, load_config
from vigil.entry import run_entry


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", dest="formats", nargs="+", choices=LOG_SOURCES, help="default: both")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)  # a named error, exit 2, before Prefect starts
    from flows.logs_reference import reference_flow

    return run_entry(lambda: reference_summary(reference_flow(cfg, args.formats)))
