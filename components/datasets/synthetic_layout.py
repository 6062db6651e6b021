"""How a generated (synthetic) dataset is stored as a raw, DVC-tracked input, and the
"synthetic" dataset kind that reads it back.

``<folder>/train.csv``: timestamp + metrics; ``<folder>/test.csv``: timestamp + metrics +
label; ``<folder>/causes.json``: ``{"name", "generator": settings, "causes": [{"start", "end",
"metrics": [names]}]}`` over test rows, end exclusive. The generator settings are the kind's
options: the same settings give the same files, so the folder is regenerated only when they
change.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from .base import Anomaly, DataError, Dataset, DatasetKind, DatasetSource
from .csvfile import csv_tables, load_csv
from .synthetic import make_synthetic

LAYOUT_FILES = ("train.csv", "test.csv", "causes.json")


def write_synthetic_layout(dataset: Dataset, folder: str | Path, meta: dict | None = None) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train_file, test_file, causes_file = (folder / f for f in LAYOUT_FILES)
    fmt = "%.6f"
    dataset.train.to_csv(train_file, float_format=fmt, index_label="timestamp")
    dataset.test.assign(label=dataset.labels).to_csv(test_file, float_format=fmt, index_label="timestamp")
    causes = [
        {"start": a.start, "end": a.end, "metrics": [dataset.features[m] for m in a.metrics]} for a in dataset.causes
    ]
    doc = {"name": dataset.name, **(meta or {}), "causes": causes}
    causes_file.write_text(json.dumps(doc, indent=1) + "\n")


def load_synthetic_layout(folder: str | Path) -> Dataset:
    folder = Path(folder)
    train_file, test_file, causes_file = (folder / f for f in LAYOUT_FILES)
    data = load_csv(train_file, test_file, time_column="timestamp", label_column="label")
    if not causes_file.is_file():
        return data
    meta = json.loads(causes_file.read_text())
    index = {f: i for i, f in enumerate(data.features)}
    causes = []
    for k, c in enumerate(meta["causes"]):
        unknown = [m for m in c["metrics"] if m not in index]
        if unknown:
            raise DataError(f"{causes_file}: cause {k} names unknown metrics {unknown}")
        causes.append(Anomaly(int(c["start"]), int(c["end"]), tuple(index[m] for m in c["metrics"])))
    return replace(data, name=meta.get("name", data.name), causes=causes)


def generated_here_problem(folder: Path) -> str | None:
    """Why generated data may not be written into ``folder``, or None: only a new or empty
    folder, or one holding nothing but what Vigil generated there before (its ``causes.json``
    with the generator's settings), is written. Anything else (``/``, a home, a user's own
    train.csv) would be overwritten or littered."""
    folder = Path(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        return f"{folder} is not a folder"
    others = sorted(p.name for p in folder.iterdir() if p.name not in LAYOUT_FILES and p.name != ".gitignore")
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        return f"{folder} holds files Vigil did not generate ({shown})"
    if any((folder / f).exists() for f in LAYOUT_FILES):
        try:
            generated = "generator" in json.loads((folder / LAYOUT_FILES[2]).read_text())
        except (OSError, ValueError):
            generated = False
        if not generated:
            return f"{folder} holds a dataset Vigil did not generate (no generator settings in its causes.json)"
    return None


def generate(source: DatasetSource, force: bool = False) -> bool:
    """Write the seeded dataset of ``source.options`` (`make_synthetic`'s keywords) to
    ``source.root`` if it is absent or was made with other settings. True if written. A root
    that holds anything else is refused by name (`generated_here_problem`), nothing written."""
    settings = dict(source.options)
    problem = generated_here_problem(source.root)
    if problem:
        raise DataError(
            f"dataset.root: {problem}; generated data is written only into a new or empty folder, or one Vigil "
            "generated into before: point dataset.root (or --out) at such a folder, e.g. data/raw/synthetic"
        )
    stamp = source.root / LAYOUT_FILES[2]
    if not force and stamp.is_file():
        try:
            if json.loads(stamp.read_text()).get("generator") == settings:
                return False
        except json.JSONDecodeError:
            pass  # a damaged stamp: regenerate
    write_synthetic_layout(make_synthetic(**settings), source.root, meta={"generator": settings})
    return True


def _list_series(root: str | Path) -> list[str]:
    root = Path(root)
    return [root.name] if all((root / f).is_file() for f in LAYOUT_FILES) else []


KIND = DatasetKind(
    name="synthetic",
    load=lambda source: load_synthetic_layout(source.root),
    raw_tables=lambda source: csv_tables(
        source.root / LAYOUT_FILES[0], source.root / LAYOUT_FILES[1], "timestamp", "label", label_required=True
    ),
    test_file=lambda source: source.root / LAYOUT_FILES[1],
    list_series=_list_series,
    generate=generate,
)
