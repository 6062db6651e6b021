"""The Server Machine Dataset (OmniAnomaly, KDD 2019) in its official layout.

``<root>/train/machine-G-N.txt`` and ``<root>/test/machine-G-N.txt``: comma-separated floats,
38 metrics a line, one line a minute. ``<root>/test_label/machine-G-N.txt``: one 0/1 a line.
``<root>/interpretation_label/machine-G-N.txt``: lines ``start-end:m1,m2,...`` naming the
metrics (1-based) behind each anomaly; ``start`` and ``end`` are 0-based test rows, both
inclusive, as in OmniAnomaly's HitRate evaluation.
"""

from __future__ import annotations

import re
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
    read_csv_table,
)

_INTERP = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*:\s*(\d+(?:\s*,\s*\d+)*)\s*$")


def list_smd_machines(root: str | Path) -> list[str]:
    """Machine names (``machine-1-1`` ...) present in all of train/, test/ and test_label/."""
    root = Path(root)
    sets = []
    for sub in ("train", "test", "test_label"):
        folder = root / sub
        if not folder.is_dir():
            raise DataError(f"{folder}: missing; the SMD layout needs train/, test/ and test_label/")
        sets.append({p.stem for p in folder.glob("machine-*.txt")})
    return sorted(set.intersection(*sets), key=_machine_key)


def metric_names(n: int) -> list[str]:
    """SMD's files have no header: metrics are named by their 1-based column, m01 ... m38."""
    return [f"m{i + 1:02d}" for i in range(n)]


def _machine_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[-_]", name))


def _read_matrix(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The values of a headerless comma-separated file, and each row's line in the file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows, lines = [], []
    width = None
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(",")
            if width is None:
                width = len(parts)
            elif len(parts) != width:
                raise DataError(f"{path}: line {lineno} has {len(parts)} values, expected {width}")
            try:
                rows.append([float(p) for p in parts])
                lines.append(lineno)
            except ValueError:
                raise DataError(f"{path}: line {lineno} holds a value that is not a number: {line[:80]!r}") from None
    if not rows:
        raise DataError(f"{path}: no data rows")
    values, lines = np.asarray(rows, dtype=np.float64), np.asarray(lines)
    check_finite(values, path, lines=lines)
    return values, lines


def _read_interpretation(path: Path, n_test: int, n_metrics: int) -> list[Anomaly]:
    causes = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            m = _INTERP.match(line)
            if not m:
                raise DataError(f"{path}: line {lineno} is not 'start-end:m1,m2,...': {line.strip()[:80]!r}")
            start, end = int(m.group(1)), int(m.group(2))
            metrics = [int(v) - 1 for v in m.group(3).split(",")]
            if end < start or end >= n_test:
                raise DataError(f"{path}: line {lineno}: range {start}-{end} is outside the {n_test} test rows")
            if min(metrics) < 0 or max(metrics) >= n_metrics:
                raise DataError(f"{path}: line {lineno}: metric numbers must be 1..{n_metrics}")
            causes.append(Anomaly(start, end + 1, tuple(metrics)))
    return causes


def load_smd(root: str | Path, machine: str) -> Dataset:
    """Read one SMD machine. Causes come from ``interpretation_label/`` where it exists."""
    root = Path(root)
    train, _ = _read_matrix(root / "train" / f"{machine}.txt")
    test, _ = _read_matrix(root / "test" / f"{machine}.txt")
    if train.shape[1] != test.shape[1]:
        raise DataError(f"{root / 'test' / machine}.txt: {test.shape[1]} metrics, train has {train.shape[1]}")
    label_path = root / "test_label" / f"{machine}.txt"
    labels, lines = _read_matrix(label_path)
    if labels.shape[1] != 1:
        raise DataError(f"{label_path}: expected one label a line, got {labels.shape[1]}")
    labels = labels[:, 0]
    check_labels(labels, label_path, lines)
    if len(labels) != len(test):
        raise DataError(f"{label_path}: {len(labels)} labels for {len(test)} test rows")
    interp = root / "interpretation_label" / f"{machine}.txt"
    causes = _read_interpretation(interp, len(test), test.shape[1]) if interp.is_file() else []
    columns = metric_names(train.shape[1])
    return Dataset(
        name=f"smd/{machine}",
        train=pd.DataFrame(train, columns=columns),
        test=pd.DataFrame(test, columns=columns),
        labels=labels.astype(np.int8),
        causes=causes,
        features=columns,
    )


def _raw_tables(source: DatasetSource) -> list[RawTable]:
    """train/, test/ and test_label/ files of one machine; test must have train's width."""
    files = []
    for role in ("train", "test"):
        path = source.root / role / f"{source.name}.txt"
        frame = read_csv_table(path, header=None)
        frame.columns = metric_names(frame.shape[1])
        files.append((role, path, frame))
    tables = RawTable.train_and_test(files, first_line=1)
    path = source.root / "test_label" / f"{source.name}.txt"
    labels = read_csv_table(path, header=None)
    labels.columns = ["label"] + [f"extra{i}" for i in range(1, labels.shape[1])]
    tables.append(
        RawTable(path, "labels", labels, ["label"], label_column="label", rows=len(tables[1].frame), first_line=1)
    )
    return tables


KIND = DatasetKind(
    name="smd",
    load=lambda source: load_smd(source.root, source.name),
    raw_tables=_raw_tables,
    test_file=lambda source: source.root / "test" / f"{source.name}.txt",
    list_series=list_smd_machines,
    step_seconds=60.0,  # one line per minute (the release's README; ../shared/data/README.md)
)
