"""Reading event logs of one JSON object per line, so that no record is lost silently.

Every line of a file ends in exactly one place: kept as an event (possibly flagged, such as a
record of another day), or dropped for a named reason (bytes that are not UTF-8, a line over
`MAX_LINE_BYTES`, malformed JSON, a type that is not an event of the format, a missing field, a
value out of range, a name that cannot name a series, a time more than `DAY_SKEW` away from the
day the file is named for). `FileReport` counts each place and keeps the first line numbers of
each, so an operator can open the file at the line. Day files may be gzip-compressed (``.gz``:
rotated logs are).
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from components.datasets import DataError
from components.text import folder_name_problem

LINES_KEPT = 20  # line numbers kept per reason in a report (counts are always whole)
MOSTLY_MALFORMED = 0.5  # a file with more than this share of malformed lines stops the run
MAX_LINE_BYTES = 1 << 20  # a longer line is no log record: dropped as too_long, never held whole
NAME_MAX = 200  # characters of a name that becomes a series (a pool, an RSE)
DAY_SKEW = timedelta(days=1)  # a record this far from its file's day is kept (flagged other_day); further, dropped


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
DAY_IN_NAME = re.compile(r"(\d{4})[-.](\d{2})[-.](\d{2})")


class Drop(Exception):
    """A record refused for ``reason`` (``missing:status``, ``invalid:fileSize``, ...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class FileReport:
    """Where each line of one file went. ``dropped`` and ``flagged`` map a reason to the count
    and the first `LINES_KEPT` line numbers (1-based, as an editor counts them)."""

    file: str
    lines: int = 0  # non-blank lines read
    kept: int = 0
    by_type: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # kept records per type
    dropped: dict[str, dict] = field(default_factory=dict)
    flagged: dict[str, dict] = field(default_factory=dict)  # kept, with a remark (other_day)

    def drop(self, reason: str, line: int) -> None:
        _note(self.dropped, reason, line)

    def flag(self, reason: str, line: int) -> None:
        _note(self.flagged, reason, line)

    @property
    def n_dropped(self) -> int:
        return sum(v["count"] for v in self.dropped.values())

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "lines": self.lines,
            "kept": self.kept,
            "dropped": self.n_dropped,
            "by_type": dict(sorted(self.by_type.items())),
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "flagged": dict(sorted(self.flagged.items())),
        }


def _note(table: dict, reason: str, line: int) -> None:
    entry = table.setdefault(reason, {"count": 0, "lines": []})
    entry["count"] += 1
    if len(entry["lines"]) < LINES_KEPT:
        entry["lines"].append(line)


def open_log(path: Path):
    """A day file for reading bytes: gzip-compressed where its name ends in ``.gz``."""
    return gzip.open(path, "rb") if Path(path).suffix == ".gz" else open(path, "rb")


def _lines(fh) -> Iterator[tuple[bytes, bool]]:
    """(line, whole) for each line of ``fh``; a line over `MAX_LINE_BYTES` comes as its first
    part with whole False, the rest read past without holding it."""
    while True:
        line = fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # the rest of the long line
                more = fh.readline(MAX_LINE_BYTES)
                if not more or more.endswith(b"\n"):
                    break
            yield line[:64], False
        else:
            yield line, True


