"""Prefect tasks of the `logs` flow: event logs (dCache billing, Rucio transfers) read strictly,
featurised by an engine into per-series telemetry, written as a dataset kind's root.

The telemetry folder (``logs.<format>.out``, DVC-tracked) holds one folder per series in the
synthetic layout and ``telemetry.json``: the format, the sha256 of every log file read, the
settings, the series and metrics, each file's report (where every line went) and the
incidents that fell in train and so could not be labels. It is rebuilt only when the logs or
the settings change, into a new folder swapped in whole: a failure leaves the old one as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from prefect import task

from components.datasets import DataError, write_synthetic_layout
from components.datasets.telemetry_layout import STAMP
from components.logs import dense_series, dropped_summary, merge_reports, read_incidents, split_series
from components.logs.formats import get_format
from components.logs.records import check_span
from components.logs.telemetry import INCIDENTS_FILE
from components.text import printable

from . import progress
from .engines import featurise

MAX_SPAN_DAYS = 366  # logs.max_span_days: how far apart a folder's events may lie


@task(name="generate logs")
def ensure_logs(log_format: str, folder: Path, settings: dict | None) -> bool:
    """Generated logs (``settings`` given) written into ``folder`` unless it holds exactly those;
    a user's logs (``settings`` None) are only read, never written. True if written."""
    if settings is None:
        return False
    return get_format(log_format).generate(Path(folder), dict(settings))


def day_files(log_format: str, folder: Path) -> list[Path]:
    """The day files of ``folder``, in order; none is an error naming the folder."""
    fmt = get_format(log_format)
    files = fmt.files(Path(folder))
    if not files:
        raise DataError(f"{folder}: no {log_format} log files ({fmt.pattern}) to read")
    return files


def log_inputs(log_format: str, folder: Path) -> list[Path]:
    """What a folder of logs gives its telemetry and reference figures: its day files and the
    operator's ``incidents.json`` where there is one."""
    labels = Path(folder) / INCIDENTS_FILE
    return day_files(log_format, folder) + ([labels] if labels.is_file() else [])


def logs_digest(files: list[Path]) -> dict[str, str]:
    """sha256 of each log file, by name: what a telemetry folder was made from."""
    digests = {}
    for path in files:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digests[path.name] = h.hexdigest()
    return digests


def read_logs(log_format: str, folder: Path, events_dir: Path, max_span_days: int = MAX_SPAN_DAYS) -> dict:
    """Every day file of ``folder`` read into one Parquet file each under ``events_dir``; the
    merged report (`components.logs.merge_reports`), with the files skipped and why. No file at
    all is an error naming the folder; so are events spread over more than ``max_span_days``
    (before the telemetry allocates a step for every bin between them)."""
    fmt = get_format(log_format)
    files = day_files(log_format, folder)
    events_dir.mkdir(parents=True, exist_ok=True)
    reports, ranges = [], {}
    for k, path in enumerate(files):
        events, report = fmt.read_file(path)
        reports.append(report)
        if len(events):
            times = events[fmt.time]
            ranges[path.name] = (int(times.min()), int(times.max()))
            events.drop(columns=["line"]).to_parquet(events_dir / f"part-{k:05d}.parquet", index=False)
    if not any(events_dir.glob("*.parquet")):
        raise DataError(f"{folder}: not one event could be read from {len(files)} files (see the report)")
    check_span(ranges, max_span_days)
    return {**merge_reports(reports), "skipped_files": fmt.skipped(folder)}


@task(name="build telemetry")
def build_telemetry(
    log_format: str,
    logs: Path,
    out: Path,
    *,
    engine: str,
    bin_seconds: int,
    train_fraction: float,
    spark_master: str = "local[2]",
    spark_partitions: int = 8,
    force: bool = False,
    max_span_days: int = MAX_SPAN_DAYS,
) -> dict:
    """``logs`` read, featurised on ``engine`` and written to ``out`` as one dataset per series,
    unless ``out`` was made from the same files with the same settings. Returns the stamp,
    with ``rebuilt``."""
    fmt = get_format(log_format)
    logs, out = Path(logs), Path(out)
    settings = {"bin_seconds": int(bin_seconds), "train_fraction": float(train_fraction)}
    digest = logs_digest(log_inputs(log_format, logs))  # new labels make new telemetry too
    current = _read_stamp(out)
    if not force and current and current.get("logs") == digest and current.get("settings") == settings:
        return {**current, "rebuilt": False}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's is 0700: the telemetry is for every reader of the checkout
    try:
        report = read_logs(log_format, logs, staging / "events", max_span_days)
        table = featurise(
            fmt.features,
            staging / "events",
            bin_seconds,
            engine,
            spark_master=spark_master,
            spark_partitions=spark_partitions,
        )
        shutil.rmtree(staging / "events")
        incidents = read_incidents(logs)
        in_train = []
        series = dense_series(table, fmt.features)
        for name, frame in series.items():
            data, skipped = split_series(name, frame, incidents, bin_seconds, train_fraction, fmt.causes)
            in_train += [i.__dict__ for i in skipped]
            write_synthetic_layout(data, staging / name, meta={"format": log_format, fmt.series: name})
        stamp = {
            "format": log_format,
            "logs": digest,
            "settings": settings,
            "series": sorted(series),
            "metrics": fmt.features.metrics,
            "incidents": len(incidents),
            "incidents_in_train": in_train,
            "report": report,
        }
        (staging / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
        _swap_in(staging, out)
        progress(
            f"{log_format}: {report['lines']} lines in {report['files']} files, {report['kept']} kept, "
            f"{report['dropped']} dropped ({dropped_summary(report)}); telemetry of {len(series)} series in {out}"
            + "".join(f"\n  not read: {printable(s['file'])}: {s['reason']}" for s in report["skipped_files"])
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**stamp, "rebuilt": True}


def _read_stamp(out: Path) -> dict | None:
    try:
        return json.loads((out / STAMP).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _swap_in(staging: Path, out: Path) -> None:
    """``staging`` becomes ``out`` by renames; the old ``out`` is removed only once the new one
    is in place."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
    os.rename(staging, out)
    if old is not None:
        shutil.rmtree(old)


def make_telemetry(root: Path, logs, log_format: str, engine: str | None = None, force: bool = False) -> dict:
    """One format's generated logs (where configured) and its telemetry, each only if stale;
    ``logs``: params.yaml's ``logs`` section; paths relative to ``root``. Returns the telemetry
    stamp, with ``generated`` and ``rebuilt``."""
    source = logs.source(log_format)
    generated = ensure_logs(log_format, root / source.logs, logs.generator_settings(log_format))
    stamp = build_telemetry(
        log_format,
        root / source.logs,
        root / source.out,
        engine=engine or logs.engine,
        bin_seconds=logs.bin_seconds,
        train_fraction=logs.train_fraction,
        spark_master=logs.spark_master,
        spark_partitions=logs.spark_partitions,
        force=force or generated,
        max_span_days=logs.max_span_days,
    )
    return {**stamp, "generated": generated}
