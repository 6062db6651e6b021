"""Event logs of storage and transfer systems turned into telemetry: dCache billing records
(`dcache`) and Rucio transfer events (`rucio`), each with a strict reader that reports where
every line went, one feature definition that every engine runs, and a seeded generator."""

from .records import FileReport, dropped_summary, merge_reports
from .telemetry import FeatureSpec, Incident, dense_series, read_incidents, split_series, write_incidents

__all__ = [
    "FeatureSpec",
    "FileReport",
    "Incident",
    "dense_series",
    "dropped_summary",
    "merge_reports",
    "read_incidents",
    "split_series",
    "write_incidents",
]
