"""Dataset loading from the typed config, the per-detector fit/threshold/evaluate step, and
the results table. Plain functions over `components`, shared by tasks and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.datasets import Dataset, load_csv, load_csv_layout, load_nab, load_smd, load_telemanom
from components.detectors import Detector
from components.evaluation import choose_threshold, evaluate

from .config import Config


def load_dataset(cfg: Config) -> Dataset:
    """The strict loader for the configured dataset (run after validation)."""
    d = cfg.dataset
    if d.kind == "synthetic":
        return load_csv_layout(d.root)
    if d.kind == "smd":
        return load_smd(d.root, d.name)
    if d.kind == "telemanom":
        return load_telemanom(d.root, d.name)
    if d.kind == "nab":
        return load_nab(d.root, d.name)
    test = d.root / d.csv.test_file if d.csv.test_file else None
    return load_csv(d.root / d.name, test, time_column=d.csv.time_column, label_column=d.csv.label_column,
                    train_fraction=d.csv.train_fraction, name=f"csv/{d.name}")


@dataclass
class DetectorResult:
    name: str
    fit_seconds: float
    threshold: float
    validation: dict[str, float]
    test: dict[str, float]
    val_scores: np.ndarray
    test_scores: np.ndarray


def threshold_and_evaluate(name: str, det: Detector, fit_seconds: float, val_x, val_labels, test_x, test_labels,
                           test_causes, cfg: Config) -> DetectorResult:
    """Threshold from the validation split only; the whole metric suite on both splits."""
    val_scores = det.score(val_x)
    th = cfg.threshold
    threshold = choose_threshold(val_scores, val_labels, th.method, th.pot_q, th.pot_level)
    window = cfg.evaluation.vus_window
    val_metrics = evaluate(val_labels, val_scores, threshold, vus_window=window)
    test_scores, test_contrib = det.score_and_contributions(test_x)
    test_metrics = evaluate(test_labels, test_scores, threshold, contributions=test_contrib, causes=test_causes,
                            vus_window=window)
    return DetectorResult(name, fit_seconds, threshold, val_metrics, test_metrics, val_scores, test_scores)


COLUMNS = [("point_f1", "F1 point"), ("pa_f1", "F1 PA*"), ("event_f1", "F1 event"), ("affiliation_f1", "F1 affil"),
           ("auc_pr", "AUC-PR"), ("vus_pr", "VUS-PR"), ("hitrate_100", "HR@100")]


def format_table(title: str, results: list[DetectorResult], selection: str) -> str:
    head = f"{'detector':<16}{'fit s':>8}{'val ' + selection:>14}" + "".join(f"{t:>10}" for _, t in COLUMNS)
    lines = [title, head, "-" * len(head)]
    for r in results:
        cells = "".join(f"{r.test[k]:>10.3f}" if k in r.test else f"{'-':>10}" for k, _ in COLUMNS)
        lines.append(f"{r.name:<16}{r.fit_seconds:>8.2f}{r.validation.get(selection, float('nan')):>14.3f}{cells}")
    lines.append("Test-split scores; thresholds and the selection metric come from the validation split.")
    lines.append("* PA = point-adjusted: a hit anywhere in a true segment counts the whole segment; it inflates F1.")
    if any("hitrate_100" not in r.test for r in results):
        lines.append("HR@100 '-': no metric-level causes, or a single metric (where it is 1 by construction).")
    return "\n".join(lines)
