"""Thresholds on anomaly scores. A step is flagged when ``score >= threshold``.

Search thresholds on a validation split; applying them to the test split is the only honest use.
"""

from __future__ import annotations

import numpy as np


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest point-wise F1 on (scores, labels), and that F1.

    One sort and cumulative sums: O(n log n). Every distinct score is a candidate.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be 1-D of one length")
    if not labels.any():
        raise ValueError("no positive label: the best-F1 threshold is undefined")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    flagged = np.arange(1, len(s) + 1)
    # Only the last position of each run of equal scores is a reachable cut.
    last = np.r_[s[1:] != s[:-1], True]
    tp, flagged, s = tp[last], flagged[last], s[last]
    f1 = 2 * tp / (flagged + labels.sum())
    best = int(np.argmax(f1))
    return float(s[best]), float(f1[best])


def quantile_threshold(scores: np.ndarray, q: float) -> float:
    """The ``q`` quantile of (normally anomaly-free) calibration scores."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    return float(np.quantile(np.asarray(scores, dtype=np.float64), q))


def pot_threshold(calibration_scores: np.ndarray, q: float = 1e-3, level: float = 0.98) -> float:
    """Peaks-over-threshold (SPOT, Siffer et al., KDD 2017), unsupervised.

    Fits a generalised Pareto distribution to the excesses over the ``level`` quantile of the
    calibration scores and returns the score exceeded with probability ``q``.
    """
    x = np.asarray(calibration_scores, dtype=np.float64)
    if not 0 < q < 1 or not 0 < level < 1:
        raise ValueError(f"q and level must be in (0, 1), got {q} and {level}")
    return pot_threshold_from(x, float(np.quantile(x, level)), q)


def pot_threshold_from(calibration_scores: np.ndarray, t: float, q: float = 1e-3) -> float:
    """POT with an explicit initial threshold ``t``: the GPD is fitted to the excesses over it."""
    from scipy.stats import genpareto

    x = np.asarray(calibration_scores, dtype=np.float64)
    peaks = x[x > t] - t
    if peaks.size < 10:
        raise ValueError(f"only {peaks.size} scores exceed {t:.6g}; POT needs at least 10")
    gamma, _, sigma = genpareto.fit(peaks, floc=0.0)
    r = q * x.size / peaks.size
    if abs(gamma) < 1e-8:
        return float(t - sigma * np.log(r))
    return float(t + sigma / gamma * (r ** (-gamma) - 1.0))


def best_event_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest composite F1 (point-wise precision, event-wise recall:
    `metrics.event_f1`), the objective of operators who count incidents, and that F1.

    An event is caught at threshold t when its highest score reaches t, so event recall is a
    step function of t: every distinct score is scored in one sort, O(n log n)."""
    from .datasets.base import ranges_from_labels

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be 1-D of one length")
    events = ranges_from_labels(labels)
    if not events:
        raise ValueError("no positive label: the best event-F1 threshold is undefined")
    cand = np.unique(scores)  # ascending
    # flagged and true positives at each candidate t (score >= t), by counts from the top
    s_all = np.sort(scores)
    s_pos = np.sort(scores[labels])
    flagged = len(s_all) - np.searchsorted(s_all, cand, side="left")
    tp = len(s_pos) - np.searchsorted(s_pos, cand, side="left")
    peaks = np.sort([scores[a:b].max() for a, b in events])
    caught = len(peaks) - np.searchsorted(peaks, cand, side="left")
    precision = tp / np.maximum(flagged, 1)
    recall = caught / len(events)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    best = int(np.argmax(f1))
    return float(cand[best]), float(f1[best])


def dynamic_threshold(scores: np.ndarray, z_range=(2.5, 12.0, 0.5), prune: float = 0.13) -> float:
    """Telemanom's non-parametric dynamic threshold (Hundman et al., KDD 2018; khundman/telemanom
    ``errors.py``), label-free, on (smoothed) scores: among mean + z * std for z in ``z_range``,
    the one whose removal of the flagged steps drops the mean and spread most, per flagged
    step and squared flagged sequence; then pruning: flagged sequences whose peak is not
    ``prune`` (13%) above the next lower peak (the highest unflagged score closing the list)
    are weak, and the threshold is raised above them."""
    s = np.asarray(scores, dtype=np.float64)
    mean, sd = float(s.mean()), float(s.std())
    if sd == 0 or not np.isfinite(sd):
        return float(np.nextafter(s.max(), np.inf))
    best_z, best = z_range[1], -np.inf
    # telemanom thresholds windows of 30 batches of 70 errors and allows 5 sequences in each;
    # over a whole split, as many per 2,100 scores (else a long head with many events is capped)
    max_seqs = max(5, int(np.ceil(5 * len(s) / 2100)))
    for z in np.arange(*z_range):
        t = mean + z * sd
        flagged = s >= t
        n = int(flagged.sum())
        if n == 0 or n >= len(s) * 0.5:
            continue
        below = s[~flagged]
        seqs = np.count_nonzero(np.diff(np.concatenate([[0], flagged.astype(np.int8)])) == 1)
        drop = (mean - below.mean()) / abs(mean) if mean else 0.0
        drop += (sd - below.std()) / sd
        score = drop / (n + seqs**2)
        if score > best and seqs <= max_seqs:
            best, best_z = score, z
    t = mean + best_z * sd
    flagged = s >= t
    if not flagged.any():
        return float(t)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flagged.astype(np.int8), [0]])))
    peaks = np.sort([s[a:b].max() for a, b in zip(edges[::2], edges[1::2])])[::-1]
    chain = np.concatenate([peaks, [s[~flagged].max() if (~flagged).any() else 0.0]])
    keep = 0  # sequences kept: all down to the last one that stands `prune` above the next
    for i in range(len(peaks)):
        if chain[i] > 0 and (chain[i] - chain[i + 1]) / chain[i] >= prune:
            keep = i + 1
    if keep == 0:  # every sequence weak: none flagged on this data
        return float(np.nextafter(peaks[0], np.inf))
    return float(min(t, peaks[keep - 1]) if keep == len(peaks) else np.nextafter(peaks[keep], np.inf))


def gauss_tail_threshold(calibration_scores: np.ndarray, p: float = 1e-3) -> float:
    """The score a Gaussian fitted to (normally anomaly-free) calibration scores exceeds with
    probability ``p``: the tail-probability threshold of Garg et al. (TNNLS 2021), applied to
    the detector's combined score (`uae`'s ``combine: gauss`` already normalises each
    channel's error by a Gaussian fitted on train, their Gauss-D scoring)."""
    from scipy.stats import norm

    x = np.asarray(calibration_scores, dtype=np.float64)
    if x.size < 2:
        raise ValueError(f"gauss_tail: {x.size} calibration scores; it needs at least 2")
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    return float(x.mean() + norm.isf(p) * x.std())
