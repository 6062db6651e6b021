"""Raw input files read leniently, as tables, for validation before any strict loader runs.

A validator (Great Expectations in `tasks/validation.py`) checks these tables and names the
file, expectation, column and rows of any problem; only then do the strict loaders run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class RawTable:
    path: Path
    role: str                   # "train", "test" or "labels"
    frame: pd.DataFrame
    columns: list[str]          # the columns expected, in order
    time_column: str | None = None
    label_column: str | None = None
    rows: int | None = None     # exact row count expected (labels: that of test)
    time_mostly: float = 1.0    # share of rows whose time must increase (NAB has clock steps back)
    metrics: list[str] = field(default_factory=list)


def _read_csv(path: Path, **kw) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    return pd.read_csv(path, **kw)


def raw_tables(kind: str, root: str | Path, name: str, *, time_column: str | None = "timestamp",
               label_column: str | None = "label", test_file: str | None = None,
               n_metrics: int | None = None) -> list[RawTable]:
    root = Path(root)
    if kind == "synthetic" or kind == "csv":
        train_path = root / ("train.csv" if kind == "synthetic" else name)
        test_path = root / ("test.csv" if kind == "synthetic" else (test_file or name))
        train = _read_csv(train_path)
        metrics = [c for c in train.columns if c not in (time_column, label_column)]
        head = [time_column] if time_column else []
        tables = [RawTable(train_path, "train", train, head + metrics, time_column, None, metrics=metrics)]
        if kind == "synthetic" or test_file:
            test = _read_csv(test_path)
            tail = [label_column] if label_column and label_column in test.columns else []
            if kind == "synthetic":
                tail = ["label"]
            tables.append(RawTable(test_path, "test", test, head + metrics + tail, time_column,
                                   tail[0] if tail else None, metrics=metrics))
        return tables
    if kind == "smd":
        cols = [f"m{i + 1:02d}" for i in range(n_metrics or 38)]
        tables = []
        for role in ("train", "test"):
            path = root / role / f"{name}.txt"
            frame = _read_csv(path, header=None)
            frame.columns = [f"m{i + 1:02d}" for i in range(frame.shape[1])]
            tables.append(RawTable(path, role, frame, cols, metrics=cols))
        path = root / "test_label" / f"{name}.txt"
        labels = _read_csv(path, header=None)
        labels.columns = ["label"] + [f"extra{i}" for i in range(1, labels.shape[1])]
        tables.append(RawTable(path, "labels", labels, ["label"], label_column="label", rows=len(tables[1].frame)))
        return tables
    if kind == "telemanom":
        frames = {}
        for role in ("train", "test"):
            path = root / role / f"{name}.npy"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: file not found")
            arr = np.load(path, allow_pickle=False)
            frames[role] = (path, pd.DataFrame(arr[:, None] if arr.ndim == 1 else arr))
        # column 0 is the telemetry value, the rest commands; test must match train's width
        cols = ["value"] + [f"cmd{i}" for i in range(1, frames["train"][1].shape[1])]
        tables = []
        for role, (path, frame) in frames.items():
            frame.columns = (["value"] + [f"cmd{i}" for i in range(1, frame.shape[1])])
            tables.append(RawTable(path, role, frame, cols, metrics=cols))
        return tables
    if kind == "nab":
        path = root / "data" / f"{name.removesuffix('.csv')}.csv"
        frame = _read_csv(path)
        # NAB publishes machine_temperature_system_failure with one clock step back; tolerate 0.1%.
        return [RawTable(path, "series", frame, ["timestamp", "value"], "timestamp", metrics=["value"], time_mostly=0.999)]
    raise ValueError(f"unknown dataset kind {kind!r}")
