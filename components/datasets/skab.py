"""One experiment of the Skoltech Anomaly Benchmark (SKAB; Katser & Kozitsin, 2020): a
water-circulation testbed, 8 sensors, one row a second, ``;``-separated, in
``<group>/<n>.csv`` (``valve1/0.csv``) with 0/1 ``anomaly`` and ``changepoint`` columns, and
``anomaly-free/anomaly-free.csv`` (normal operation only).

Train, by the option ``train``:

- ``head`` (default, SKAB's own protocol and its leaderboard's): the first ``train_rows``
  (400) rows of the experiment file, which hold no anomaly; test is the rest of the file;
- ``anomaly_free``: all of ``anomaly-free/anomaly-free.csv``; test is the whole experiment.
"""

from __future__ import annotations

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
    check_finite,
    check_labels,
    ranges_from_labels,
    read_csv_table,
)

SENSORS = [
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
]
COLUMNS = ["datetime", *SENSORS, "anomaly", "changepoint"]
ANOMALY_FREE = "anomaly-free/anomaly-free.csv"
TRAIN_ROWS = 400  # SKAB's protocol: the first 400 rows of each file are train
TRAIN_CHOICES = ("head", "anomaly_free")


def experiment_file(root: Path, name: str) -> Path:
    """``<root>/<group>/<n>.csv``; a name that leads out of ``root`` is refused."""
    path = Path(root) / f"{name.removesuffix('.csv')}.csv"
    if ".." in Path(name).parts or Path(name).is_absolute():
        raise DataError(f"skab: series name {name!r} leads outside {root}")
    return path


def list_skab_series(root: str | Path) -> list[str]:
    """Every labelled experiment (``valve1/0`` ...), in numeric order within each group; the
    anomaly-free run is train material, not a series."""
    root = Path(root)
    found = [p for p in root.glob("*/*.csv") if p.parent.name != "anomaly-free"]

    def order(p: Path):
        return (p.parent.name, int(p.stem) if p.stem.isdigit() else 10**9, p.stem)

    return [f"{p.parent.name}/{p.stem}" for p in sorted(found, key=order)]


def read_skab_csv(path: Path, labelled: bool = True) -> pd.DataFrame:
    """One SKAB file, strictly: its columns in order (the anomaly-free run has no label
    columns), timestamps, finite numbers and 0/1 labels; errors name the file, column and file
    lines. An ``anomaly`` column of zeros is added to the unlabelled run."""
    frame = read_csv_table(path, sep=";")
    columns = COLUMNS if labelled else COLUMNS[:-2]
    if list(frame.columns) != columns:
        raise DataError(f"{path}: expected SKAB's columns {columns}; got {list(frame.columns)}")
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    lines = np.arange(len(frame)) + 2
    times = pd.to_datetime(frame["datetime"], errors="coerce")
    bad = np.flatnonzero(times.isna().to_numpy())
    if bad.size:
        raise DataError(f"{path}: column 'datetime': file lines {lines[bad[:5]].tolist()} are not timestamps")
    numeric = columns[1:]
    values = frame[numeric].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    check_finite(values, path, numeric, lines)
    out = pd.DataFrame(values[:, : len(SENSORS)], columns=SENSORS, index=pd.DatetimeIndex(times, name="datetime"))
    if labelled:
        check_labels(values[:, len(SENSORS)], f"{path}: column 'anomaly'", lines)
    out["anomaly"] = values[:, len(SENSORS)].astype(np.int8) if labelled else np.int8(0)
    return out


def load_skab(root: str | Path, name: str, train: str = "head", train_rows: int = TRAIN_ROWS) -> Dataset:
    if train not in TRAIN_CHOICES:
        raise DataError(f"skab: option train must be one of {list(TRAIN_CHOICES)}, got {train!r}")
    root = Path(root)
    path = experiment_file(root, name)
    frame = read_skab_csv(path)
    if train == "head":
        if not isinstance(train_rows, int) or not 2 <= train_rows < len(frame):
            raise DataError(f"{path}: train_rows must be an integer in 2..{len(frame) - 1}, got {train_rows!r}")
        head, test = frame.iloc[:train_rows], frame.iloc[train_rows:]
        if head["anomaly"].any():
            first = int(np.flatnonzero(head["anomaly"].to_numpy())[0]) + 2
            raise DataError(f"{path}: an anomaly at file line {first} lies in the first {train_rows} rows (train)")
    else:
        head, test = read_skab_csv(root / ANOMALY_FREE, labelled=False), frame
    labels = test["anomaly"].to_numpy(np.int8)
    return Dataset(
        name=f"skab/{name.removesuffix('.csv')}",
        train=head[SENSORS],
        test=test[SENSORS],
        labels=labels,
        causes=[Anomaly(s, e) for s, e in ranges_from_labels(labels)],
        features=list(SENSORS),
    )


def _load(source: DatasetSource) -> Dataset:
    return load_skab(source.root, source.name, source.option("train", "head"), source.option("train_rows", TRAIN_ROWS))


def _raw_tables(source: DatasetSource) -> list[RawTable]:
    path = experiment_file(source.root, source.name)
    frame = read_csv_table(path, sep=";")
    return [
        RawTable(
            path,
            "series",
            frame,
            COLUMNS,
            "datetime",
            label_column="anomaly",
            metrics=SENSORS,
            first_line=2,
        )
    ]


KIND = DatasetKind(
    name="skab",
    load=_load,
    raw_tables=_raw_tables,
    test_file=lambda source: experiment_file(source.root, source.name),
    list_series=list_skab_series,
)
