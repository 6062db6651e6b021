"""Telemetry made from event logs (the `logs` flow: dCache billing records, Rucio transfers) or
exported from Prometheus (`vigil prometheus export`), stored as one folder per series under the
kind's root, each in the synthetic layout (``train.csv``, ``test.csv`` with ``label``,
``causes.json``), and ``telemetry.json`` at the root saying what it was made from. The kinds
read it back; making it is the flow's or the command's."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .base import DataError, DatasetKind, DatasetSource
from .csvfile import csv_tables
from .synthetic_layout import LAYOUT_FILES, load_synthetic_layout

STAMP = "telemetry.json"


def series_folder(source: DatasetSource) -> Path:
    folder = Path(source.root) / source.name
    if not folder.is_dir():
        known = list_telemetry_series(source.root)
        raise DataError(f"{folder}: no such series; {source.root} holds {known[:10]}")
    return folder


def list_telemetry_series(root: str | Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if all((p / f).is_file() for f in LAYOUT_FILES))


def telemetry_kind(name: str, log_format: str | None = None) -> DatasetKind:
    """The dataset kind of telemetry stored in this layout: made by the `logs` flow from logs of
    format ``log_format``, or (``None``) by another command (`vigil prometheus export`)."""

    def load(source: DatasetSource):
        data = load_synthetic_layout(series_folder(source))
        return replace(data, name=f"{name}/{source.name}")

    def raw_tables(source: DatasetSource):
        folder = series_folder(source)
        return csv_tables(folder / LAYOUT_FILES[0], folder / LAYOUT_FILES[1], "timestamp", "label", label_required=True)

    return DatasetKind(
        name=name,
        load=load,
        raw_tables=raw_tables,
        test_file=lambda source: Path(source.root) / source.name / LAYOUT_FILES[1],
        list_series=list_telemetry_series,
        log_format=log_format,
    )


KINDS = (
    telemetry_kind("dcache_billing", "dcache_billing"),
    telemetry_kind("rucio_transfers", "rucio_transfers"),
    telemetry_kind("prometheus"),  # `vigil prometheus export`: series read through PromQL, unlabelled
)
