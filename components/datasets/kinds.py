"""The one registry of dataset kinds. Each kind is a module that defines its ``KIND`` (a
`DatasetKind`); adding a kind is that module, one line below, and its test."""

from __future__ import annotations

from pathlib import Path

from . import csvfile, nab, skab, smd, synthetic_layout, telemanom, telemetry_layout
from .base import Dataset, DatasetKind, DatasetSource, RawTable

DATASET_KINDS: dict[str, DatasetKind] = {
    k.name: k
    for k in (
        synthetic_layout.KIND,
        smd.KIND,
        telemanom.KIND,
        nab.KIND,
        skab.KIND,
        csvfile.KIND,
        *telemetry_layout.KINDS,
    )
}


def get_kind(kind: str) -> DatasetKind:
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; registered: {sorted(DATASET_KINDS)}")
    return DATASET_KINDS[kind]


def load_dataset(source: DatasetSource) -> Dataset:
    """The strict loader of ``source``'s kind (run after validation)."""
    return get_kind(source.kind).load(source)


def raw_tables(source: DatasetSource) -> list[RawTable]:
    return get_kind(source.kind).raw_tables(source)


def test_file(source: DatasetSource) -> Path:
    """The raw file that holds the test rows, for messages."""
    return get_kind(source.kind).test_file(source)


def list_series(kind: str, root: str | Path) -> list[str]:
    """The names (machines, channels, series, files) that ``root`` holds for ``kind``."""
    return get_kind(kind).list_series(Path(root))