def json_lines(path: Path, report: FileReport) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each line that holds a JSON object; blank lines are skipped,
    a line that is not UTF-8 is dropped as ``invalid_utf8``, one over `MAX_LINE_BYTES` as
    ``too_long``, anything else as ``malformed``. A file that is mostly malformed raises `DataError`."""
    with open_log(path) as fh:
        for number, (raw, whole) in enumerate(_lines(fh), start=1):
            if not raw.strip():
                continue
            report.lines += 1
            if not whole:
                report.drop("too_long", number)
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                report.drop("invalid_utf8", number)
                continue
            try:
                obj = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                report.drop("malformed", number)
                continue
            if not isinstance(obj, dict):
                report.drop("malformed", number)
                continue
            yield number, obj
    malformed = report.dropped.get("malformed", {"count": 0, "lines": []})
    if report.lines and malformed["count"] > MOSTLY_MALFORMED * report.lines:
        raise DataError(
            f"{path}: {malformed['count']} of {report.lines} lines are not JSON objects (first at lines "
            f"{malformed['lines'][:5]}); is this a log of the expected format?"
        )


def read_events(
    path: Path, parse: Callable[[dict], dict], columns: dict[str, str], type_of: Callable[[dict], object]
) -> tuple[pd.DataFrame, FileReport]:
    """Every event of ``path`` as a table with ``columns`` (name -> numpy dtype) plus ``line``.

    ``parse(obj)`` returns one row (a dict over ``columns``, and ``day``, the record's local
    day) or raises `Drop`; ``type_of(obj)`` names the record's type for the per-type counts. A
    record of another day than the file is named for is kept (it is a real event, logged late
    or early) and flagged ``other_day``; one more than `DAY_SKEW` from that day is dropped as
    ``out_of_window`` (a clock gone wrong would stretch the telemetry over the years between)."""
    report = FileReport(file=str(path))
    file_day = day_of_file(path)
    rows: dict[str, list] = {c: [] for c in columns}
    lines: list[int] = []
    for number, obj in json_lines(path, report):
        try:
            row = parse(obj)
        except Drop as drop:
            report.drop(drop.reason, number)
            continue
        if file_day is not None and row["day"] != file_day:
            if abs(row["day"] - file_day) > DAY_SKEW:
                report.drop("out_of_window", number)
                continue
            report.flag("other_day", number)
        for c in columns:
            rows[c].append(row[c])
        lines.append(number)
        report.kept += 1
        report.by_type[str(type_of(obj))] += 1
    frame = pd.DataFrame({c: np.asarray(v, dtype=columns[c]) for c, v in rows.items()})
    frame["line"] = np.asarray(lines, dtype=np.int64)
    return frame, report


def need(obj: dict, key: str):
    """``obj[key]``, or `Drop` naming the field when it is absent or null."""
    value = obj.get(key)
    if value is None:
        raise Drop(f"missing:{key}")
    return value


def series_name(obj: dict, key: str) -> str:
    """A name that becomes a series and a folder (a pool, an RSE): a string of 1 to `NAME_MAX`
    characters without control characters, path separators or a leading dot; else `Drop`."""
    value = need(obj, key)
    if not isinstance(value, str) or folder_name_problem(value, NAME_MAX):
        raise Drop(f"invalid:{key}")
    return value


def number(obj: dict, key: str, *, minimum: float | None = 0.0, optional: bool = False) -> float:
    """A finite number at ``key`` (at least ``minimum``); NaN for an absent value when ``optional``."""
    value = obj.get(key)
    if value is None:
        if optional:
            return float("nan")
        raise Drop(f"missing:{key}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Drop(f"invalid:{key}")
    try:
        value = float(value)
    except OverflowError:  # an integer past float's range (JSON allows any number of digits)
        raise Drop(f"invalid:{key}") from None
    if not np.isfinite(value) or (minimum is not None and value < minimum):
        raise Drop(f"invalid:{key}")
    return value


def timestamp(value, key: str) -> datetime:
    """An ISO 8601 timestamp string (with or without zone; no zone is UTC), kept in its own zone
    so that its local day can be told (a day file holds one local day)."""
    if not isinstance(value, str):
        raise Drop(f"invalid:{key}")
    try:
        ts = datetime.fromisoformat(value)  # ten times faster than pandas, a line at a time
    except ValueError:
        raise Drop(f"invalid:{key}") from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def epoch_ms(ts: datetime) -> int:
    return (ts - EPOCH) // MILLISECOND


def day_of_file(path: Path) -> date | None:
    """The day a day file is named for (``billing-2026-01-05.json``), or None."""
    match = DAY_IN_NAME.search(path.name)
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def check_span(ranges: dict[str, tuple[int, int]], max_days: int) -> None:
    """``ranges``: file name -> (first, last) event time in epoch ms. Refuses, before anything
    is allocated per step, events spread over more than ``max_days``, naming the files whose
    events lie furthest from the others' median."""
    if not ranges:
        return
    firsts = np.array([a for a, _ in ranges.values()], dtype=np.int64)
    lasts = np.array([b for _, b in ranges.values()], dtype=np.int64)
    span = int(lasts.max() - firsts.min()) * MILLISECOND / timedelta(days=1)
    if span <= max_days:
        return
    middle = np.median((firsts + lasts) / 2)
    far = sorted(ranges, key=lambda f: -max(abs(ranges[f][0] - middle), abs(ranges[f][1] - middle)))
    raise DataError(
        f"the log events span {span:.0f} days, over logs.max_span_days ({max_days}): furthest from the others "
        f"are {', '.join(far[:3])}; move such files out of the folder, or raise logs.max_span_days"
    )


def dropped_summary(report: dict) -> str:
    """A merged report's drops, reason by reason (``malformed 2, missing:status 1``), or ``none``."""
    return ", ".join(f"{k} {v}" for k, v in report["dropped_by_reason"].items()) or "none"


def merge_reports(reports: list[FileReport]) -> dict:
    """Totals over files, and each file's own report."""
    totals = {"files": len(reports), "lines": 0, "kept": 0, "dropped": 0}
    reasons: dict[str, int] = defaultdict(int)
    for r in reports:
        totals["lines"] += r.lines
        totals["kept"] += r.kept
        totals["dropped"] += r.n_dropped
        for reason, entry in r.dropped.items():
            reasons[reason] += entry["count"]
    return {**totals, "dropped_by_reason": dict(sorted(reasons.items())), "per_file": [r.to_dict() for r in reports]}
