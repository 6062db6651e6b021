"""Threshold choice on validation, and the whole metric suite on test, in one place so that
every caller reports the same, honestly labelled, figures."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from . import metrics as M
from .attribution import hit_rate
from .datasets.base import Anomaly
from .thresholds import best_f1_threshold, pot_threshold

THRESHOLD_METHODS = ("best_f1", "pot")


def choose_threshold(val_scores: np.ndarray, val_labels: np.ndarray, method: str = "best_f1",
                     pot_q: float = 1e-3, pot_level: float = 0.98) -> float:
    """A threshold from the validation split only. ``best_f1`` uses its labels; ``pot`` only
    its scores (unsupervised)."""
    if method == "best_f1":
        return best_f1_threshold(val_scores, val_labels)[0]
    if method == "pot":
        return pot_threshold(val_scores, q=pot_q, level=pot_level)
    raise ValueError(f"unknown threshold method {method!r}; choose one of {THRESHOLD_METHODS}")


def _safe(fn, *args) -> float:
    try:
        return float(fn(*args))
    except ValueError:  # a metric undefined on this split (e.g. no anomaly at all)
        return math.nan


def evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float, *,
             contributions: np.ndarray | None = None, causes: Sequence[Anomaly] = (),
             vus_window: int = 20) -> dict[str, float]:
    """Every score Vigil reports, keyed by what it is:

    ``point_*`` point-wise; ``pa_*`` point-adjusted (inflated, for comparison with papers);
    ``event_*`` composite (point precision, event recall); ``affiliation_*``; ``auc_roc``,
    ``auc_pr`` (average precision), ``vus_pr`` threshold-free; ``hitrate_100``/``hitrate_150``
    where causes and contributions over two or more metrics are given (with one metric every
    detector scores 1 by construction, so the figure would say nothing). NaN marks a metric
    undefined on this data.
    """
    labels = np.asarray(labels)
    preds = (np.asarray(scores) >= threshold).astype(np.int8)
    out: dict[str, float] = {"threshold": float(threshold)}
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
    if contributions is not None and np.ndim(contributions) == 2 and np.shape(contributions)[1] > 1 \
            and any(a.metrics for a in causes):
        out["hitrate_100"] = hit_rate(contributions, causes, 1.0)
        out["hitrate_150"] = hit_rate(contributions, causes, 1.5)
    return out
