"""dCache billing records: the reader, the per-pool telemetry, and a seeded generator.

Layout: a folder of day files ``billing-YYYY-MM-DD.json`` as dCache's billing service
publishes them, one JSON object a line. Message types ``store``, ``restore``, ``transfer``
(a pool's movers), ``request`` (a door's) and ``remove``; the fields read are ``msgType``,
``date`` (ISO 8601 with its zone), ``cellName`` (the pool, or the door of a request),
``fileSize`` (bytes), ``transferTime`` and ``queuingTime`` (ms; queuing may be absent) and
``status`` (``{"code", "msg"}``, code 0 for success). An optional ``incidents.json`` beside
them holds the incidents an operator labelled (components/logs/telemetry.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .records import Drop, FileReport, epoch_ms, need, number, read_events, series_name, timestamp
from .telemetry import DAY_MS, FeatureSpec, Incident, day_start_ms, place_incidents

FORMAT = "dcache_billing"
FILE_GLOB = "billing-*.json"  # and billing-*.json.gz, as rotated
TYPES = ("store", "restore", "transfer", "request", "remove")
MOVERS = ("store", "restore", "transfer")  # the records of a pool's movers: what the telemetry is made of

COLUMNS = {
    "t_ms": "int64",
    "msg_type": "object",
    "pool": "object",
    "file_size": "float64",  # NaN where a request or remove record carries none
    "transfer_ms": "float64",
    "queuing_ms": "float64",  # NaN where absent or null
    "status": "int64",
}


def _parse(obj: dict) -> dict:
    kind = obj.get("msgType")
    if kind is None:
        raise Drop("missing:msgType")
    if kind not in TYPES:
        raise Drop(f"other_type:{kind}")
    when = timestamp(need(obj, "date"), "date")
    cell = series_name(obj, "cellName")
    status = need(obj, "status")
    if not isinstance(status, dict) or status.get("code") is None:
        raise Drop("missing:status.code")
    code = status["code"]
    if isinstance(code, bool) or not isinstance(code, int):
        raise Drop("invalid:status.code")
    mover = kind in MOVERS
    return {
        "t_ms": epoch_ms(when),
        "day": when.date(),
        "msg_type": kind,
        "pool": cell,
        "file_size": number(obj, "fileSize", optional=not mover),
        "transfer_ms": number(obj, "transferTime", optional=not mover),
        "queuing_ms": number(obj, "queuingTime", optional=True),
        "status": code,
    }


def read_billing_file(path: Path) -> tuple[pd.DataFrame, FileReport]:
    """One day file's records, and where every line went (`FileReport`)."""
    return read_events(Path(path), _parse, COLUMNS, lambda obj: obj.get("msgType"))


# --- Vigil's view: per pool, per bin -------------------------------------------------------------

FEATURES = FeatureSpec(
    sql="""
SELECT pool AS series,
       CAST(floor(t_ms / {bin_ms}) AS BIGINT) AS bin,
       count(*) AS events,
       CAST(sum(CASE WHEN msg_type = 'store' THEN 1 ELSE 0 END) AS BIGINT) AS stores,
       CAST(sum(CASE WHEN msg_type = 'restore' THEN 1 ELSE 0 END) AS BIGINT) AS restores,
       CAST(sum(CASE WHEN status <> 0 THEN 1 ELSE 0 END) AS BIGINT) AS errors,
       avg(CASE WHEN status <> 0 THEN 1 ELSE 0 END) AS error_rate,
       CAST(sum(file_size) AS DOUBLE) / 1e9 AS gbytes,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY transfer_ms) AS transfer_p50,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY transfer_ms) AS transfer_p95,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY coalesce(queuing_ms, 0)) AS queuing_p50,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY coalesce(queuing_ms, 0)) AS queuing_p95
FROM {events}
WHERE msg_type IN ('store', 'restore', 'transfer')
GROUP BY pool, CAST(floor(t_ms / {bin_ms}) AS BIGINT)
""",
    counts=("events", "stores", "restores", "errors", "error_rate", "gbytes"),
    levels=("transfer_p50", "transfer_p95", "queuing_p50", "queuing_p95"),
    log1p=("transfer_p50", "transfer_p95", "queuing_p50", "queuing_p95"),
)

# the metrics each generated incident kind moves (the causes the detectors' attributions are judged on)
CAUSES = {
    "pool_errors": ["errors", "error_rate"],
    "outage": ["errors", "error_rate"],
    "stuck_queue": ["log_queuing_p50", "log_queuing_p95", "events"],
    "slow_disk": ["log_transfer_p50", "log_transfer_p95"],
}

# --- the seeded generator: the embedded default, as no real billing logs are public ---------------

INCIDENT_KINDS = ("pool_errors", "stuck_queue", "slow_disk", "outage")
ERRORS = ((10006, "Pool is disabled"), (666, "Transfer failed: Connection reset by peer"), (10011, "Checksum mismatch"))


