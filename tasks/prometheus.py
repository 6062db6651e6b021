"""Telemetry pulled from Prometheus into the landing folder (params ``scoring.prometheus``).

Each feature the champion reads is one PromQL query (``metrics``: feature -> query); every
series the queries return carries the label ``series_label`` (``instance``, say), whose value
names the Vigil series. A pull reads each query through Prometheus' HTTP API
(``/api/v1/query_range``) over the last ``lookback_minutes`` up to ``delay_seconds`` ago, in
steps of ``step_seconds``; for each series it keeps the steps after its watermark in the
alerts store (and after its pulled files still waiting) and lands them as one CSV,
``<landing>/<series>/prometheus-<end>.csv``. The scoring run treats that as any landed file:
the training suite's validation, the watermark, quarantine naming the rows that fail, the same
scores. A NaN or infinite value, or a gap (a step where some query has no sample), is not
papered over: the file holds it and is quarantined saying which rows (and its steps are not
pulled again). A series never scored starts at its first step that has every metric. Where a
query returns nothing for a series, nothing is landed for it and the log names query, series
and range.

`export` writes a past range of the same queries as a dataset of kind ``prometheus``, to train
on (`vigil prometheus export`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from components.datasets import DataError
from components.text import one_line

from . import run_logger
from .files import write_atomic

MAX_POINTS = 10_000  # per query: Prometheus refuses a range of more than 11,000 steps
PREFIX = "prometheus-"  # the landed files' names: prometheus-<end, unix seconds, 12 digits>.csv


class PrometheusError(DataError):
    """Prometheus refused or failed a query: one paragraph naming server, query and range."""


@dataclass(frozen=True)
class PrometheusSource:
    """params.yaml's ``scoring.prometheus`` as plain values (`prometheus_source`)."""

    url: str
    metrics: dict[str, str]
    series_label: str = "instance"
    step_seconds: float = 60.0
    lookback_minutes: float = 60.0
    delay_seconds: float = 30.0
    timeout_seconds: float = 30.0


