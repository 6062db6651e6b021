"""Root-cause attribution scores: does a detector's per-metric contribution point at the
metrics that really caused each anomaly?"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .datasets.base import Anomaly


def hit_rate(contributions: np.ndarray, causes: Sequence[Anomaly], p: float = 1.0) -> float:
    """HitRate@P% (OmniAnomaly, KDD 2019).

    For each labelled anomalous step with true cause set C, rank metrics by contribution and
    take the top floor(p * |C|); the step's hit rate is the share of C found there. Steps are
    averaged over all anomalies that name their causes; ``p=1.0`` is HitRate@100%,
    ``p=1.5`` HitRate@150%. NaN when no anomaly names causes.
    """
    c = np.asarray(contributions, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"contributions must be [time, metrics], got shape {c.shape}")
    if p <= 0:
        raise ValueError(f"p must be positive, got {p}")
    hits = []
    for a in causes:
        if not a.metrics:
            continue
        if a.end > c.shape[0]:
            raise ValueError(f"anomaly [{a.start}, {a.end}) runs past the {c.shape[0]} scored steps")
        truth = np.asarray(a.metrics)
        k = min(int(math.floor(p * len(truth))), c.shape[1])
        if k == 0:
            hits.extend([0.0] * (a.end - a.start))
            continue
        # top-k per row without a full sort; stable ranking is not needed for set membership
        top = np.argpartition(-c[a.start : a.end], k - 1, axis=1)[:, :k]
        found = np.isin(top, truth).sum(axis=1)
        hits.extend((found / len(truth)).tolist())
    return float(np.mean(hits)) if hits else math.nan
