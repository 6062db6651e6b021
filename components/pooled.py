"""Point-wise counts pooled over files, as SKAB's protocol scores a detector: one F1 from the
TP, FP and FN summed over every file. Kept apart from the per-cell protocol
(`components.benchmark`), whose code keys the stored cells' figures: these counts are the
report's, computed from the stored scores."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class PooledCounts:
    """Point-wise counts summed over files, as SKAB's protocol pools them into one F1, with
    each file's false positives split by where they fall: before its first labelled step
    (``fp_before``), after its last (``fp_after``), or between its labelled stretches (the
    rest). A file with no labelled step counts its false positives in ``fp`` only; ``failed``
    counts the files a detector could not score. The split says where a rule loses: a
    process that never returns to train's regime after an anomaly is flagged after it, and
    one that drifts before it is flagged before it."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    fp_before: int = 0
    fp_after: int = 0
    files: int = 0
    failed: int = 0

    def add(self, flags: np.ndarray, labels: np.ndarray) -> None:
        f, y = np.asarray(flags, dtype=bool), np.asarray(labels, dtype=bool)
        if f.shape != y.shape:
            raise ValueError(f"flags {f.shape} and labels {y.shape} differ in shape")
        false = f & ~y
        self.tp += int((f & y).sum())
        self.fp += int(false.sum())
        self.fn += int((~f & y).sum())
        if y.any():
            first, last = np.flatnonzero(y)[[0, -1]]
            self.fp_before += int(false[:first].sum())
            self.fp_after += int(false[last + 1 :].sum())
        self.files += 1

    def figures(self) -> dict:
        """The counts with pooled precision, recall and F1 (NaN where undefined)."""
        tp, fp, fn = self.tp, self.fp, self.fn
        return {
            **asdict(self),
            "precision": tp / (tp + fp) if tp + fp else math.nan,
            "recall": tp / (tp + fn) if tp + fn else math.nan,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan,
        }


def onset_to_end(labels: np.ndarray) -> np.ndarray:
    """Flags from a file's first labelled step to its end (none where it holds no label):
    what a detector that finds every anomaly at once, and never clears after it, flags. Its
    pooled F1 bounds any such detector's, whatever its threshold."""
    y = np.asarray(labels, dtype=bool)
    flags = np.zeros_like(y)
    if y.any():
        flags[np.flatnonzero(y)[0] :] = True
    return flags