def prometheus_source(section) -> PrometheusSource | None:
    if section is None:
        return None
    return PrometheusSource(
        section.url,
        dict(section.metrics),
        section.series_label,
        section.step_seconds,
        section.lookback_minutes,
        section.delay_seconds,
        section.timeout_seconds,
    )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def query_range(src: PrometheusSource, query: str, start: float, end: float) -> list[dict]:
    """The query's series over [start, end] (unix seconds, both on the step grid), in chunks
    Prometheus accepts: ``[{"metric": labels, "values": [[t, "v"], ...]}, ...]``, a series'
    chunks joined."""
    step = src.step_seconds
    joined: dict[str, dict] = {}
    lo = start
    while lo <= end:
        hi = min(end, lo + step * (MAX_POINTS - 1))
        args = urllib.parse.urlencode({"query": query, "start": f"{lo:.3f}", "end": f"{hi:.3f}", "step": f"{step:g}"})
        where = f"Prometheus {src.url}: query {query!r} from {_iso(lo)} to {_iso(hi)} UTC (step {step:g} s)"
        try:
            with urllib.request.urlopen(f"{src.url.rstrip('/')}/api/v1/query_range?{args}",
                                        timeout=src.timeout_seconds) as reply:  # fmt: skip
                body = json.loads(reply.read())
        except urllib.error.HTTPError as exc:  # 400: a bad query, 422: it cannot run; the JSON says why
            try:
                body = json.loads(exc.read())
            except ValueError:
                raise PrometheusError(f"{where}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise PrometheusError(f"{where}: {getattr(exc, 'reason', exc)}") from None
        if body.get("status") != "success":
            raise PrometheusError(one_line(f"{where}: {body.get('errorType')}: {body.get('error')}"))
        if body["data"]["resultType"] != "matrix":
            raise PrometheusError(f"{where}: returned a {body['data']['resultType']}, not a range of samples")
        for series in body["data"]["result"]:
            key = json.dumps(series["metric"], sort_keys=True)
            joined.setdefault(key, {"metric": series["metric"], "values": []})["values"] += series["values"]
        lo = hi + step
    return list(joined.values())


def _value(text: str) -> float:
    return float(text)  # Prometheus writes NaN, +Inf, -Inf as Python reads them


def _collect(src: PrometheusSource, start: float, end: float) -> dict[str, dict[str, dict[float, float]]]:
    """Every series the queries return over [start, end]: its name (the value of
    ``series_label``) -> feature -> time -> value. A series without the label, whose name is no
    folder name, or for which a query returns more than one series, is left out, saying so."""
    from .scoring import source_name_problem

    log = run_logger()
    columns: dict[str, dict[str, dict[float, float]]] = {}
    refused: set[str] = set()
    for feature, query in src.metrics.items():
        for series in query_range(src, query, start, end):
            name = series["metric"].get(src.series_label)
            problem = f"no label {src.series_label!r}" if name is None else source_name_problem(name)
            if problem:
                log.warning(one_line(f"Prometheus query {query!r} ({feature}): a series not read ({problem}): "
                                     f"{series['metric']}"))  # fmt: skip
                continue
            if feature in columns.get(name, {}):
                log.warning(one_line(f"Prometheus query {query!r} ({feature}) returned more than one series for "
                                     f"{src.series_label}={name!r}: aggregate it by {src.series_label} "
                                     f"(sum by ({src.series_label}) (...)); {name!r} is not read"))  # fmt: skip
                refused.add(name)
                continue
            columns.setdefault(name, {})[feature] = {float(t): _value(v) for t, v in series["values"]}
    return {name: got for name, got in columns.items() if name not in refused}


def pending_end(folder: Path) -> float | None:
    """The last step of the pulled files still waiting in a series' landing folder."""
    ends = [int(p.stem[len(PREFIX) :]) for p in folder.glob(f"{PREFIX}*.csv") if p.stem[len(PREFIX) :].isdigit()]
    return float(max(ends)) if ends else None


def pull(
    src: PrometheusSource,
    landing: Path,
    watermarks: dict[str, str | None],
    time_column: str,
    features: list[str],
    settle_seconds: float = 0.0,
    now: float | None = None,
) -> list[Path]:
    """One pull (module docstring); ``watermarks``: the store's, series -> last step scored
    (UTC, as the store writes it); ``features``: the champion's, in its order (the files'
    columns). Returns the files landed."""
    log = run_logger()
    missing = [f for f in features if f not in src.metrics]
    if missing:
        raise PrometheusError(f"scoring.prometheus.metrics names no query for {missing}: the champion reads {features}")
    src = replace(src, metrics={f: src.metrics[f] for f in features})
    step = src.step_seconds
    now = time.time() if now is None else now
    end = math.floor((now - src.delay_seconds) / step) * step
    oldest = math.ceil((now - src.lookback_minutes * 60) / step) * step

    # the whole reach every pull (a new series gets it all; a known one keeps what follows its
    # watermark): lookback_minutes / step_seconds samples a series and query, a few thousand at most
    if oldest > end:
        return []
    landed = []
    for name, got in sorted(_collect(src, oldest, end).items()):
        # the first step to pull: after the watermark, the pulled files still waiting, and those
        # quarantined (refused steps are not pulled again and again)
        waiting, refused = pending_end(Path(landing) / name), pending_end(Path(landing) / "quarantine" / name)
        marks = [oldest, *(t + step for t in (waiting, refused) if t is not None)]
        if watermarks.get(name):
            marks.append(datetime.fromisoformat(watermarks[name]).replace(tzinfo=UTC).timestamp() + step)
        first = math.ceil(max(marks) / step) * step
        absent = [f for f in src.metrics if not got.get(f)]
        for feature in absent:
            log.warning(one_line(f"Prometheus query {src.metrics[feature]!r} ({feature}) returned nothing for "
                                 f"{src.series_label}={name!r} from {_iso(first)} to {_iso(end)} UTC: its steps "
                                 "wait for the next pull"))  # fmt: skip
        if absent:
            continue
        times = sorted({t for f in src.metrics for t in got[f] if first <= t <= end})
        if not watermarks.get(name) and waiting is None:
            # a series never scored starts at its first step with every metric (a rate() has
            # no value before its window holds two samples); gaps after that are quarantined
            complete = [t for t in times if all(t in got[f] for f in src.metrics)]
            times = [t for t in times if complete and t >= complete[0]]
        if not times:
            continue
        frame = pd.DataFrame(
            {f: [got[f].get(t, np.nan) for t in times] for f in src.metrics},  # a gap: empty, quarantined
        )
        frame.insert(0, time_column, [_iso(t) for t in times])
        folder = Path(landing) / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{PREFIX}{int(times[-1]):012d}.csv"
        write_atomic(path, frame.to_csv(index=False).encode())  # floats as they round-trip
        past = time.time() - settle_seconds - 1  # whole from the start (renamed into place): no need to settle
        os.utime(path, (past, past))
        landed.append(path)
        log.info(f"Prometheus: {name}: {len(times)} steps from {_iso(times[0])} to {_iso(times[-1])} UTC landed")
    return landed


def pull_into_landing(
    src: PrometheusSource, engine, landing: Path, time_column: str, features: list[str], settle_seconds: float = 0.0
) -> list[Path]:
    """A pull (`pull`) from the series' watermarks in the alerts store (``engine``)."""
    from .alerts import sources

    with engine.connect() as conn:
        marks = {s["source"]: s["watermark"] for s in sources(conn)}
    return pull(src, Path(landing), marks, time_column, features, settle_seconds)


STAMP_SOURCE = "prometheus"  # telemetry.json's "source" in a folder `export` wrote


def export(src: PrometheusSource, out: Path, start: float, end: float, train_fraction: float = 0.5) -> list[str]:
    """Every series the queries return over [start, end] (unix seconds) written under ``out``
    in the layout dataset kind ``prometheus`` reads (`components.datasets.telemetry_layout`):
    ``<out>/<series>/train.csv`` (its first ``train_fraction`` of steps), ``test.csv`` (the rest,
    ``label`` 0: Prometheus holds no labels), ``causes.json``; ``<out>/telemetry.json`` names
    server, queries and range, so the DVC-tracked folder says where it came from. Steps at
    either end where a series has not every metric yet (a ``rate()`` before its window fills)
    are left out; a gap inside stays empty, for validation to name its rows. ``out`` is
    replaced whole, and only where it is new or an earlier export. Returns the series."""
    out = Path(out)
    stamp = out / "telemetry.json"
    if out.exists() and any(out.iterdir()):
        try:
            ours = json.loads(stamp.read_text()).get("source") == STAMP_SOURCE
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise DataError(f"{out} holds files that no Prometheus export wrote (no {stamp.name} of one): not "
                            "writing over them; name a new or empty folder")  # fmt: skip
    step = src.step_seconds
    start, end = math.ceil(start / step) * step, math.floor(end / step) * step
    staging = out.with_name(f".{out.name}.export-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    written = []
    for name, got in sorted(_collect(src, start, end).items()):
        missing = [f for f in src.metrics if f not in got]
        if missing:
            run_logger().warning(one_line(f"Prometheus series {src.series_label}={name!r}: no samples of {missing} "
                                          f"from {_iso(start)} to {_iso(end)} UTC; not exported"))  # fmt: skip
            continue
        frame = pd.DataFrame({f: pd.Series(got[f], dtype=np.float64) for f in src.metrics}).sort_index()
        complete = frame.notna().all(axis=1).to_numpy()
        if not complete.any():
            run_logger().warning(f"Prometheus series {name!r}: no step has every metric; not exported")
            continue
        first, last = np.flatnonzero(complete)[[0, -1]]
        frame = frame.iloc[first : last + 1]
        cut = int(len(frame) * train_fraction)
        if cut < 1 or cut >= len(frame):
            run_logger().warning(f"Prometheus series {name!r}: {len(frame)} steps are too few to cut; not exported")
            continue
        frame.index = pd.Index([_iso(t) for t in frame.index], name="timestamp")
        folder = staging / name
        folder.mkdir(parents=True)
        frame.iloc[:cut].to_csv(folder / "train.csv")
        frame.iloc[cut:].assign(label=0).to_csv(folder / "test.csv")
        (folder / "causes.json").write_text(json.dumps({"name": name, "causes": []}) + "\n")
        written.append(name)
        run_logger().info(f"Prometheus export: {name}: {cut} train and {len(frame) - cut} test steps")
    if not written:
        shutil.rmtree(staging, ignore_errors=True)
        raise PrometheusError(f"Prometheus {src.url}: the queries {list(src.metrics.values())} gave no series to "
                              f"export with the label {src.series_label!r} from {_iso(start)} to {_iso(end)} UTC "
                              "(the log says why)")  # fmt: skip
    meta = {"source": STAMP_SOURCE, "url": src.url, "metrics": src.metrics, "series_label": src.series_label,
            "step_seconds": step, "start": _iso(start), "end": _iso(end), "train_fraction": train_fraction}  # fmt: skip
    staging.mkdir(exist_ok=True)
    (staging / stamp.name).write_text(json.dumps(meta, indent=1) + "\n")
    if out.exists():  # ours (checked above): swapped whole, never half old and half new
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out)
    return written
