"""Datasets: one registry of kinds (`DATASET_KINDS`), each with a strict loader returning a
`Dataset`; bad input raises `DataError` naming file, column and rows."""

from .base import (
    Anomaly,
    DataError,
    Dataset,
    DatasetKind,
    DatasetSource,
    RawTable,
    labels_from_ranges,
    ranges_from_labels,
)
from .csvfile import load_csv, read_telemetry_csv
from .kinds import DATASET_KINDS, get_kind, list_series, load_dataset, raw_tables, test_file
from .nab import list_nab_series, load_nab
from .smd import list_smd_machines, load_smd
from .synthetic import make_synthetic
from .synthetic_layout import load_synthetic_layout, write_synthetic_layout
from .telemanom import list_telemanom_channels, load_telemanom

__all__ = [
    "DATASET_KINDS",
    "Anomaly",
    "DataError",
    "Dataset",
    "DatasetKind",
    "DatasetSource",
    "RawTable",
    "get_kind",
    "labels_from_ranges",
    "list_nab_series",
    "list_series",
    "list_smd_machines",
    "list_telemanom_channels",
    "load_csv",
    "load_dataset",
    "load_nab",
    "load_smd",
    "load_synthetic_layout",
    "load_telemanom",
    "make_synthetic",
    "ranges_from_labels",
    "raw_tables",
    "read_telemetry_csv",
    "test_file",
    "write_synthetic_layout",
]
