"""The one registry of log formats. Each is a module defining its reader, its features and its
generator; adding a format is that module, one entry below, and its test."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from components.datasets import DataError

from . import dcache, rucio
from .records import FileReport
from .telemetry import INCIDENTS_FILE, FeatureSpec, Incident, write_incidents


@dataclass(frozen=True)
class LogFormat:
    """``pattern``: the day files' names (a glob); ``read_file``: one file's events and its
    report; ``features``: the telemetry per ``series`` (a pool, a link); ``causes``: incident kind
    -> the metrics it moves; ``generator``: the seeded writer of a folder of such logs."""

    name: str
    series: str  # what one series is: "pool", "link"
    time: str  # the event column the telemetry bins on (epoch ms)
    pattern: str
    read_file: Callable[[Path], tuple[pd.DataFrame, FileReport]]
    features: FeatureSpec
    causes: dict[str, list[str]]
    generator: Callable[..., list[Incident]]

    def files(self, folder: Path) -> list[Path]:
        """The day files of ``folder``, plain or gzip-compressed (``.gz``, as rotated), in name
        (so time) order. A day there both plain and compressed is refused by name: its events
        would count twice."""
        folder = Path(folder)
        files = sorted([*folder.glob(self.pattern), *folder.glob(self.pattern + ".gz")])
        plain = {p.name for p in files if p.suffix != ".gz"}
        twice = [p.name for p in files if p.suffix == ".gz" and p.name.removesuffix(".gz") in plain]
        if twice:
            raise DataError(f"{folder}: {', '.join(twice)} and the same day uncompressed: keep one of each")
        return sorted(files, key=lambda p: p.name.removesuffix(".gz"))

    def skipped(self, folder: Path) -> list[dict]:
        """Every other file in ``folder``, and why it is not read."""
        read = {p.name for p in self.files(folder)} | {INCIDENTS_FILE}
        return [
            {"file": p.name, "reason": f"not a day file ({self.pattern} or {self.pattern}.gz)"}
            for p in sorted(Path(folder).iterdir())
            if p.name not in read and not p.is_dir()
        ]

    def generate(self, folder: Path, settings: dict, force: bool = False) -> bool:
        """Write generated logs with ``settings`` into ``folder`` unless it already holds
        exactly those; their incidents go to ``incidents.json`` beside them. True if written."""
        folder = Path(folder)
        stamp = {"format": self.name, **settings}
        made_with = generated_with(folder)
        if not force and made_with == stamp and self.files(folder):
            return False
        if self.files(folder) and made_with is None:
            raise DataError(
                f"{folder}: holds {self.name} logs that Vigil did not generate; refusing to write generated logs over "
                f"them (set logs.{self.name}.generate: null to read them, or point logs.{self.name}.logs elsewhere)"
            )
        for old in self.files(folder):  # day files of other settings would mix with the new ones
            old.unlink()
        incidents = self.generator(folder, **settings)
        write_incidents(folder, incidents, {"generator": stamp})
        return True


def generated_with(folder: Path) -> dict | None:
    """The generator settings recorded in ``folder``'s incidents file, if it was generated."""
    path = Path(folder) / INCIDENTS_FILE
    try:
        return json.loads(path.read_text()).get("generator") if path.is_file() else None
    except json.JSONDecodeError:
        return None


LOG_FORMATS: dict[str, LogFormat] = {
    f.name: f
    for f in (
        LogFormat(
            dcache.FORMAT,
            "pool",
            "t_ms",
            dcache.FILE_GLOB,
            dcache.read_billing_file,
            dcache.FEATURES,
            dcache.CAUSES,
            dcache.generate_billing,
        ),
        LogFormat(
            rucio.FORMAT,
            "link",
            "ended_ms",
            rucio.FILE_GLOB,
            rucio.read_transfer_file,
            rucio.FEATURES,
            rucio.CAUSES,
            rucio.generate_transfers,
        ),
    )
}


def get_format(name: str) -> LogFormat:
    if name not in LOG_FORMATS:
        raise ValueError(f"unknown log format {name!r}; registered: {sorted(LOG_FORMATS)}")
    return LOG_FORMATS[name]
