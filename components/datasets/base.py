"""The `Dataset` every loader returns, and the checks every loader shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd


class DataError(ValueError):
    """Raised for input data that Vigil refuses; the message names the file, column and rows."""


@dataclass(frozen=True)
class Anomaly:
    """One labelled anomaly: test steps ``[start, end)`` (0-based, end exclusive) and the
    0-based indices of the metrics that cause it."""

    start: int
    end: int
    metrics: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.end):
            raise DataError(f"anomaly [{self.start}, {self.end}) is empty or negative")
        object.__setattr__(self, "metrics", tuple(int(m) for m in self.metrics))


@dataclass(frozen=True)
class Dataset:
    """A multivariate telemetry series split into train and test.

    ``train``/``test``: DataFrames, one row per time step, one column per metric (the same
    columns in the same order). ``labels``: int8 array of 0/1 over ``test``. ``causes``: the
    labelled anomalies with the metrics behind each (empty where the source has none).
    """

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    labels: np.ndarray
    causes: list[Anomaly] = field(default_factory=list)
    features: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if list(self.train.columns) != list(self.test.columns):
            raise DataError(f"{self.name}: train and test columns differ")
        if not self.features:
            object.__setattr__(self, "features", [str(c) for c in self.train.columns])
        if len(self.features) != self.train.shape[1]:
            raise DataError(f"{self.name}: {len(self.features)} feature names for {self.train.shape[1]} columns")
        labels = np.asarray(self.labels)
        check_labels(labels, self.name)
        if len(labels) != len(self.test):
            raise DataError(f"{self.name}: {len(labels)} labels for {len(self.test)} test rows")
        object.__setattr__(self, "labels", labels.astype(np.int8, copy=False))
        for a in self.causes:
            if a.end > len(self.test):
                raise DataError(f"{self.name}: anomaly [{a.start}, {a.end}) runs past the test end {len(self.test)}")
            bad = [m for m in a.metrics if not 0 <= m < self.n_features]
            if bad:
                raise DataError(f"{self.name}: anomaly [{a.start}, {a.end}) names metrics {bad} outside 0..{self.n_features - 1}")

    @property
    def n_features(self) -> int:
        return self.train.shape[1]

    def cause_mask(self) -> np.ndarray:
        """Boolean [T_test, F]: True where a metric is a labelled cause at that step."""
        mask = np.zeros(self.test.shape, dtype=bool)
        for a in self.causes:
            mask[a.start : a.end, list(a.metrics)] = True
        return mask


def check_labels(labels: np.ndarray, source: str | Path) -> None:
    """Labels must be 1-D and hold only 0 and 1."""
    if labels.ndim != 1:
        raise DataError(f"{source}: labels must be one-dimensional, got shape {labels.shape}")
    bad = np.flatnonzero(~np.isin(labels, (0, 1)))
    if bad.size:
        raise DataError(
            f"{source}: labels must be 0 or 1; {bad.size} rows are not, first rows "
            f"{bad[:5].tolist()} with values {np.asarray(labels)[bad[:5]].tolist()}"
        )


def check_finite(values: np.ndarray, source: str | Path, columns: Sequence[str] | None = None) -> None:
    """Every value must be a finite number; the error names the columns and rows that are not."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    rows, cols = np.nonzero(bad)
    names = sorted({(columns[c] if columns is not None else str(c)) for c in cols})
    kinds = "NaN" if np.isnan(values[bad]).all() else "NaN or infinite"
    raise DataError(
        f"{source}: {bad.sum()} {kinds} values in column(s) {names[:10]}; first rows {sorted(set(rows.tolist()))[:5]}"
    )


def labels_from_ranges(n: int, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """0/1 int8 array of length n with ones on each half-open range [start, end)."""
    labels = np.zeros(n, dtype=np.int8)
    for s, e in ranges:
        labels[s:e] = 1
    return labels


def ranges_from_labels(labels: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) runs of ones in a 0/1 array."""
    x = np.concatenate(([0], np.asarray(labels, dtype=np.int8) != 0, [0])).astype(np.int8)
    d = np.diff(x)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))
