"""The benchmark's protocol, pure: one series prepared as OmniAnomaly did (fit on train;
thresholds on the validation head of test; every figure on the test tail), one detector
measured on it, and the averages over series.

Figures of a cell (one series x one detector), all on the test tail unless named otherwise:

- at the alert rule chosen on validation (`components.evaluation.choose_alert_rule`:
  smoothing and threshold rule picked on the validation head, or the label-free rule where
  it holds none, and the row says so): ``point_f1``, ``pa_f1`` (point-adjusted, inflated),
  ``event_f1``, ``affiliation_f1``; the incidents it raises (``incidents_per_event``,
  ``false_incidents_per_1000_steps``, ``incident_event_recall``, ``time_to_detect_steps``);
  ``look_ahead_steps``: how many steps after a step its score is final (the detector's
  `context_steps` future: windows and kmeans's ``spread`` read ahead), so a stream can raise
  an incident that late at the earliest; ``time_to_alert_steps``: time to detect plus it;
- threshold-free: ``auc_pr``, ``vus_pr``, ``auc_roc``;
- ``oracle_point_f1``, ``oracle_event_f1``, ``oracle_pa_f1``: the best F1 over every
  threshold on the test tail itself, for comparison with papers that report it, never a
  figure to choose by; ``threshold_retention`` (``event_retention``): the F1 at the rule
  over the best over every threshold on the raw or the rule's smoothed scores (at most 1);
- ``hitrate_100``, ``hitrate_150`` where the series names each anomaly's metrics (SMD);
- ``fit_seconds``, ``score_steps_per_second`` (test tail), ``peak_memory_mb`` (resident
  memory the fit and scoring added, sampled).
"""

from __future__ import annotations

import math
import os
import resource
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .datasets.base import Anomaly, Dataset, ranges_from_labels
from .evaluation import AlertSettings, choose_alert_rule, metric_suite
from .preprocessing import Scaler, split_validation

# What the report averages per dataset and detector, in its column order; `higher` is better
# for all but the cost columns.
HEADLINE = ("vus_pr", "auc_pr", "point_f1", "event_f1", "affiliation_f1", "pa_f1", "oracle_point_f1", "oracle_pa_f1")
COSTS = ("fit_seconds", "score_steps_per_second", "peak_memory_mb")
# what an operator sees of the alert rule: lower is better for the incident counts and delay
ALERTING = (
    "threshold_retention",
    "event_retention",
    "oracle_event_f1",
    "incidents_per_event",
    "false_incidents_per_day",
    "false_incidents_per_1000_steps",
    "incident_event_recall",
    "incident_event_precision",
    "time_to_detect_steps",
    "look_ahead_steps",
    "time_to_alert_steps",
)
FIGURES = (*HEADLINE, "auc_roc", "hitrate_100", "hitrate_150", *ALERTING, *COSTS)


@dataclass
class PreparedSeries:
    """One series cut and scaled for the protocol: train (scaler fitted here only), the
    validation head of test, the test tail with its labels and labelled causes."""

    dataset: str
    series: str
    train: np.ndarray
    validation: np.ndarray
    validation_labels: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    test_causes: list[Anomaly] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "train": self.train,
            "validation": self.validation,
            "validation_labels": self.validation_labels,
            "test": self.test,
            "test_labels": self.test_labels,
        }


def prepare_series(
    dataset_kind: str, data: Dataset, *, validation_fraction: float, scaler: str, clip: float | None
) -> PreparedSeries:
    val, test = split_validation(data, validation_fraction)
    s = Scaler(scaler, clip).fit(data.train.to_numpy())
    return PreparedSeries(
        dataset_kind,
        data.name,
        s.transform(data.train.to_numpy()),
        s.transform(val.test.to_numpy()),
        np.asarray(val.labels, dtype=np.int8),
        s.transform(test.test.to_numpy()),
        np.asarray(test.labels, dtype=np.int8),
        list(test.causes),
    )


