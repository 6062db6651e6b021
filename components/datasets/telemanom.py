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

from .base import Anomaly, DataError, Dataset, check_finite, labels_from_ranges


def _load_npy(path: Path) -> np.ndarray:
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
    check_finite(arr, path)
    return arr


def list_telemanom_channels(root: str | Path) -> list[str]:
    table = pd.read_csv(Path(root) / "labeled_anomalies.csv")
    return sorted(table["chan_id"].astype(str))


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
            raise DataError(f"{table_path}: row {idx + 2} anomaly_sequences is not a list of [start, end]: {text!r}") from None
    for s, e in ranges:
        if not 0 <= s < e <= len(test):
            raise DataError(f"{table_path}: channel {channel}: [{s}, {e - 1}] is outside the {len(test)} test rows")
    columns = ["value"] + [f"cmd{i}" for i in range(1, train.shape[1])]
    return Dataset(
        name=f"telemanom/{channel}",
        train=pd.DataFrame(train, columns=columns),
        test=pd.DataFrame(test, columns=columns),
        labels=labels_from_ranges(len(test), ranges),
        causes=[Anomaly(s, e, (0,)) for s, e in sorted(ranges)],
        features=columns,
    )
