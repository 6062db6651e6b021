"""Threshold choice on validation, and the whole metric suite on test, in one place so that
every caller reports the same, honestly labelled, figures.

Two paths to a threshold, and the result records which one was taken:

- labelled: ``best_f1`` on the validation split's labels, or ``pot`` on its scores;
- label-free, where the validation split holds no labelled anomaly (operators' data often
  has no labels at all): POT on the detector's ``calibration_scores_``, its scores on a tail
  of train that the fitted model did not learn from (data assumed normal).

A metric that needs labels is never invented: where a split holds no labelled anomaly it is
NaN, and the result says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import metrics as M
from .attribution import hit_rate
from .datasets.base import Anomaly
from .detectors import Detector
from .thresholds import best_f1_threshold, pot_threshold, pot_threshold_from

THRESHOLD_METHODS = ("best_f1", "pot")
POT_MIN_PEAKS = 10  # pot_threshold's floor on excesses for a GPD fit
NO_LABELS = "no labelled anomaly in the {split} split"
LABEL_METRICS = ("point", "pa", "event", "affiliation")  # prefixes of the figures that need labels
THRESHOLD_FREE = ("auc_roc", "auc_pr", "vus_pr")


@dataclass(frozen=True)
class Threshold:
    value: float
    rule: str  # how it was chosen, in words, with the split it saw
    label_free: bool
    detail: str = ""  # the rule's figures, and why a label-free rule was used


@dataclass(frozen=True)
class FeedbackSteps:
    """Operator-labelled steps (the feedback dataset, components/feedback.py), scored by the
    detector being thresholded: labels 1 / 0, steps left out already removed."""

    scores: np.ndarray
    labels: np.ndarray
    segments: int  # stretches they came from
    skipped: int = 0  # stretches shorter than the detector's window, not scored

    def describe(self) -> str:
        n, pos = len(self.labels), int(np.sum(self.labels))
        skipped = f"; {self.skipped} stretch(es) shorter than the window left out" if self.skipped else ""
        return f"operator feedback: {n} steps in {self.segments} stretch(es), {pos} in confirmed incidents{skipped}"


def feedback_steps(detector: Detector, x: np.ndarray, labels: np.ndarray, segments: np.ndarray) -> FeedbackSteps:
    """Each stretch of the feedback data scored on its own (a stretch is contiguous in time;
    two stretches are not), the steps left out (label -1) dropped."""
    scores, kept, skipped = [], [], 0
    for a, b in np.asarray(segments).reshape(-1, 2):
        try:
            s = detector.score(x[a:b])
        except ValueError:  # shorter than the detector's window
            skipped += 1
            continue
        use = labels[a:b] >= 0
        scores.append(s[use])
        kept.append(labels[a:b][use])
    if not scores:
        return FeedbackSteps(np.zeros(0), np.zeros(0, dtype=np.int8), 0, skipped)
    return FeedbackSteps(np.concatenate(scores), np.concatenate(kept), len(scores), skipped)


def choose_threshold(
    val_scores: np.ndarray,
    val_labels: np.ndarray,
    calibration_scores: np.ndarray,
    *,
    method: str = "best_f1",
    pot_q: float = 1e-3,
    pot_level: float = 0.98,
    feedback: FeedbackSteps | None = None,
) -> Threshold:
    """A threshold that never sees the test split. ``best_f1`` uses the validation labels
    and the operators' labelled steps (``feedback``) where there are any anomalies among
    them, else falls back to POT on the calibration scores (label-free); ``pot`` uses the
    validation scores only."""
    if method == "pot":
        unused = f"; {feedback.describe()}, not used by pot" if feedback is not None and len(feedback.labels) else ""
        return Threshold(
            pot_threshold(val_scores, q=pot_q, level=pot_level),
            "pot on validation scores",
            True,
            f"q={pot_q:g}, level={pot_level:g}{unused}",
        )
    if method != "best_f1":
        raise ValueError(f"unknown threshold method {method!r}; choose one of {THRESHOLD_METHODS}")
    if feedback is not None and len(feedback.labels):
        scores = np.concatenate([np.asarray(val_scores, dtype=np.float64), feedback.scores])
        labels = np.concatenate([np.asarray(val_labels).astype(np.int8), feedback.labels])
        if labels.any():
            source = "validation labels and operator feedback" if np.any(val_labels) else "operator feedback"
            return Threshold(best_f1_threshold(scores, labels)[0], f"best_f1 on {source}", False, feedback.describe())
        why = f"{feedback.describe()}: no confirmed anomaly, so "
        free = label_free_threshold(calibration_scores, pot_q=pot_q, pot_level=pot_level)
        return Threshold(free.value, free.rule, True, why + free.detail)
    if np.asarray(val_labels).any():
        return Threshold(best_f1_threshold(val_scores, val_labels)[0], "best_f1 on validation labels", False)
    return label_free_threshold(calibration_scores, pot_q=pot_q, pot_level=pot_level)


def label_free_threshold(calibration_scores: np.ndarray, *, pot_q: float, pot_level: float) -> Threshold:
    """POT on scores of data assumed normal. POT starts at the ``pot_level`` quantile, lowered
    where needed until `POT_MIN_PEAKS` scores exceed it (a short tail, or tied scores: MSL's
    one-hot command columns give many); with too few distinct scores for that, the threshold
    sits just above the largest one. The rule says which."""
    x = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    n = len(x)
    if n < 2 * POT_MIN_PEAKS:
        raise ValueError(
            f"label-free threshold: {n} calibration scores (the held-out tail of train) are too few for POT; "
            f"it needs {2 * POT_MIN_PEAKS}. Lengthen train, raise the detector's val_fraction/"
            f"calibration_fraction, or use threshold.method: pot (on validation scores)"
        )
    why = NO_LABELS.format(split="validation")
    start = float(np.quantile(x, pot_level))
    # the highest start that leaves enough excesses: below the POT_MIN_PEAKS-th largest score
    below = x[x < x[-POT_MIN_PEAKS]]
    if below.size == 0:
        return Threshold(
            float(np.nextafter(x[-1], np.inf)),
            "label-free: above the largest held-out train-tail score",
            True,
            f"{n} scores, too few distinct ones for POT; {why}",
        )
    start = min(start, float(below[-1]))
    level = float(np.mean(x <= start))
    return Threshold(
        pot_threshold_from(x, start, pot_q),
        "label-free: pot on held-out train-tail scores",
        True,
        f"q={pot_q:g}, from the {level:.3g} quantile of {n} scores; {why}",
    )


def _safe(fn, *args) -> float:
    try:
        return float(fn(*args))
    except ValueError:  # a metric undefined on this split (e.g. no anomaly at all)
        return math.nan


def metric_suite(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    *,
    contributions: np.ndarray | None = None,
    causes: Sequence[Anomaly] = (),
    vus_window: int = 20,
) -> dict[str, float]:
    """Every score Vigil reports, keyed by what it is:

    ``point_*`` point-wise; ``pa_*`` point-adjusted (inflated, for comparison with papers);
    ``event_*`` composite (point precision, event recall); ``affiliation_*``; ``auc_roc``,
    ``auc_pr`` (average precision), ``vus_pr`` threshold-free; ``hitrate_100``/``hitrate_150``
    where causes and contributions over two or more metrics are given (with one metric every
    detector scores 1 by construction, so the figure would say nothing). NaN marks a metric
    undefined on this data: all but ``threshold`` and ``flagged_share`` where ``labels`` hold
    no anomaly.
    """
    labels = np.asarray(labels)
    preds = (np.asarray(scores) >= threshold).astype(np.int8)
    out: dict[str, float] = {"threshold": float(threshold), "flagged_share": float(preds.mean())}
    if not labels.any():
        for prefix in LABEL_METRICS:
            out.update({f"{prefix}_{m}": math.nan for m in ("precision", "recall", "f1")})
        out.update({k: math.nan for k in THRESHOLD_FREE})
        return out
    for prefix, fn, p in (("point", M.point_prf, preds), ("pa", M.point_prf, None), ("event", M.event_f1, preds)):
        p = M.point_adjust(labels, preds) if p is None else p
        out.update(dict(zip((f"{prefix}_precision", f"{prefix}_recall", f"{prefix}_f1"), fn(labels, p))))
    try:
        aff = M.affiliation_prf(labels, preds)
    except ValueError:
        aff = (math.nan,) * 3
    out.update(dict(zip(("affiliation_precision", "affiliation_recall", "affiliation_f1"), aff)))
    out["auc_roc"] = _safe(M.auc_roc, labels, scores)
    out["auc_pr"] = _safe(M.auc_pr, labels, scores)
    out["vus_pr"] = _safe(M.vus_pr, labels, scores, vus_window)
    if (
        contributions is not None
        and np.ndim(contributions) == 2
        and np.shape(contributions)[1] > 1
        and any(a.metrics for a in causes)
    ):
        out["hitrate_100"] = hit_rate(contributions, causes, 1.0)
        out["hitrate_150"] = hit_rate(contributions, causes, 1.5)
    return out


@dataclass
class DetectorResult:
    """One fitted detector, thresholded on validation and measured on both splits."""

    name: str
    fit_seconds: float
    threshold: Threshold
    validation: dict[str, float]
    test: dict[str, float]
    val_scores: np.ndarray
    test_scores: np.ndarray
    undefined: dict[str, str] = field(default_factory=dict)  # split -> why its label metrics are NaN


def threshold_and_measure(
    name: str,
    detector: Detector,
    fit_seconds: float,
    *,
    val_x: np.ndarray,
    val_labels: np.ndarray,
    test_x: np.ndarray,
    test_labels: np.ndarray,
    test_causes: Sequence[Anomaly],
    method: str,
    pot_q: float,
    pot_level: float,
    vus_window: int,
    feedback: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> DetectorResult:
    """Threshold from the validation split and the operators' feedback (``feedback``: steps,
    labels, segments) or the label-free rule only; the whole metric suite on both splits
    (validation figures on the validation split alone)."""
    val_scores = detector.score(val_x)
    steps = feedback_steps(detector, *feedback) if feedback is not None else None
    threshold = choose_threshold(
        val_scores,
        val_labels,
        detector.calibration_scores_,
        method=method,
        pot_q=pot_q,
        pot_level=pot_level,
        feedback=steps,
    )
    val_metrics = metric_suite(val_labels, val_scores, threshold.value, vus_window=vus_window)
    test_scores, test_contrib = detector.score_and_contributions(test_x)
    test_metrics = metric_suite(
        test_labels, test_scores, threshold.value, contributions=test_contrib, causes=test_causes, vus_window=vus_window
    )
    undefined = {
        split: NO_LABELS.format(split=split)
        for split, labels in (("validation", val_labels), ("test", test_labels))
        if not np.any(labels)
    }
    return DetectorResult(name, fit_seconds, threshold, val_metrics, test_metrics, val_scores, test_scores, undefined)
