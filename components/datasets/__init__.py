"""Dataset loaders. Each returns a `Dataset`; bad input raises `DataError` naming file and problem."""

from .base import Anomaly, DataError, Dataset, labels_from_ranges, ranges_from_labels
from .csvfile import load_csv, load_csv_layout, read_telemetry_csv, write_csv_layout
from .nab import list_nab_series, load_nab
from .smd import list_smd_machines, load_smd
from .synthetic import make_synthetic
from .telemanom import list_telemanom_channels, load_telemanom

__all__ = [
    "Anomaly", "DataError", "Dataset", "labels_from_ranges", "ranges_from_labels",
    "load_csv", "load_csv_layout", "write_csv_layout", "read_telemetry_csv", "list_nab_series", "load_nab", "list_smd_machines",
    "load_smd", "make_synthetic", "list_telemanom_channels", "load_telemanom",
]
