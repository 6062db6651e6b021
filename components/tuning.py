"""What a tuning trial is scored on, and how: the pure part of tuning (Optuna drives it from
`tasks/tune.py`).

Two kinds of objective, both on data the final threshold search and the test tail never share:

- labelled (``best_f1``, ``auc_pr``, ``vus_pr``): the validation head's labels, detector fitted
  on the whole of train;
- ``label_free``: for operators without labels, and for validation heads that hold no
  anomaly. The last ``holdout_fraction`` of train, assumed normal, is held out; anomalies of
  the synthetic generator's five kinds are planted in it, seeded; the detector is fitted on
  the rest of train and scored by VUS-PR on the planted tail.

Where a labelled objective is asked for but the validation head has no labelled anomaly, the
label-free one is used and the `TuningSet` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import metrics as M
from .datasets.base import Anomaly, DataError
from .datasets.synthetic import KINDS, plant_anomalies
from .thresholds import best_f1_threshold

OBJECTIVES = M.TUNING_OBJECTIVES
MIN_STEPS_PER_ANOMALY = 20  # each planted anomaly gets a slot of at least this many steps
CORRELATED = 0.7  # |Pearson r| at which two metrics count as one group for a correlated fault


@dataclass(frozen=True)
class TuningSet:
    """What every trial of one study fits on and is scored on."""

    objective: str  # the one asked for
    used: str  # the one used: ``objective``, or ``label_free`` where labels are missing
    fit: np.ndarray  # [T, F] the detector is fitted on
    x: np.ndarray  # [T', F] scored
    labels: np.ndarray  # [T'] 0/1
    why: str = ""  # why ``used`` differs from ``objective``, or what was added to the validation head
    planted: list[Anomaly] = field(default_factory=list)  # label-free: what was planted where
    feedback: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # operator-labelled stretches

    def score(self, detector) -> tuple[np.ndarray, np.ndarray]:
        """Scores and labels of all a trial is measured on: ``x``, then each stretch of operator
        feedback scored on its own (stretches are not contiguous with each other), its steps
        left out (label -1) dropped."""
        scores, labels = [np.asarray(detector.score(self.x))], [np.asarray(self.labels)]
        for x, lab in self.feedback:
            keep = lab >= 0
            scores.append(np.asarray(detector.score(x))[keep])
            labels.append(lab[keep])
        return np.concatenate(scores), np.concatenate(labels).astype(np.int8)


def correlation_groups(x: np.ndarray, min_abs_r: float = CORRELATED) -> list[int | None]:
    """Each metric's group: metrics linked by |r| >= ``min_abs_r`` (single linkage) share one;
    a metric that does not vary gets None (nothing can be planted in it)."""
    x = np.asarray(x, dtype=np.float64)
    varies = x.std(axis=0) > 1e-9
    groups: list[int | None] = [None] * x.shape[1]
    idx = np.flatnonzero(varies)
    if idx.size == 0:
        return groups
    r = np.atleast_2d(np.corrcoef(x[:, idx], rowvar=False)) if idx.size > 1 else np.ones((1, 1))
    parent = list(range(idx.size))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(*np.nonzero(np.abs(np.nan_to_num(r)) >= min_abs_r)):
        parent[root(int(a))] = root(int(b))
    for k, j in enumerate(idx):
        groups[int(j)] = root(k)
    return groups


def planted_tail(train: np.ndarray, *, holdout_fraction: float, n_anomalies: int, seed: int, min_steps: int):
    """(train head, tail with anomalies planted, its labels, what was planted). The tail is the
    last ``holdout_fraction`` of train, at least ``min_steps`` long; fewer anomalies are
    planted where the tail is too short for ``n_anomalies`` slots."""
    train = np.asarray(train)
    tail = max(int(len(train) * holdout_fraction), min_steps, MIN_STEPS_PER_ANOMALY * len(KINDS))
    if len(train) - tail < min_steps:
        raise DataError(
            f"label-free objective: train has {len(train)} steps, too few to hold out a tail of {tail} and fit on "
            f"the rest (needs {min_steps} more); lower tuning.label_free.holdout_fraction or lengthen train"
        )
    head, normal = train[:-tail], train[-tail:].astype(np.float64)
    n = max(1, min(n_anomalies, tail // MIN_STEPS_PER_ANOMALY))
    groups = correlation_groups(head)
    sigma = np.maximum(head.astype(np.float64).std(axis=0), 1e-6)
    planted = normal.copy()
    causes = plant_anomalies(planted, sigma, groups, n, np.random.default_rng(seed))
    labels = np.zeros(tail, dtype=np.int8)
    for a in causes:
        labels[a.start : a.end] = 1
    return head, planted.astype(train.dtype), labels, causes


def tuning_set(
    train: np.ndarray,
    val_x: np.ndarray,
    val_labels: np.ndarray,
    *,
    objective: str,
    holdout_fraction: float,
    n_anomalies: int,
    seed: int,
    min_steps: int,
    feedback: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> TuningSet:
    """The data of one study. Takes train, the validation head and the operators' labelled
    steps (``feedback``: steps, labels 1 / 0 / -1, segment ranges; prepare's `feedback`
    arrays) only: the test tail is not an argument, so tuning cannot read it. ``min_steps``:
    the longest window any trial may draw, so that every part is long enough for it (shorter
    feedback stretches are left out)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown tuning objective {objective!r}; choose one of {OBJECTIVES}")
    why = ""
    if objective != "label_free":
        pieces = []
        if feedback is not None:
            x, lab, segments = feedback
            pieces = [(x[a:b], lab[a:b]) for a, b in np.asarray(segments).reshape(-1, 2) if b - a >= min_steps]
        if np.asarray(val_labels).any() or any((lab == 1).any() for _, lab in pieces):
            note = ""
            if pieces:
                steps = sum(int((lab >= 0).sum()) for _, lab in pieces)
                note = (
                    f"{objective} on the validation head and operator feedback ({steps} steps, {len(pieces)} stretches)"
                )
            return TuningSet(
                objective, objective, np.asarray(train), np.asarray(val_x), np.asarray(val_labels), note, [], pieces
            )
        why = f"no labelled anomaly in the validation split, so {objective} is undefined there; used label_free"
    head, planted, labels, causes = planted_tail(
        train, holdout_fraction=holdout_fraction, n_anomalies=n_anomalies, seed=seed, min_steps=min_steps
    )
    return TuningSet(objective, "label_free", head, planted, labels, why, causes)


def objective_value(used: str, labels: np.ndarray, scores: np.ndarray, vus_window: int) -> float:
    """Higher is better for every objective. ``label_free`` is VUS-PR on the planted tail."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ValueError("the detector gave non-finite scores")
    if used == "best_f1":
        return float(best_f1_threshold(scores, labels)[1])
    if used == "auc_pr":
        return float(M.auc_pr(labels, scores))
    if used in ("vus_pr", "label_free"):
        return float(M.vus_pr(labels, scores, vus_window))
    raise ValueError(f"unknown tuning objective {used!r}; choose one of {OBJECTIVES}")