def best_point_adjusted_f1(labels: np.ndarray, scores: np.ndarray) -> float:
    """The highest point-adjusted F1 over every threshold, in one sort.

    After adjustment a true segment is all hits once its highest score reaches the threshold
    and all misses before, so at threshold t: TP = total length of segments whose maximum is
    >= t, FP = normal steps scoring >= t. Every distinct score is a candidate."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    segments = ranges_from_labels(y)
    if not segments:
        return math.nan
    seg_max = np.array([s[a:b].max() for a, b in segments])
    seg_len = np.array([b - a for a, b in segments], dtype=np.float64)
    order = np.argsort(seg_max)
    seg_max, seg_len = seg_max[order], seg_len[order]
    len_from = np.r_[np.cumsum(seg_len[::-1])[::-1], 0.0]  # total length of segments i.. (sorted)
    normal = np.sort(s[~y])
    candidates = np.unique(s)
    tp = len_from[np.searchsorted(seg_max, candidates, side="left")]
    fp = len(normal) - np.searchsorted(normal, candidates, side="left")
    f1 = 2 * tp / (2 * tp + fp + (y.sum() - tp))
    return float(f1.max())


def cell_figures(
    val_scores: np.ndarray,
    val_labels: np.ndarray,
    calibration_scores: np.ndarray,
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    *,
    contributions: np.ndarray | None,
    causes: Sequence[Anomaly],
    alerting: AlertSettings,
    vus_window: int,
    look_ahead: int | None = None,
    steps_per_day: float | None = None,
) -> tuple[dict[str, float], dict]:
    """Every quality figure of a cell from its scores alone (so a stored cell can be checked,
    or refigured under a new protocol, by recomputing them), and its alert rule: how the
    threshold was chosen, and the rule itself. ``look_ahead``: the detector's (None where
    it is not known: time to alert is then undefined); ``steps_per_day``: the series' (None
    where its data has no clock: false incidents per day are then undefined)."""
    rule = choose_alert_rule(val_scores, val_labels, calibration_scores, alerting)
    figures = metric_suite(
        test_labels,
        test_scores,
        rule,
        contributions=contributions,
        causes=causes,
        vus_window=vus_window,
        past_scores=val_scores,
        steps_per_day=steps_per_day,
    )
    if np.asarray(test_labels).any():
        figures["oracle_pa_f1"] = best_point_adjusted_f1(test_labels, test_scores)
    else:
        figures["oracle_pa_f1"] = math.nan
    # offline, an incident starts where its first score crosses; a stream knows that score
    # only look_ahead steps later (NAB's kmeans, window 40 and spread 100: 139 steps, 11.6 h)
    figures["look_ahead_steps"] = math.nan if look_ahead is None else float(look_ahead)
    figures["time_to_alert_steps"] = figures.get("time_to_detect_steps", math.nan) + figures["look_ahead_steps"]
    return figures, {"threshold_rule": rule.rule, "threshold_detail": rule.detail, "alert_rule": rule.to_dict()}


class PeakMemory:
    """Resident memory a block of code adds at its peak, sampled every ``interval`` seconds
    (Linux: /proc/self/statm; elsewhere the process's lifetime peak, an upper bound)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak_mb = math.nan

    @staticmethod
    def _rss_mb() -> float:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def __enter__(self) -> PeakMemory:
        self._start = self._rss_mb()
        self._top = self._start
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self._top = max(self._top, self._rss_mb())

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self._top = max(self._top, self._rss_mb())
        self.peak_mb = self._top - self._start


@dataclass
class CellRun:
    """What running one detector on one series gives: its scores and its costs."""

    val_scores: np.ndarray
    test_scores: np.ndarray
    calibration_scores: np.ndarray
    test_contributions: np.ndarray | None  # None where the detector gives none (PyOD peers)
    fit_seconds: float
    score_steps_per_second: float
    peak_memory_mb: float


def run_cell(detector, series: PreparedSeries) -> CellRun:
    """Fit on train, score the validation head and the test tail, timing each and sampling
    memory. ``detector``: anything with fit, score, score_and_contributions and
    calibration_scores_ (Vigil's detectors; the PyOD peers' adapter), or with
    ``run_series(series) -> CellRun`` where it runs elsewhere (a peer in its own environment
    measures itself there)."""
    if hasattr(detector, "run_series"):
        return detector.run_series(series)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        detector.fit(series.train)
        fit_seconds = time.perf_counter() - t0
        val_scores = detector.score(series.validation)
        t0 = time.perf_counter()
        test_scores, contributions = detector.score_and_contributions(series.test)
        score_seconds = time.perf_counter() - t0
    return CellRun(
        np.asarray(val_scores, dtype=np.float64),
        np.asarray(test_scores, dtype=np.float64),
        np.asarray(detector.calibration_scores_, dtype=np.float64),
        contributions,
        fit_seconds,
        len(series.test) / max(score_seconds, 1e-9),
        mem.peak_mb,
    )


def summarise(rows: Sequence[dict], figures: Sequence[str] = FIGURES) -> list[dict]:
    """Mean and median of each figure over the series of each (dataset, detector), ignoring
    undefined (NaN) ones; ``n`` counts the series that ran, ``failed`` the ones that did not."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["detector"]), []).append(r)
    out = []
    for (dataset, detector), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        entry: dict = {"dataset": dataset, "detector": detector, "n": len(ok), "failed": len(rs) - len(ok)}
        for f in figures:
            vals = np.array([r["figures"].get(f, math.nan) for r in ok], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            entry[f] = {
                "mean": float(vals.mean()) if vals.size else math.nan,
                "median": float(np.median(vals)) if vals.size else math.nan,
                "n": int(vals.size),
            }
        out.append(entry)
    return out
