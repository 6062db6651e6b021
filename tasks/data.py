"""Raw data generation (kinds made from settings) and the prepare step (scale on train, time-ordered split, write).

Processed data format (``data/processed/``, DVC-tracked):
- ``arrays.npz``: ``train``, ``validation``, ``test`` scaled float32 [T, F];
  ``validation_labels``, ``test_labels`` int8; ``raw_validation``, ``raw_test`` the same rows
  unscaled (float64), which the registered models score to compare champions.
- ``meta.json``: dataset name and kind, feature names, the scaler (kind, clip, offset, scale),
  the validation fraction, causes per split (0-based, end exclusive, metric indices), the
  raw data's DVC md5, and what was read of the feedback dataset (``feedback``).
- with operator feedback (`read_feedback`): ``feedback`` scaled float32 steps of reviewed
  incidents and their context, ``feedback_labels`` int8 (1, 0; -1 left out),
  ``feedback_segments`` int64 [S, 2] row ranges (each a contiguous stretch of one series);
  steps marked *new normal* are appended to ``train`` instead.
Windows are not stored: the torch detectors take windows as views of these arrays on the device.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
from prefect import task

from components.datasets import (
    DataError,
    Dataset,
    DatasetSource,
    get_kind,
    load_dataset,
    read_telemetry_csv,
    test_file,
)
from components.detectors import DETECTORS
from components.preprocessing import Scaler, split_validation


@task(name="generate raw data")
def ensure_generated(source: DatasetSource, force: bool = False) -> bool:
    """For kinds made from settings (synthetic): write the raw files if absent or made with
    other settings (derived data: the settings reproduce it). True if written; kinds read
    from a user's files are never written."""
    generate = get_kind(source.kind).generate
    return bool(generate and generate(source, force))


def model_name(dataset: str, override: str | None = None) -> str:
    """The registered model of a dataset: ``vigil-<dataset>``, unless params name one."""
    return override or "vigil-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset).strip("-")


def prepared_meta(processed: Path) -> dict | None:
    """The prepared dataset's ``meta.json``, or None where nothing is prepared yet."""
    meta = Path(processed) / "meta.json"
    return json.loads(meta.read_text()) if meta.is_file() else None


def prepared_kind(processed: Path, default: str) -> str:
    """The dataset kind of what is scored: the prepared dataset's (its model is the champion
    scored by default), else ``default`` (``dataset.kind``)."""
    meta = prepared_meta(processed)
    return meta.get("kind", default) if meta else default


def longest_window(detectors: dict[str, dict]) -> tuple[str, int]:
    """The detector with the longest window (1 for point-wise detectors) and that window."""
    windows = {n: {**DETECTORS[n]().get_params(), **p}.get("window", 1) for n, p in detectors.items()}
    name = max(windows, key=windows.get)
    return name, windows[name]


def _causes(d: Dataset) -> list[dict]:
    return [{"start": a.start, "end": a.end, "metrics": list(a.metrics)} for a in d.causes]


def read_feedback(folder: Path, features: list[str]) -> dict | None:
    """The feedback dataset of one model (`tasks.feedback`'s layout), where its series have
    these ``features``: raw steps with labels and segment ranges, the new-normal steps apart,
    and a summary of what was used and what was not (series on other metrics). None where the
    folder holds nothing."""
    folder = Path(folder)
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        return None
    xs, labels, segments, normal, used, skipped = [], [], [], [], {}, {}
    rows = 0
    for path in files:
        frame = read_telemetry_csv(path, "timestamp")  # strict: names file, column and lines of bad values
        missing = [f for f in ("segment", "label", "new_normal", *features) if f not in frame.columns]
        if missing:
            skipped[path.stem] = f"{path.name}: lacks the columns {missing} (scored by a model on other metrics?)"
            continue
        values = frame[features].to_numpy(dtype=np.float64)
        label = frame["label"].to_numpy(dtype=np.int8)
        fresh = frame["new_normal"].to_numpy(dtype=bool)
        normal.append(values[fresh])
        label = np.where(fresh, -1, label)  # joins train: not thresholded on as well
        for _, idx in frame.reset_index().groupby("segment", sort=True).indices.items():
            segments.append((rows + int(idx[0]), rows + int(idx[-1]) + 1))
        xs.append(values)
        labels.append(label)
        rows += len(frame)
        used[path.stem] = {
            "steps": len(frame),
            "anomalous": int((label == 1).sum()),
            "normal": int((label == 0).sum()),
            "new_normal": int(fresh.sum()),
        }
    digest = hashlib.md5()
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    if not xs:
        return {
            "x": None,
            "summary": {"model": folder.name, "md5": digest.hexdigest(), "series": used, "skipped": skipped},
        }
    return {
        "x": np.concatenate(xs),
        "labels": np.concatenate(labels),
        "segments": np.asarray(segments, dtype=np.int64).reshape(-1, 2),
        "new_normal": np.concatenate(normal),
        "summary": {"model": folder.name, "md5": digest.hexdigest(), "series": used, "skipped": skipped},
    }


