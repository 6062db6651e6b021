"""From events to telemetry every Vigil detector can score: one definition of the features per
log format (`FeatureSpec`: one SQL text that the embedded engine and Spark both run), the
shared step that lays each series on a dense grid of time bins, and the cut into the
train/test `Dataset` of each series (pool, link), labelled by the incidents an operator has.

The SQL reads the events table ``{events}`` and groups by ``series`` and ``bin`` (the event's
epoch milliseconds floored to ``{bin_ms}``); it uses only what DuckDB and Spark SQL 3.5 both
define alike (``percentile_cont ... WITHIN GROUP``, ``ln``, ``avg`` of integers, explicit casts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.datasets import Anomaly, DataError, Dataset

MS_PER_SECOND = 1000
DAY_MS = 86_400 * MS_PER_SECOND


@dataclass(frozen=True)
class FeatureSpec:
    """The telemetry of one log format. ``sql``: the query over ``{events}``; ``counts``: the
    metrics that are 0 in a bin without events (counts, sums, rates); ``levels``: the metrics
    carried forward from the last bin with events (quantiles: no event, no news); ``log1p``:
    the levels that `dense_series` stores as ``log_<name>`` = ln(1 + value), as durations are
    heavy-tailed. The logarithm is taken there, not in SQL, because DuckDB's ``ln`` and the
    JVM's differ in the last bit; quantiles are ``percentile_disc`` (a value of the data, where
    ``percentile_cont``'s interpolation also differs in the last bit), so both engines give
    the same table to the bit."""

    sql: str
    counts: tuple[str, ...]
    levels: tuple[str, ...]
    log1p: tuple[str, ...] = ()

    @property
    def metrics(self) -> list[str]:
        """The telemetry's metric names, in order."""
        return [*self.counts, *(f"log_{c}" if c in self.log1p else c for c in self.levels)]

    def query(self, events: str, bin_seconds: int) -> str:
        return self.sql.format(events=events, bin_ms=int(bin_seconds * MS_PER_SECOND))


@dataclass(frozen=True)
class Incident:
    """An incident an operator (or the generator) recorded: ``series`` (a pool, a link, or
    ``*`` for all), its span in epoch milliseconds ``[start_ms, end_ms)`` and its kind."""

    series: str
    start_ms: int
    end_ms: int
    kind: str = "incident"


INCIDENTS_FILE = "incidents.json"


def read_incidents(folder: Path) -> list[Incident]:
    """``<folder>/incidents.json`` (``{"incidents": [{"series", "start", "end", "kind"}]}``,
    ISO times), or none where the operator keeps no such file."""
    path = Path(folder) / INCIDENTS_FILE
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc})") from None
    incidents = []
    for k, item in enumerate(doc.get("incidents", [])):
        try:
            start, end = (pd.Timestamp(item[key]) for key in ("start", "end"))
            start, end = (t.tz_localize("UTC") if t.tzinfo is None else t for t in (start, end))
            incident = Incident(
                str(item["series"]), start.value // 10**6, end.value // 10**6, item.get("kind", "incident")
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"{path}: incident {k} needs series, start and end (ISO times): {exc!r}") from None
        if incident.end_ms <= incident.start_ms:
            raise DataError(f"{path}: incident {k} ends before it starts")
        incidents.append(incident)
    return incidents


def write_incidents(folder: Path, incidents: list[Incident], meta: dict | None = None) -> None:
    def iso(ms: int) -> str:
        return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()

    items = [{"series": i.series, "start": iso(i.start_ms), "end": iso(i.end_ms), "kind": i.kind} for i in incidents]
    (Path(folder) / INCIDENTS_FILE).write_text(json.dumps({**(meta or {}), "incidents": items}, indent=1) + "\n")