def generate_billing(
    folder: Path,
    *,
    seed: int = 0,
    days: int = 4,
    pools: int = 6,
    rate: float = 6.0,
    n_incidents: int = 8,
    quiet_head: float = 0.5,
    start: str = "2026-01-05",
) -> list[Incident]:
    """Write ``days`` billing day files into ``folder`` and return their incidents; the
    same arguments give the same bytes. Each pool has its own file sizes, bandwidth and load (a
    daily cycle); ``n_incidents`` incidents of four kinds in turn (a pool going bad with error
    bursts, a stuck queue, a slow disk, and an outage of every pool, as when the namespace goes
    down) fall after the first ``quiet_head`` of the span, which stays normal to train on."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = day_start_ms(start)
    minutes = days * 1440
    names = [f"pool-{i + 1}" for i in range(pools)]
    incidents = place_incidents(
        rng, names, t0, minutes, INCIDENT_KINDS, n_incidents, quiet_head, every_series=("outage",)
    )
    log_size = rng.normal(np.log(5e8), 0.5, pools)
    bandwidth = rng.uniform(60e6, 200e6, pools)  # bytes per second
    weight = rng.uniform(0.6, 1.4, pools)
    minute = np.arange(minutes)
    load = 1 + 0.6 * np.sin(2 * np.pi * (minute / 1440 - 0.25))  # quiet at night, busy in the afternoon
    frames = []
    for p in range(pools):
        counts = rng.poisson(rate * weight[p] * load)
        t = np.repeat(t0 + minute * 60_000, counts) + rng.integers(0, 60_000, counts.sum())
        n = len(t)
        size = np.exp(rng.normal(log_size[p], 1.0, n)).round()
        transfer = size / bandwidth[p] * 1000 * np.exp(rng.normal(0, 0.3, n)) + 50
        busy = np.repeat(load, counts)
        queued = rng.random(n) < 0.2 + 0.3 * busy
        queuing = np.where(queued, rng.exponential(800 * busy), 0.0)
        p_error = np.full(n, 0.003)
        for inc in incidents:
            inside = (t >= inc.start_ms) & (t < inc.end_ms) & (inc.series in (names[p], "*"))
            if not inside.any():
                continue
            if inc.kind in ("pool_errors", "outage"):
                p_error[inside] = 0.75 if inc.kind == "outage" else rng.uniform(0.4, 0.7)
            elif inc.kind == "stuck_queue":
                ramp = (t[inside] - inc.start_ms) / (inc.end_ms - inc.start_ms)
                queuing[inside] += 5_000 + 240_000 * ramp * rng.random(inside.sum())
            elif inc.kind == "slow_disk":
                transfer[inside] *= rng.uniform(3, 6)
        failed = rng.random(n) < p_error
        transfer = np.where(failed, transfer * 0.1, transfer)  # a failing mover gives up early
        kind = rng.choice(np.array(MOVERS), n, p=[0.55, 0.2, 0.25])
        frames.append(
            pd.DataFrame(
                {
                    "t_ms": t,
                    "msg_type": kind,
                    "pool": names[p],
                    "file_size": size,
                    "transfer_ms": transfer.round(),
                    "queuing_ms": queuing.round(),
                    "failed": failed,
                }
            )
        )
    movers = pd.concat(frames, ignore_index=True)
    # doors' requests and removals, which the telemetry does not use but a reader must pass over
    extra = movers.sample(frac=0.15, random_state=seed).assign(
        msg_type=lambda f: np.where(rng.random(len(f)) < 0.66, "request", "remove"),
        t_ms=lambda f: f["t_ms"] + 1,
    )
    events = pd.concat([movers, extra], ignore_index=True).sort_values(["t_ms", "pool"], kind="stable")
    events = events.assign(
        code=rng.integers(0, len(ERRORS), len(events)),
        null_queuing=(events["msg_type"] == "store").to_numpy() & (rng.random(len(events)) < 0.1),
        day=(events["t_ms"].to_numpy() - t0) // DAY_MS,
    )
    for d, part in events.groupby("day"):
        name = pd.Timestamp(t0 + int(d) * DAY_MS, unit="ms").strftime("billing-%Y-%m-%d.json")
        (folder / name).write_text("".join(_record(row) for row in part.itertuples(index=False)))
    return incidents


def _record(row) -> str:
    """One billing line as dCache writes it."""
    when = datetime.fromtimestamp(row.t_ms / 1000, UTC).isoformat(timespec="milliseconds")
    code, msg = ERRORS[row.code] if row.failed else (0, "")
    kind = row.msg_type
    cell = "webdav-door" if kind == "request" else row.pool
    record = {"msgType": kind, "date": when, "cellName": cell, "cellType": "door" if kind == "request" else "pool"}
    record["fileSize"] = int(row.file_size)
    if kind in MOVERS:
        record["transferTime"] = int(row.transfer_ms)
        record["queuingTime"] = None if row.null_queuing else int(row.queuing_ms)
    record["status"] = {"code": int(code), "msg": msg}
    return json.dumps(record, separators=(",", ":")) + "\n"
