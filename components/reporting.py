"""What a run reports of its detectors: the results table `vigil run` prints (test-split
figures beside the validation figure the model was chosen by, with footnotes saying which split
and which rule every figure comes from) and reports/metrics.json."""

from __future__ import annotations

import math

from components.evaluation import DetectorResult
from components.selection import Selection

COLUMNS = [
    ("point_f1", "F1 point"),
    ("pa_f1", "F1 PA*"),
    ("event_f1", "F1 event"),
    ("affiliation_f1", "F1 affil"),
    ("auc_pr", "AUC-PR"),
    ("vus_pr", "VUS-PR"),
    ("hitrate_100", "HR@100"),
    ("threshold_retention", "retention"),  # point F1 / the oracle's on the test split
    ("incidents", "incidents"),
    ("incidents_per_event", "inc/event"),
    ("incident_event_recall", "ev recall"),
]


def rule_text(r: DetectorResult) -> str:
    """A result's alert rule in words: how its threshold was chosen, on which scores."""
    a = r.threshold
    on = "" if a.smoothing == "none" else f", trailing {a.smoothing} of {a.window} scores"
    return f"{a.rule}{on}"


def _cell(value: float | None, width: int) -> str:
    return f"{value:>{width}.3f}" if value is not None and math.isfinite(value) else f"{'-':>{width}}"


def format_results_table(
    title: str, results: list[DetectorResult], selection: Selection, figures: dict[str, float]
) -> str:
    head = f"{'detector':<16}{'fit s':>8}{'val ' + selection.metric:>14}" + "".join(f"{t:>10}" for _, t in COLUMNS)
    lines = [title, head, "-" * len(head)]
    for r in results:
        cells = "".join(_cell(r.test.get(k), 10) for k, _ in COLUMNS)
        lines.append(f"{r.name:<16}{r.fit_seconds:>8.2f}{_cell(figures.get(r.name), 14)}{cells}")
    rules = sorted({rule_text(r) for r in results})
    merge = sorted({(r.threshold.merge_gap, r.threshold.min_steps) for r in results})
    incidents = "; ".join(f"flags under {g} steps apart are one incident, raised from {m} step(s)" for g, m in merge)
    if selection.labelled and not any(r.threshold.label_free for r in results):
        lines.append(
            "Test-split scores; alert rules and the selection metric come from the validation split. Thresholds: "
            + "; ".join(rules)
            + "."
        )
    else:
        why = sorted({r.undefined["validation"] for r in results if "validation" in r.undefined})
        lines.append(
            "Test-split scores. Threshold: "
            + "; ".join(rules)
            + (f", as there is {why[0]}" if why else "")
            + " (each detector's figures: reports/metrics.json)."
        )
        lines.append(f"Model choice: {selection.reason}.")
    lines.append(
        f"Incidents: {incidents}; retention = point F1 / the best point F1 over every test threshold "
        "(raw or smoothed scores)."
    )
    lines.append("* PA = point-adjusted: a hit anywhere in a true segment counts the whole segment; it inflates F1.")
    undefined = sorted({why for r in results for split, why in r.undefined.items() if split == "test"})
    if undefined:
        lines.append(f"'-' in the label columns: undefined, {undefined[0]}.")
    if any("hitrate_100" not in r.test for r in results) and not undefined:
        lines.append("HR@100 '-': no metric-level causes, or a single metric (where it is 1 by construction).")
    return "\n".join(lines)


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
