"""A user's own telemetry as CSV: a time column, metric columns, an optional 0/1 label column."""

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


def read_telemetry_csv(
    path: str | Path, time_column: str | None = "timestamp", require_increasing: bool = True
) -> pd.DataFrame:
    """Read a CSV strictly: ragged rows, non-numeric metrics, NaN/inf and (unless
    ``require_increasing`` is False) time that does not increase raise `DataError` naming the
    file, column and rows. Rows keep the file's order."""
    path = Path(path)
    frame = read_csv_table(path)
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    if time_column is not None:
        if time_column not in frame.columns:
            raise DataError(f"{path}: time column {time_column!r} is missing (columns: {list(frame.columns)})")
        times = pd.to_datetime(frame[time_column], errors="coerce")
        bad = np.flatnonzero(times.isna().to_numpy())
        if bad.size:
            raise DataError(
                f"{path}: column {time_column!r}: rows {(bad[:5] + 2).tolist()} are not timestamps (file line numbers)"
            )
        back = np.flatnonzero(np.diff(times.to_numpy().astype("datetime64[ns]").astype(np.int64)) <= 0)
        if back.size and require_increasing:
            raise DataError(
                f"{path}: column {time_column!r} is not strictly increasing at file lines {(back[:5] + 3).tolist()}"
            )
        frame = frame.drop(columns=[time_column]).set_index(pd.DatetimeIndex(times, name=time_column))
    for col in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            values = pd.to_numeric(frame[col], errors="coerce")
            bad = np.flatnonzero(values.isna().to_numpy() & frame[col].notna().to_numpy())
            raise DataError(f"{path}: column {col!r} is not numeric; file lines {(bad[:5] + 2).tolist()}")
    values = frame.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise DataError(
            f"{path}: NaN or infinite values in column(s) {sorted({str(frame.columns[c]) for c in cols})}; "
            f"file lines {sorted(set((rows + 2).tolist()))[:5]}"
        )
    return frame.astype(np.float64)


def load_csv(
    path: str | Path,
    test_path: str | Path | None = None,
    *,
    time_column: str | None = "timestamp",
    label_column: str | None = "label",
    train_fraction: float = 0.5,
    name: str | None = None,
) -> Dataset:
    """Load telemetry from CSV.

    With ``test_path`` the first file is train and the second test; otherwise one file is cut
    in time order, the first ``train_fraction`` as train. A label column (0/1) gives the test
    labels and is dropped from the metrics; without one, labels are all 0. Labelled runs
    become causes with no metrics named (a CSV does not say which metric is at fault).
    """
    path = Path(path)
    frame = read_telemetry_csv(path, time_column)
    if test_path is None:
        if not 0 < train_fraction < 1:
            raise DataError(f"train_fraction must be in (0, 1), got {train_fraction}")
        cut = int(len(frame) * train_fraction)
        if cut == 0 or cut == len(frame):
            raise DataError(f"{path}: {len(frame)} rows are too few to cut at {train_fraction}")
        train, test, test_source = frame.iloc[:cut], frame.iloc[cut:], path
        first_line = cut + 2  # the header is line 1
    else:
        train, test, test_source = frame, read_telemetry_csv(test_path, time_column), Path(test_path)
        first_line = 2
    lines = np.arange(len(test)) + first_line
    if label_column is not None and label_column in test.columns:
        labels = test[label_column].to_numpy()
        check_labels(labels, f"{test_source} column {label_column!r}", lines)
        labels = labels.astype(np.int8)
        test = test.drop(columns=[label_column])
        train = train.drop(columns=[label_column], errors="ignore")
    else:
        labels = np.zeros(len(test), dtype=np.int8)
    if list(train.columns) != list(test.columns):
        raise DataError(f"{test_source}: columns {list(test.columns)} differ from train's {list(train.columns)}")
    check_finite(test.to_numpy(), test_source, list(test.columns), lines)
    causes = [Anomaly(s, e, ()) for s, e in ranges_from_labels(labels)]
    return Dataset(name=name or f"csv/{path.stem}", train=train, test=test, labels=labels, causes=causes)


# --- the "csv" kind: ``name`` is a file under ``root``; options are the `load_csv` keywords ---
# (``test_file``: a second file under root for test; without it one file is cut in time order)


def _csv_paths(source: DatasetSource) -> tuple[Path, Path | None]:
    test_file = source.option("test_file")
    return source.root / source.name, (source.root / test_file if test_file else None)


def _load(source: DatasetSource) -> Dataset:
    train, test = _csv_paths(source)
    return load_csv(
        train,
        test,
        time_column=source.option("time_column", "timestamp"),
        label_column=source.option("label_column", "label"),
        train_fraction=source.option("train_fraction", 0.5),
        name=f"csv/{source.name}",
    )


def csv_tables(
    train_path: Path,
    test_path: Path | None,
    time_column: str | None,
    label_column: str | None,
    label_required: bool = False,
) -> list[RawTable]:
    """Train (and test, if a separate file) as raw tables: time column first, then the metrics
    (the train file's columns), then the label column where there is one: in test, or in the
    one file that holds both parts."""
    train = read_csv_table(train_path)
    metrics = [c for c in train.columns if c not in (time_column, label_column)]
    head = [time_column] if time_column else []
    one_file_label = test_path is None and label_column is not None and label_column in train.columns
    tables = [
        RawTable(
            train_path,
            "train",
            train,
            head + metrics + ([label_column] if one_file_label else []),
            time_column,
            label_column if one_file_label else None,
            metrics=metrics,
            first_line=2,
        )
    ]
    if test_path is not None:
        test = read_csv_table(test_path)
        has_label = label_column is not None and (label_required or label_column in test.columns)
        tail = [label_column] if has_label else []
        tables.append(
            RawTable(
                test_path,
                "test",
                test,
                head + metrics + tail,
                time_column,
                label_column if has_label else None,
                metrics=metrics,
                first_line=2,
            )
        )
    return tables


def _raw_tables(source: DatasetSource) -> list[RawTable]:
    train, test = _csv_paths(source)
    return csv_tables(train, test, source.option("time_column", "timestamp"), source.option("label_column", "label"))


def list_csv_files(root: str | Path) -> list[str]:
    return sorted(p.name for p in Path(root).glob("*.csv"))


KIND = DatasetKind(
    name="csv",
    load=_load,
    raw_tables=_raw_tables,
    test_file=lambda source: _csv_paths(source)[1] or _csv_paths(source)[0],
    list_series=list_csv_files,
)
