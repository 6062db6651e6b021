"""A user's own telemetry as CSV: a time column, metric columns, an optional 0/1 label column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .base import Anomaly, DataError, Dataset, check_finite, check_labels, ranges_from_labels


def read_telemetry_csv(
    path: str | Path, time_column: str | None = "timestamp", require_increasing: bool = True
) -> pd.DataFrame:
    """Read a CSV strictly: ragged rows, non-numeric metrics, NaN/inf and (unless
    ``require_increasing`` is False) time that does not increase raise `DataError` naming the
    file, column and rows. Rows keep the file's order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: ragged or malformed CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    if time_column is not None:
        if time_column not in frame.columns:
            raise DataError(f"{path}: time column {time_column!r} is missing (columns: {list(frame.columns)})")
        times = pd.to_datetime(frame[time_column], errors="coerce")
        bad = np.flatnonzero(times.isna().to_numpy())
        if bad.size:
            raise DataError(f"{path}: column {time_column!r}: rows {(bad[:5] + 2).tolist()} are not timestamps (file line numbers)")
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
    else:
        train, test, test_source = frame, read_telemetry_csv(test_path, time_column), Path(test_path)
    if label_column is not None and label_column in test.columns:
        labels = test[label_column].to_numpy()
        check_labels(labels, f"{test_source} column {label_column!r}")
        labels = labels.astype(np.int8)
        test = test.drop(columns=[label_column])
        train = train.drop(columns=[label_column], errors="ignore")
    else:
        labels = np.zeros(len(test), dtype=np.int8)
    if list(train.columns) != list(test.columns):
        raise DataError(f"{test_source}: columns {list(test.columns)} differ from train's {list(train.columns)}")
    check_finite(test.to_numpy(), test_source, list(test.columns))
    causes = [Anomaly(s, e, ()) for s, e in ranges_from_labels(labels)]
    return Dataset(name=name or f"csv/{path.stem}", train=train, test=test, labels=labels, causes=causes)


# --- Vigil's CSV layout: how generated (synthetic) data is stored as a raw, DVC-tracked input ---
# <folder>/train.csv: timestamp + metrics; <folder>/test.csv: timestamp + metrics + label;
# <folder>/causes.json: [{"start": s, "end": e, "metrics": [names]}] over test rows, end exclusive.

LAYOUT_FILES = ("train.csv", "test.csv", "causes.json")


def write_csv_layout(dataset: Dataset, folder: str | Path, meta: dict | None = None) -> None:
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fmt = "%.6f"
    dataset.train.to_csv(folder / "train.csv", float_format=fmt, index_label="timestamp")
    test = dataset.test.assign(label=dataset.labels)
    test.to_csv(folder / "test.csv", float_format=fmt, index_label="timestamp")
    causes = [{"start": a.start, "end": a.end, "metrics": [dataset.features[m] for m in a.metrics]}
              for a in dataset.causes]
    doc = {"name": dataset.name, **(meta or {}), "causes": causes}
    (folder / "causes.json").write_text(json.dumps(doc, indent=1) + "\n")


def load_csv_layout(folder: str | Path) -> Dataset:
    import json

    folder = Path(folder)
    data = load_csv(folder / "train.csv", folder / "test.csv", time_column="timestamp", label_column="label")
    causes_path = folder / "causes.json"
    if not causes_path.is_file():
        return data
    meta = json.loads(causes_path.read_text())
    index = {f: i for i, f in enumerate(data.features)}
    causes = []
    for k, c in enumerate(meta["causes"]):
        unknown = [m for m in c["metrics"] if m not in index]
        if unknown:
            raise DataError(f"{causes_path}: cause {k} names unknown metrics {unknown}")
        causes.append(Anomaly(int(c["start"]), int(c["end"]), tuple(index[m] for m in c["metrics"])))
    from dataclasses import replace

    return replace(data, name=meta.get("name", data.name), causes=causes)
