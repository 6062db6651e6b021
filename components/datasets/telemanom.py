"""The SMAP/MSL release of telemanom (Hundman et al., KDD 2018).

``<root>/train/<channel>.npy`` and ``<root>/test/<channel>.npy``: float arrays, rows = time
steps; column 0 is the channel's telemetry value, the others one-hot commands.
``<root>/labeled_anomalies.csv``: ``chan_id,spacecraft,anomaly_sequences,class,num_values``
with ``anomaly_sequences`` a list of inclusive ``[start, end]`` test indices.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .base import Anomaly, DataError, Dataset, DatasetKind, DatasetSource, RawTable, check_finite, labels_from_ranges


def _load_npy(path: Path, check_values: bool = True) -> np.ndarray:
    """A numeric 2-D array; ``check_values`` refuses NaN/inf (validation reads without it and
    reports them itself)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: not a numeric .npy array ({exc})") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{path}: expected a 2-D numeric array, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if check_values:
        check_finite(arr, path)
    return arr


def column_names(n: int) -> list[str]:
    """Column 0 is the channel's telemetry value, the others one-hot commands."""
    return ["value"] + [f"cmd{i}" for i in range(1, n)]


def list_telemanom_channels(root: str | Path) -> list[str]:
    """The channels of ``labeled_anomalies.csv`` whose train and test arrays are present."""
    root = Path(root)
    table = pd.read_csv(root / "labeled_anomalies.csv")
    return sorted(
        c
        for c in table["chan_id"].astype(str)
        if (root / "train" / f"{c}.npy").is_file() and (root / "test" / f"{c}.npy").is_file()
    )


def load_telemanom(root: str | Path, channel: str) -> Dataset:
    """Read one channel. Each labelled sequence becomes an `Anomaly` caused by metric 0
    (the telemetry value; the other columns are commands)."""
    root = Path(root)
    train = _load_npy(root / "train" / f"{channel}.npy")
    test = _load_npy(root / "test" / f"{channel}.npy")
    if train.shape[1] != test.shape[1]:
        raise DataError(f"{root / 'test' / channel}.npy: {test.shape[1]} columns, train has {train.shape[1]}")
    table_path = root / "labeled_anomalies.csv"
    if not table_path.is_file():
        raise DataError(f"{table_path}: file not found")
    table = pd.read_csv(table_path)
    for col in ("chan_id", "anomaly_sequences"):
        if col not in table.columns:
            raise DataError(f"{table_path}: column {col!r} is missing")
    rows = table[table["chan_id"].astype(str) == channel]
    if rows.empty:
        raise DataError(f"{table_path}: no row for channel {channel!r}")
    ranges = []
    for idx, text in zip(rows.index, rows["anomaly_sequences"]):
        try:
            pairs = json.loads(text)
            ranges += [(int(s), int(e) + 1) for s, e in pairs]
        except (ValueError, TypeError):
            raise DataError(
                f"{table_path}: row {idx + 2} anomaly_sequences is not a list of [start, end]: {text!r}"
            ) from None
    for s, e in ranges:
        if not 0 <= s < e <= len(test):
            raise DataError(f"{table_path}: channel {channel}: [{s}, {e - 1}] is outside the {len(test)} test rows")
    columns = column_names(train.shape[1])
    return Dataset(
        name=f"telemanom/{channel}",
        train=pd.DataFrame(train, columns=columns),
        test=pd.DataFrame(test, columns=columns),
        labels=labels_from_ranges(len(test), ranges),
        causes=[Anomaly(s, e, (0,)) for s, e in sorted(ranges)],
        features=columns,
    )


def _raw_tables(source: DatasetSource) -> list[RawTable]:
    """train/ and test/ arrays as tables; test must have train's width."""
    files = []
    for role in ("train", "test"):
        path = source.root / role / f"{source.name}.npy"
        arr = _load_npy(path, check_values=False)
        files.append((role, path, pd.DataFrame(arr, columns=column_names(arr.shape[1]))))
    return RawTable.train_and_test(files, first_line=None)


KIND = DatasetKind(
    name="telemanom",
    load=lambda source: load_telemanom(source.root, source.name),
    raw_tables=_raw_tables,
    test_file=lambda source: source.root / "test" / f"{source.name}.npy",
    list_series=list_telemanom_channels,
)
