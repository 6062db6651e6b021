"""Raw data generation (kinds made from settings) and the prepare step (scale on train, time-ordered split, write).

Processed data format (``data/processed/``, DVC-tracked):
- ``arrays.npz``: ``train``, ``validation``, ``test`` scaled float32 [T, F];
  ``validation_labels``, ``test_labels`` int8; ``raw_validation``, ``raw_test`` the same rows
  unscaled (float64), which the registered models score to compare champions.
- ``meta.json``: dataset name and kind, feature names, the scaler (kind, clip, offset, scale),
  the validation fraction, causes per split (0-based, end exclusive, metric indices) and the
  raw data's DVC md5.
Windows are not stored: the torch detectors take windows as views of these arrays on the device.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from prefect import task

from components.datasets import DataError, Dataset, DatasetSource, get_kind, load_dataset, test_file
from components.detectors import DETECTORS
from components.preprocessing import Scaler, split_validation


@task(name="generate raw data")
def ensure_generated(source: DatasetSource, force: bool = False) -> bool:
    """For kinds made from settings (synthetic): write the raw files if absent or made with
    other settings (derived data: the settings reproduce it). True if written; kinds read
    from a user's files are never written."""
    generate = get_kind(source.kind).generate
    return bool(generate and generate(source, force))


def longest_window(detectors: dict[str, dict]) -> tuple[str, int]:
    """The detector with the longest window (1 for point-wise detectors) and that window."""
    windows = {n: {**DETECTORS[n]().get_params(), **p}.get("window", 1) for n, p in detectors.items()}
    name = max(windows, key=windows.get)
    return name, windows[name]


def _causes(d: Dataset) -> list[dict]:
    return [{"start": a.start, "end": a.end, "metrics": list(a.metrics)} for a in d.causes]


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
) -> Path:
    """Strict load, scaler fitted on train only, validation head / test tail in time order,
    written into ``out_dir``, a new folder: the run's own, which the flow publishes only once the
    whole run has succeeded."""
    data = load_dataset(source)
    val, test = split_validation(data, validation_fraction)
    detector, window = longest_window(detectors)
    for part, rows in (("validation head", len(val.test)), ("test tail", len(test.test))):
        if rows < window:
            raise DataError(
                f"{test_file(source)}: the {part} has {rows} rows, shorter than {detector}'s window of {window}"
            )
    fitted = Scaler(scaler, clip).fit(data.train.to_numpy())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=False)  # a run's own folder: publishing it is the flow's (flows/workspace.py)
    np.savez(
        out_dir / "arrays.npz",
        train=fitted.transform(data.train.to_numpy()),
        validation=fitted.transform(val.test.to_numpy()),
        test=fitted.transform(test.test.to_numpy()),
        validation_labels=val.labels,
        test_labels=test.labels,
        raw_validation=val.test.to_numpy(dtype=np.float64),
        raw_test=test.test.to_numpy(dtype=np.float64),
    )
    meta = {
        "dataset": data.name,
        "kind": source.kind,
        "features": data.features,
        "scaler": fitted.to_dict(),
        "validation_fraction": validation_fraction,
        "causes": {"validation": _causes(val), "test": _causes(test)},
        "raw_md5": raw_md5,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out_dir


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
