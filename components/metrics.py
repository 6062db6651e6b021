"""Scores for anomaly detectors, each named for what it measures.

- ``point_prf``: plain point-wise precision, recall, F1.
- ``point_adjust`` + ``point_prf``: the point-adjusted protocol (Xu et al., 2018): one hit in a
  true segment marks the whole segment. It inflates F1, sometimes enormously; report it only
  beside the point-wise figure.
- ``event_f1``: composite F1 (Garg et al., 2021): point-wise precision, event-wise recall.
- ``affiliation_prf``: affiliation precision/recall (Huet et al., KDD 2022).
- ``auc_roc``, ``auc_pr`` (average precision): threshold-free, point-wise.
- ``vus_pr``: volume under the range-based PR surface (Paparrizos et al., VLDB 2022).
"""

from __future__ import annotations

import math

import numpy as np

from .datasets.base import ranges_from_labels

# The figures that can choose a model (`components.selection`), all computed on validation.
SELECTION_METRICS = ("point_f1", "event_f1", "affiliation_f1", "auc_pr", "vus_pr", "auc_roc")
# What a tuning study maximises (`components.tuning`): three on the validation labels, and
# VUS-PR on anomalies planted in a held-out tail of train.
TUNING_OBJECTIVES = ("best_f1", "auc_pr", "vus_pr", "label_free")


