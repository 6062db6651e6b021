"""One series of the Numenta Anomaly Benchmark (``data/<category>/<file>.csv`` with
``timestamp,value``; anomaly windows in ``labels/combined_windows.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .base import (
    Anomaly,
    DataError,
    Dataset,
    DatasetKind,
    DatasetSource,
    RawTable,
    labels_from_ranges,
    ranges_from_labels,
    read_csv_table,
)
from .csvfile import read_telemetry_csv

PROBATIONARY = 0.15  # NAB's scorer ignores detections in the first 15% of each file


def series_file(root: Path, name: str) -> Path:
    return Path(root) / "data" / f"{name.removesuffix('.csv')}.csv"


def list_nab_series(root: str | Path) -> list[str]:
    root = Path(root) / "data"
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.csv"))


def load_nab(root: str | Path, name: str, probationary: float = PROBATIONARY) -> Dataset:
    """Read series ``name`` (``realKnownCause/machine_temperature_system_failure``).

    Train is the leading part: NAB's probationary period, cut short at the first anomaly
    window so that train holds no labelled anomaly. Test is the rest, labelled 1 inside each
    window (window bounds inclusive)."""
    root = Path(root)
    name = name.removesuffix(".csv")
    path = series_file(root, name)
    # NAB's files are scored in row order, and a few (machine_temperature_system_failure)
    # have clock steps backwards; keep them as published.
    frame = read_telemetry_csv(path, "timestamp", require_increasing=False)
    if list(frame.columns) != ["value"]:
        raise DataError(f"{path}: expected columns timestamp,value; got {['timestamp', *frame.columns]}")
    windows_path = root / "labels" / "combined_windows.json"
    if not windows_path.is_file():
        raise DataError(f"{windows_path}: file not found")
    windows = json.loads(windows_path.read_text())
    key = f"{name}.csv"
    if key not in windows:
        raise DataError(f"{windows_path}: no windows for {key!r}")
    times = frame.index
    inside = np.zeros(len(frame), dtype=bool)
    for start, end in windows[key]:  # a row is anomalous when its timestamp lies in a window
        inside |= np.asarray((times >= pd.Timestamp(start)) & (times <= pd.Timestamp(end)))
    ranges = ranges_from_labels(inside)
    cut = int(len(frame) * probationary)
    if ranges:
        cut = min(cut, min(s for s, _ in ranges))
    if cut < 2:
        raise DataError(f"{path}: the first anomaly window starts at row {cut}; no anomaly-free head to train on")
    test = frame.iloc[cut:]
    ranges = [(s - cut, e - cut) for s, e in ranges]
    return Dataset(
        name=f"nab/{name}",
        train=frame.iloc[:cut],
        test=test,
        labels=labels_from_ranges(len(test), ranges),
        causes=[Anomaly(s, e, (0,)) for s, e in ranges],
        features=["value"],
    )


def _raw_tables(source: DatasetSource) -> list[RawTable]:
    path = series_file(source.root, source.name)
    frame = read_csv_table(path)
    # NAB publishes machine_temperature_system_failure with one clock step back; tolerate 0.1%.
    return [
        RawTable(
            path,
            "series",
            frame,
            ["timestamp", "value"],
            "timestamp",
            metrics=["value"],
            time_mostly=0.999,
            first_line=2,
        )
    ]


KIND = DatasetKind(
    name="nab",
    load=lambda source: load_nab(source.root, source.name),
    raw_tables=_raw_tables,
    test_file=lambda source: series_file(source.root, source.name),
    list_series=list_nab_series,
)
