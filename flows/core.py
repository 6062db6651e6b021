"""The evaluation core: load → scale on train → fit each detector → threshold on validation →
evaluate on test. Plain functions over `components`, so flows and the CLI share them."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from components.datasets import Dataset, load_csv, load_nab, load_smd, load_telemanom, make_synthetic
from components.detectors import Detector, get_detector
from components.evaluation import choose_threshold, evaluate
from components.preprocessing import Scaler, split_validation

from .config import Config


def load_dataset(cfg: Config) -> Dataset:
    d = cfg.dataset
    if d.kind == "synthetic":
        return make_synthetic(**d.synthetic.model_dump())
    if d.kind == "smd":
        return load_smd(d.smd.root, d.smd.machine)
    if d.kind == "telemanom":
        return load_telemanom(d.telemanom.root, d.telemanom.channel)
    if d.kind == "nab":
        return load_nab(d.nab.root, d.nab.series)
    if d.csv.path is None:
        raise ValueError("dataset.kind is 'csv' but dataset.csv.path is not set")
    return load_csv(d.csv.path, d.csv.test_path, time_column=d.csv.time_column,
                    label_column=d.csv.label_column, train_fraction=d.csv.train_fraction)


@dataclass
class DetectorResult:
    name: str
    detector: Detector
    fit_seconds: float
    validation: dict[str, float]
    test: dict[str, float]


def run_detector(name: str, params: dict, train: np.ndarray, val: Dataset, val_x: np.ndarray,
                 test: Dataset, test_x: np.ndarray, cfg: Config) -> DetectorResult:
    det = get_detector(name, **params)
    t0 = time.perf_counter()
    det.fit(train)
    fit_s = time.perf_counter() - t0
    val_scores = det.score(val_x)
    th = cfg.threshold
    threshold = choose_threshold(val_scores, val.labels, th.method, th.pot_q, th.pot_level)
    window = cfg.evaluation.vus_window
    val_metrics = evaluate(val.labels, val_scores, threshold, vus_window=window)
    test_scores, test_contrib = det.score_and_contributions(test_x)
    test_metrics = evaluate(test.labels, test_scores, threshold, contributions=test_contrib,
                            causes=test.causes, vus_window=window)
    return DetectorResult(name, det, fit_s, val_metrics, test_metrics)


def run_core(cfg: Config, progress=print) -> tuple[Dataset, list[DetectorResult]]:
    data = load_dataset(cfg)
    val, test = split_validation(data, cfg.preprocessing.validation_fraction)
    scaler = Scaler(cfg.preprocessing.scaler, cfg.preprocessing.clip).fit(data.train.to_numpy())
    train_x = scaler.transform(data.train.to_numpy())
    val_x, test_x = scaler.transform(val.test.to_numpy()), scaler.transform(test.test.to_numpy())
    results = []
    for name, params in cfg.detectors.items():
        progress(f"[{name}] fitting on {len(train_x)} steps x {train_x.shape[1]} metrics ...")
        results.append(run_detector(name, params, train_x, val, val_x, test, test_x, cfg))
    return data, results


COLUMNS = [("point_f1", "F1 point"), ("pa_f1", "F1 PA*"), ("event_f1", "F1 event"), ("affiliation_f1", "F1 affil"),
           ("auc_pr", "AUC-PR"), ("vus_pr", "VUS-PR"), ("hitrate_100", "HR@100")]


def format_table(data: Dataset, results: list[DetectorResult], threshold_method: str) -> str:
    head = f"{'detector':<16}{'fit s':>8}" + "".join(f"{title:>10}" for _, title in COLUMNS)
    lines = [
        f"dataset {data.name}: train {data.train.shape}, test {data.test.shape}, "
        f"anomalous share {data.labels.mean():.3f}; threshold {threshold_method} on validation, scores on test",
        head, "-" * len(head),
    ]
    for r in results:
        cells = "".join(f"{r.test.get(k, float('nan')):>10.3f}" for k, _ in COLUMNS)
        lines.append(f"{r.name:<16}{r.fit_seconds:>8.2f}{cells}")
    lines.append("* PA = point-adjusted: a hit anywhere in a true segment counts the whole segment; it inflates F1.")
    return "\n".join(lines)
