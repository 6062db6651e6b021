"""The `Dataset` every loader returns, and the checks every loader shares."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
                raise DataError(
                    f"{self.name}: anomaly [{a.start}, {a.end}) names metrics {bad} outside 0..{self.n_features - 1}"
                )

    @property
    def n_features(self) -> int:
        return self.train.shape[1]

    def cause_mask(self) -> np.ndarray:
        """Boolean [T_test, F]: True where a metric is a labelled cause at that step."""
        mask = np.zeros(self.test.shape, dtype=bool)
        for a in self.causes:
            mask[a.start : a.end, list(a.metrics)] = True
        return mask


@dataclass(frozen=True)
class DatasetSource:
    """Where one dataset lives: its kind (a key of `DATASET_KINDS`), the raw folder, the name
    inside it (SMD machine, telemanom channel, NAB series, CSV file) and the kind's own options
    (the CSV kind's column names, the synthetic kind's generator settings)."""

    kind: str
    root: Path
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


@dataclass
class RawTable:
    """One raw input file read leniently, as a table, for validation before the strict loader
    runs; the expected column list, time and label columns, and exact row count (if any)."""

    path: Path
    role: str  # "train", "test", "labels" or "series"
    frame: pd.DataFrame
    columns: list[str]  # the columns expected, in order
    time_column: str | None = None
    label_column: str | None = None
    rows: int | None = None  # exact row count expected (labels: that of test)
    time_mostly: float = 1.0  # share of rows whose time must increase (NAB has clock steps back)
    metrics: list[str] = field(default_factory=list)
    first_line: int | None = None  # the file line of frame row 0 (CSV with a header: 2); None: not a text file

    def where(self, rows: Sequence[int]) -> str:
        """Rows of the frame as a user finds them: file lines of a text file, else row numbers."""
        lines = None if self.first_line is None else np.arange(len(self.frame)) + self.first_line
        return _where(np.asarray(rows, dtype=np.int64), lines)

    @classmethod
    def train_and_test(cls, files: Sequence[tuple[str, Path, pd.DataFrame]], first_line: int | None) -> list[RawTable]:
        """Tables of a train and a test file read alike: each must have train's columns."""
        expected = list(files[0][2].columns)
        return [
            cls(path, role, frame, expected, metrics=list(frame.columns), first_line=first_line)
            for role, path, frame in files
        ]


@dataclass(frozen=True)
class DatasetKind:
    """Everything Vigil needs to know about one layout of raw data. One module per kind
    defines its ``KIND``; `kinds.DATASET_KINDS` lists them.

    ``load``: the strict loader (bad input raises `DataError` naming file, column, rows).
    ``raw_tables``: the raw files read leniently for validation. ``test_file``: the file that
    holds the test rows, for messages. ``list_series``: the names a root holds.
    ``generate``: for kinds made from settings (synthetic), write the raw files if absent or
    made with other settings; True if written. ``log_format``: for telemetry made from event
    logs, the key of `components.logs.formats.LOG_FORMATS` whose `logs` flow makes ``root``.
    ``step_seconds``: the spacing of its rows where the layout fixes it but the rows carry no
    time (SMD: one line a minute); None where rows carry timestamps (measured from them) or
    nothing says (telemanom). False incidents per day need it.
    """

    name: str
    load: Callable[[DatasetSource], Dataset]
    raw_tables: Callable[[DatasetSource], list[RawTable]]
    test_file: Callable[[DatasetSource], Path]
    list_series: Callable[[Path], list[str]]
    generate: Callable[[DatasetSource, bool], bool] | None = None
    log_format: str | None = None
    step_seconds: float | None = None


def _where(rows: np.ndarray, lines: np.ndarray | None) -> str:
    """Rows as a user finds them: file lines where the caller knows them, else 0-based rows."""
    rows = np.asarray(rows)[:5]
    return f"lines {np.asarray(lines)[rows].tolist()}" if lines is not None else f"rows {rows.tolist()}"


def check_labels(labels: np.ndarray, source: str | Path, lines: np.ndarray | None = None) -> None:
    """Labels must be 1-D and hold only 0 and 1. ``lines``: each row's line in the file."""
    if labels.ndim != 1:
        raise DataError(f"{source}: labels must be one-dimensional, got shape {labels.shape}")
    bad = np.flatnonzero(~np.isin(labels, (0, 1)))
    if bad.size:
        raise DataError(
            f"{source}: labels must be 0 or 1; {bad.size} rows are not, first at {_where(bad, lines)} "
            f"with values {np.asarray(labels)[bad[:5]].tolist()}"
        )


def check_finite(
    values: np.ndarray, source: str | Path, columns: Sequence[str] | None = None, lines: np.ndarray | None = None
) -> None:
    """Every value must be a finite number; the error names the columns and the rows (their
    file ``lines`` where given) that are not."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    rows, cols = np.nonzero(bad)
    names = sorted({(columns[c] if columns is not None else str(c)) for c in cols})
    kinds = "NaN" if np.isnan(values[bad]).all() else "NaN or infinite"
    where = _where(np.unique(rows), lines)
    raise DataError(f"{source}: {bad.sum()} {kinds} values in column(s) {names[:10]}; first at {where}")


def read_csv_table(path: Path, **kw) -> pd.DataFrame:
    """A raw CSV read leniently for validation; a missing file is named."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pd.read_csv(path, **kw)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: ragged or malformed CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None


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