def dense_series(table: pd.DataFrame, spec: FeatureSpec) -> dict[str, pd.DataFrame]:
    """Each series of the engine's table on one grid of bins, from the first bin of any series
    to the last: counts 0 where a series had no event, levels carried from its last bin with
    events (and its first level before that). Same input, same output, whichever engine ran."""
    if table.empty:
        raise DataError("the logs hold no event to make telemetry of")
    bins = np.arange(int(table["bin"].min()), int(table["bin"].max()) + 1, dtype=np.int64)
    out = {}
    for series, part in table.groupby("series", sort=True):
        frame = part.set_index("bin")[[*spec.counts, *spec.levels]].astype(np.float64).reindex(bins)
        frame[list(spec.counts)] = frame[list(spec.counts)].fillna(0.0)
        frame[list(spec.levels)] = frame[list(spec.levels)].ffill().bfill()
        frame[list(spec.log1p)] = np.log1p(frame[list(spec.log1p)])
        out[str(series)] = frame.set_axis(spec.metrics, axis=1)
    return out


def split_series(
    series: str,
    frame: pd.DataFrame,
    incidents: list[Incident],
    bin_seconds: int,
    train_fraction: float,
    causes_of: dict[str, list[str]],
) -> tuple[Dataset, list[Incident]]:
    """One series cut in time order: the first ``train_fraction`` of bins is train, the rest
    test, labelled 1 in every bin an incident of this series (or of ``*``) touches. Incidents
    that start inside train cannot be labels there (train is assumed normal) and are returned
    to be reported; the part of one that runs on into test is labelled.
    ``causes_of``: incident kind -> the metrics it moves (none named for an unknown kind)."""
    bin_ms = int(bin_seconds * MS_PER_SECOND)
    first_bin = int(frame.index[0])  # dense_series' frames are indexed by bin
    index = pd.DatetimeIndex(pd.to_datetime(frame.index.to_numpy() * bin_ms, unit="ms"), name="timestamp")
    frame = frame.set_axis(index)
    cut = int(len(frame) * train_fraction)
    if cut < 2 or len(frame) - cut < 2:
        raise DataError(f"{series}: {len(frame)} bins of {bin_seconds} s are too few to cut at {train_fraction}")
    labels = np.zeros(len(frame) - cut, dtype=np.int8)
    causes, in_train = [], []
    metric_index = {m: i for i, m in enumerate(frame.columns)}
    for inc in incidents:
        if inc.series not in (series, "*"):
            continue
        start = max(inc.start_ms // bin_ms - first_bin, 0)
        end = min(-(-inc.end_ms // bin_ms) - first_bin, len(frame))  # every bin the span touches
        if end <= start:
            continue
        if start < cut:  # train is assumed normal: an incident there is reported; its test part is a label
            in_train.append(inc)
            if end <= cut:
                continue
            start = cut
        labels[start - cut : end - cut] = 1
        metrics = tuple(metric_index[m] for m in causes_of.get(inc.kind, ()) if m in metric_index)
        causes.append(Anomaly(start - cut, end - cut, metrics))
    data = Dataset(name=series, train=frame.iloc[:cut], test=frame.iloc[cut:], labels=labels, causes=causes)
    return data, in_train


def day_start_ms(day: str) -> int:
    """Epoch milliseconds of a day's UTC midnight (``2026-01-05``): where a generated span starts."""
    return int(pd.Timestamp(day, tz="UTC").value // 10**6)


def place_incidents(
    rng: np.random.Generator,
    names: list[str],
    t0_ms: int,
    minutes: int,
    kinds: tuple[str, ...],
    n: int,
    quiet_head: float,
    every_series: tuple[str, ...] = (),
) -> list[Incident]:
    """``n`` generated incidents of ``kinds`` in turn, one in each equal slot of the span after
    its quiet head (so none overlap and train stays normal), 30 to 150 minutes long, each on a
    random series (on all, ``*``, for the kinds in ``every_series``)."""
    head = int(minutes * quiet_head)
    slot = (minutes - head) // max(n, 1)
    incidents = []
    for k in range(n):
        kind = kinds[k % len(kinds)]
        length = min(int(rng.integers(30, 150)), slot - 10)
        begin = head + k * slot + int(rng.integers(5, max(slot - length - 5, 6)))
        series = "*" if kind in every_series else names[int(rng.integers(len(names)))]
        incidents.append(Incident(series, t0_ms + begin * 60_000, t0_ms + (begin + length) * 60_000, kind))
    return incidents
