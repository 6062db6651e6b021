"""The results table `vigil run` prints: test-split figures beside the validation figure the
model was chosen by, with footnotes saying which split and which rule every figure comes from."""

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
]


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
    rules = sorted({r.threshold.rule for r in results})
    if selection.labelled and rules == ["best_f1 on validation labels"]:
        lines.append("Test-split scores; thresholds and the selection metric come from the validation split.")
    else:
        why = sorted({r.undefined["validation"] for r in results if "validation" in r.undefined})
        lines.append(
            "Test-split scores. Threshold: "
            + "; ".join(rules)
            + (f", as there is {why[0]}" if why else "")
            + " (each detector's figures: reports/metrics.json)."
        )
        lines.append(f"Model choice: {selection.reason}.")
    lines.append("* PA = point-adjusted: a hit anywhere in a true segment counts the whole segment; it inflates F1.")
    undefined = sorted({why for r in results for split, why in r.undefined.items() if split == "test"})
    if undefined:
        lines.append(f"'-' in the label columns: undefined, {undefined[0]}.")
    if any("hitrate_100" not in r.test for r in results) and not undefined:
        lines.append("HR@100 '-': no metric-level causes, or a single metric (where it is 1 by construction).")
    return "\n".join(lines)
