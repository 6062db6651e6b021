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