@task(name="prepare")
def prepare_data(
    source: DatasetSource,
    *,
    scaler: str,
    clip: float | None,
    validation_fraction: float,
    detectors: dict[str, dict],
    raw_md5: str,
    out_dir: Path,
    feedback_folder: Path | None = None,
    model_name_override: str | None = None,
) -> Path:
    """Strict load, scaler fitted on train only, validation head / test tail in time order,
    written into ``out_dir``, a new folder: the run's own, which the flow publishes only once the
    whole run has succeeded. ``feedback_folder``: the feedback dataset, whose folder of this
    dataset's model (``model_name_override`` or vigil-<dataset>) is read (`read_feedback`)."""
    data = load_dataset(source)
    val, test = split_validation(data, validation_fraction)
    detector, window = longest_window(detectors)
    for part, rows in (("validation head", len(val.test)), ("test tail", len(test.test))):
        if rows < window:
            raise DataError(
                f"{test_file(source)}: the {part} has {rows} rows, shorter than {detector}'s window of {window}"
            )
    feedback = None
    if feedback_folder is not None:
        feedback = read_feedback(Path(feedback_folder) / model_name(data.name, model_name_override), data.features)
    train = data.train.to_numpy()
    extra = {}
    labelled = feedback is not None and feedback["x"] is not None
    if labelled:
        train = np.concatenate([train, feedback["new_normal"]])  # the operators' new normal joins train
    fitted = Scaler(scaler, clip).fit(train)
    if labelled:
        extra = {
            "feedback": fitted.transform(feedback["x"]),
            "feedback_labels": feedback["labels"],
            "feedback_segments": feedback["segments"],
        }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=False)  # a run's own folder: publishing it is the flow's (vigil/workspace.py)
    np.savez(
        out_dir / "arrays.npz",
        train=fitted.transform(train),
        validation=fitted.transform(val.test.to_numpy()),
        test=fitted.transform(test.test.to_numpy()),
        validation_labels=val.labels,
        test_labels=test.labels,
        raw_validation=val.test.to_numpy(dtype=np.float64),
        raw_test=test.test.to_numpy(dtype=np.float64),
        **extra,
    )
    meta = {
        "dataset": data.name,
        "kind": source.kind,
        "features": data.features,
        "scaler": fitted.to_dict(),
        "validation_fraction": validation_fraction,
        "causes": {"validation": _causes(val), "test": _causes(test)},
        "raw_md5": raw_md5,
        "feedback": None if feedback is None else feedback["summary"],
        "step_seconds": series_step_seconds(source.kind, data),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out_dir


def series_step_seconds(kind: str, data: Dataset) -> float | None:
    """The seconds between a series' rows: its test rows' timestamps, else its kind's where the
    layout fixes them (SMD); None where neither says (telemanom). False incidents per day need it."""
    return step_seconds(data.test) or get_kind(kind).step_seconds


def step_seconds(frame) -> float | None:
    """The median spacing of a frame's timestamps in seconds (false incidents per day need it),
    or None where its rows carry no time (SMD, whose kind says it instead; telemanom) or no two
    of them."""
    import pandas as pd

    if not isinstance(frame.index, pd.DatetimeIndex) or len(frame.index) < 2:
        return None
    gaps = np.diff(frame.index.values.astype("datetime64[ns]").astype(np.int64)) / 1e9
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if gaps.size else None


def feedback_arrays(data) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The operators' labelled steps prepare kept (steps, labels, segment ranges), or None
    where it read none: ``meta.json`` names the series they came from."""
    if not (data.meta.get("feedback") or {}).get("series"):
        return None
    return data["feedback"], data["feedback_labels"], data["feedback_segments"]


class Processed:
    """The prepared data, read back. Each array loads on first use, alone: several readers need
    only the metadata, and tuning never reads the test tail."""

    def __init__(self, folder: Path):
        folder = Path(folder)
        if not (folder / "meta.json").is_file():
            raise FileNotFoundError(f"{folder}: no processed data; run the prepare step first")
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self._arrays: dict[str, np.ndarray] = {}

    def causes(self, split: str):
        from components.datasets import Anomaly

        return [Anomaly(c["start"], c["end"], tuple(c["metrics"])) for c in self.meta["causes"][split]]

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._arrays:
            with np.load(self.folder / "arrays.npz") as z:  # an npz member is read only when asked for
                self._arrays[key] = z[key]
        return self._arrays[key]