def _binary(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return a.astype(bool)


def _pair(labels, preds) -> tuple[np.ndarray, np.ndarray]:
    y, p = _binary(labels, "labels"), _binary(preds, "preds")
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and preds {p.shape} differ in length")
    return y, p


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def point_prf(labels, preds) -> tuple[float, float, float]:
    """Point-wise precision, recall, F1 (0 where undefined)."""
    y, p = _pair(labels, preds)
    tp = float(np.sum(y & p))
    precision = tp / p.sum() if p.any() else 0.0
    recall = tp / y.sum() if y.any() else 0.0
    return precision, recall, _f1(precision, recall)


def point_adjust(labels, preds) -> np.ndarray:
    """Predictions with every true segment that holds at least one hit marked whole."""
    y, p = _pair(labels, preds)
    out = p.copy()
    for s, e in ranges_from_labels(y):
        if p[s:e].any():
            out[s:e] = True
    return out.astype(np.int8)


def event_f1(labels, preds) -> tuple[float, float, float]:
    """Composite F1: (point-wise precision, event-wise recall, their harmonic mean)."""
    y, p = _pair(labels, preds)
    events = ranges_from_labels(y)
    precision = float(np.sum(y & p)) / p.sum() if p.any() else 0.0
    recall = sum(bool(p[s:e].any()) for s, e in events) / len(events) if events else 0.0
    return precision, recall, _f1(precision, recall)


# --- affiliation (Huet, Navarro, Rossi, KDD 2022) ---------------------------------------
# Step i stands for the interval [i, i+1). Each true event J owns an affiliation zone [a, b]
# reaching halfway to its neighbours (the series ends bound the outer zones). Within the
# zone, a predicted point x scores P(dist(X, J) >= dist(x, J)) for X uniform on the zone
# (precision), and a true point y scores P(|X - y| >= dist(y, predictions in zone))
# (recall). Both integrands are piecewise linear, so they are integrated exactly.


def _int_pos_linear(x0: float, x1: float, g0: float, g1: float) -> float:
    """Exact integral over [x0, x1] of max(0, g) for g linear from g0 to g1."""
    w = x1 - x0
    if w <= 0:
        return 0.0
    if g0 >= 0 and g1 >= 0:
        return 0.5 * (g0 + g1) * w
    if g0 <= 0 and g1 <= 0:
        return 0.0
    t = w * max(g0, g1) / abs(g1 - g0)
    return 0.5 * max(g0, g1) * t


def _dist_to_set(x: float, intervals: list[tuple[float, float]]) -> float:
    return min(0.0 if s <= x <= e else (s - x if x < s else x - e) for s, e in intervals)


def _integrate(pieces: list[float], lo: float, hi: float, terms) -> float:
    """Integrate sum(max(0, term(x))) over [lo, hi], cut at ``pieces`` where terms are linear."""
    if hi <= lo:
        return 0.0
    cuts = sorted({lo, hi, *[c for c in pieces if lo < c < hi]})
    total = 0.0
    for x0, x1 in zip(cuts[:-1], cuts[1:]):
        for term in terms:
            total += _int_pos_linear(x0, x1, term(x0), term(x1))
    return total


def _zone_precision(preds: list[tuple[float, float]], j: tuple[float, float], a: float, b: float) -> float:
    js, je = j
    d = lambda x: _dist_to_set(x, [j])  # noqa: E731
    terms = (lambda x: (js - a - d(x)) / (b - a), lambda x: (b - je - d(x)) / (b - a))
    cuts = [js + je - b, js + je - a]
    total = 0.0
    for s, e in preds:
        total += max(0.0, min(e, je) - max(s, js))  # inside J: dist 0, probability 1
        total += _integrate(cuts, s, min(e, js), terms) + _integrate(cuts, max(s, je), e, terms)
    return total / sum(e - s for s, e in preds)


def _zone_recall(preds: list[tuple[float, float]], j: tuple[float, float], a: float, b: float) -> float:
    if not preds:
        return 0.0
    js, je = j
    d = lambda y: _dist_to_set(y, preds)  # noqa: E731
    terms = (lambda y: y - a - d(y), lambda y: b - y - d(y))
    cuts = [c for s, e in preds for c in (s, e)]
    cuts += [(e0 + s1) / 2 for (_, e0), (s1, _) in zip(preds[:-1], preds[1:])]
    # where y - a - d(y) or b - y - d(y) crosses zero: y = (a + s) / 2 or (b + e) / 2 of a prediction
    cuts += [c for s, e in preds for c in ((a + s) / 2, (b + e) / 2, (a + e) / 2, (b + s) / 2)]
    return _integrate(cuts, js, je, terms) / ((b - a) * (je - js))


def affiliation_prf(labels, preds) -> tuple[float, float, float]:
    """Affiliation precision, recall and their F1.

    Precision averages over the zones that hold a prediction (NaN if none does); recall over
    all true events (an event whose zone holds no prediction counts 0).
    """
    y, p = _pair(labels, preds)
    events = ranges_from_labels(y)
    if not events:
        raise ValueError("no true event: affiliation metrics are undefined")
    n = float(len(y))
    bounds = [0.0] + [(e0 + s1) / 2 for (_, e0), (s1, _) in zip(events[:-1], events[1:])] + [n]
    pred_events = ranges_from_labels(p)
    precisions, recalls = [], []
    for k, (js, je) in enumerate(events):
        a, b = bounds[k], bounds[k + 1]
        inside = [(max(s, a), min(e, b)) for s, e in pred_events if s < b and e > a]
        if inside:
            precisions.append(_zone_precision(inside, (js, je), a, b))
        recalls.append(_zone_recall(inside, (js, je), a, b))
    precision = float(np.mean(precisions)) if precisions else math.nan
    recall = float(np.mean(recalls))
    return precision, recall, (math.nan if math.isnan(precision) else _f1(precision, recall))


# --- threshold-free -----------------------------------------------------------------------


def _scored(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = _binary(labels, "labels")
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN or infinite values")
    if y.all() or not y.any():
        raise ValueError("labels need both classes for an AUC")
    return y, s


def auc_roc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    y, s = _scored(labels, scores)
    return float(roc_auc_score(y, s))


def auc_pr(labels, scores) -> float:
    """Area under the point-wise PR curve as average precision (step-wise, no interpolation)."""
    from sklearn.metrics import average_precision_score

    y, s = _scored(labels, scores)
    return float(average_precision_score(y, s))


def buffered_labels(labels, buffer: int) -> np.ndarray:
    """VUS's soft labels: each true range gains a ramp of ``buffer // 2`` steps on each side,
    weight sqrt(1 - d / buffer) at distance d, capped at 1 (as in the authors' code)."""
    y = _binary(labels, "labels").astype(np.float64)
    if buffer <= 0:
        return y
    out = y.copy()
    n, half = len(y), buffer // 2
    for s, e in ranges_from_labels(y):
        d = np.arange(1, half + 1)
        after = e - 1 + d
        out[after[after < n]] += np.sqrt(1 - d[after < n] / buffer)
        before = s - d
        out[before[before >= 0]] += np.sqrt(1 - d[before >= 0] / buffer)
    return np.minimum(out, 1.0)


def range_auc_pr(labels, scores, buffer: int) -> float:
    """Range-based AUC-PR for one buffer length (the slice of VUS-PR at that length), as
    TSB-AD computes it (`basic_metricor.RangeAUC_volume_opt`, Liu & Paparrizos, NeurIPS 2024),
    so Vigil's figures and the leaderboard's are one measure.

    At each threshold (every distinct score; TSB-AD samples 250 of them): TP = the soft labels
    of the flagged steps; precision = TP / flagged; recall = min(TP / P', 1) times the share of
    (buffered) ranges hit, where P' = P + (the buffer weight of the flagged steps) / 2. (The
    original VUS code took the whole buffer's weight for P', whatever was flagged: its figures
    run a little lower.) The area is average precision: the sum of recall steps from 0 times
    the precision at each threshold.
    """
    y, s = _scored(labels, scores)
    soft = buffered_labels(y, buffer)
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    tp = np.cumsum(soft[order])
    buffer_hit = np.cumsum((soft - y)[order])
    flagged = np.arange(1, len(s) + 1)
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # tied scores share one threshold
    tp, buffer_hit, flagged, thresholds = tp[last], buffer_hit[last], flagged[last], s_sorted[last]
    recall = np.minimum(tp / (y.sum() + buffer_hit / 2), 1.0)
    # existence reward: a range counts once its highest score is at or above the threshold
    ranges = ranges_from_labels(soft > 0)
    range_max = np.sort([s[a:b].max() for a, b in ranges])
    hit = len(ranges) - np.searchsorted(range_max, thresholds, side="left")
    recall = recall * hit / len(ranges)
    precision = tp / flagged
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def vus_pr(labels, scores, window: int) -> float:
    """Volume under the range-based PR surface: the mean of `range_auc_pr` over buffer
    lengths 0..window (Paparrizos et al., VLDB 2022). Tolerant of small lags between scores
    and labels, and free of any threshold."""
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    return float(np.mean([range_auc_pr(labels, scores, b) for b in range(window + 1)]))
