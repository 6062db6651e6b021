"""Rucio transfer events: the reader, the per-link telemetry, and a seeded generator.

Layout: a folder of day files ``transfers-YYYY-MM-DD.json``, one message a line as Rucio's
messaging daemon (hermes) sends them: ``{"event_type", "created_at", "payload"}``. Events of
type ``transfer-done`` and ``transfer-failed`` are read; their payload's ``src-rse``,
``dst-rse``, ``file-size`` (bytes), ``activity``, ``protocol`` and ``submitted_at``,
``started_at``, ``transferred_at`` (UTC, ``YYYY-MM-DD HH:MM:SS[.ffffff]`` or ISO 8601). Other
event types (``transfer-submitted``, ``transfer-queued``, ...) are counted and passed over. A
link is ``<src-rse>__<dst-rse>``. An optional ``incidents.json`` holds labelled incidents.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .records import Drop, FileReport, epoch_ms, need, number, read_events, series_name, timestamp
from .telemetry import DAY_MS, MS_PER_SECOND, FeatureSpec, Incident, day_start_ms, place_incidents

FORMAT = "rucio_transfers"
FILE_GLOB = "transfers-*.json"  # and transfers-*.json.gz, as rotated
TYPES = ("transfer-done", "transfer-failed")
LINK_SEPARATOR = "__"

COLUMNS = {
    "ended_ms": "int64",
    "link": "object",
    "file_size": "float64",
    "activity": "object",
    "protocol": "object",
    "submitted_ms": "int64",
    "started_ms": "int64",
    "duration_s": "float64",  # started -> transferred
    "queue_s": "float64",  # submitted -> started
    "failed": "int8",
}


def link_name(src: str, dst: str) -> str:
    return f"{src}{LINK_SEPARATOR}{dst}"


def _parse(obj: dict) -> dict:
    kind = obj.get("event_type")
    if kind is None:
        raise Drop("missing:event_type")
    if kind not in TYPES:
        raise Drop(f"other_type:{kind}")
    payload = need(obj, "payload")
    if not isinstance(payload, dict):
        raise Drop("invalid:payload")
    src, dst = series_name(payload, "src-rse"), series_name(payload, "dst-rse")
    submitted, started, ended = (
        timestamp(need(payload, k), k) for k in ("submitted_at", "started_at", "transferred_at")
    )
    s_ms, t_ms, e_ms = epoch_ms(submitted), epoch_ms(started), epoch_ms(ended)
    if t_ms < s_ms:
        raise Drop("invalid:started_at")  # started before it was submitted
    if e_ms < t_ms:
        raise Drop("invalid:transferred_at")
    return {
        "ended_ms": e_ms,
        "day": ended.date(),
        "link": link_name(src, dst),
        "file_size": number(payload, "file-size"),
        "activity": str(need(payload, "activity")),
        "protocol": str(need(payload, "protocol")),
        "submitted_ms": s_ms,
        "started_ms": t_ms,
        "duration_s": (e_ms - t_ms) / MS_PER_SECOND,
        "queue_s": (t_ms - s_ms) / MS_PER_SECOND,
        "failed": int(kind == "transfer-failed"),
    }


def read_transfer_file(path: Path) -> tuple[pd.DataFrame, FileReport]:
    """One day file's transfers, and where every line went (`FileReport`)."""
    return read_events(Path(path), _parse, COLUMNS, lambda obj: obj.get("event_type"))


# --- Vigil's view: per link, per bin of the transfers' end -----------------------------------------

FEATURES = FeatureSpec(
    sql="""
SELECT link AS series,
       CAST(floor(ended_ms / {bin_ms}) AS BIGINT) AS bin,
       count(*) AS transfers,
       CAST(sum(CAST(failed AS BIGINT)) AS BIGINT) AS failures,
       avg(CAST(failed AS BIGINT)) AS failure_rate,
       CAST(sum(file_size) AS DOUBLE) / 1e9 AS gbytes,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_s) AS duration_p50,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_s) AS duration_p95,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY queue_s) AS queue_p50,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY queue_s) AS queue_p95,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY file_size / (duration_s + 1) / 1e6) AS mbps_p50
FROM {events}
GROUP BY link, CAST(floor(ended_ms / {bin_ms}) AS BIGINT)
""",
    counts=("transfers", "failures", "failure_rate", "gbytes"),
    levels=("duration_p50", "duration_p95", "queue_p50", "queue_p95", "mbps_p50"),
    log1p=("duration_p50", "duration_p95", "queue_p50", "queue_p95"),
)

CAUSES = {
    "congested_link": ["log_duration_p50", "log_duration_p95", "mbps_p50"],
    "link_failures": ["failures", "failure_rate"],
    "stuck_queue": ["log_queue_p50", "log_queue_p95"],
}

# --- the seeded generator -----------------------------------------------------------------------

SITES = ("CERN-PROD", "BNL-OSG2", "FZK-LCG2", "IN2P3-CC", "TRIUMF-LCG2", "RAL-LCG2", "INFN-T1")
ACTIVITIES = ("Production Output", "User Subscriptions", "Data Rebalancing", "Analysis Input", "T0 Export")
PROTOCOLS = ("davs", "root", "srm", "gsiftp")
INCIDENT_KINDS = ("congested_link", "link_failures", "stuck_queue")


def generate_transfers(
    folder: Path,
    *,
    seed: int = 0,
    days: int = 4,
    links: int = 6,
    rate: float = 3.0,
    n_incidents: int = 9,
    quiet_head: float = 0.5,
    start: str = "2026-01-05",
) -> list[Incident]:
    """Write ``days`` day files of transfer events into ``folder`` and return their
    incidents; the same arguments give the same bytes. Each link has its own bandwidth (drifting hour by
    hour, and shared by the transfers running at once: a busy link is a slow one), file sizes
    and load; ``n_incidents`` incidents in turn (a congested link, a burst of failures, a
    stuck queue) fall after the first ``quiet_head`` of the span."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = day_start_ms(start)
    minutes = days * 1440
    pairs = _pick_links(rng, links)
    names = [link_name(f"{s}_DATADISK", f"{d}_DATADISK") for s, d in pairs]
    incidents = place_incidents(rng, names, t0, minutes, INCIDENT_KINDS, n_incidents, quiet_head)
    minute = np.arange(minutes)
    load = 1 + 0.5 * np.sin(2 * np.pi * (minute / 1440 - 0.3))
    frames = []
    for k in range(links):
        counts = rng.poisson(rate * rng.uniform(0.6, 1.4) * load)
        submitted = np.repeat(t0 + minute * 60_000, counts) + rng.integers(0, 60_000, counts.sum())
        n = len(submitted)
        busy = np.repeat(load, counts)
        hourly = np.exp(np.cumsum(rng.normal(0, 0.08, minutes // 60 + 1)))  # the link's quality, drifting
        bandwidth = rng.uniform(30e6, 150e6) * hourly[np.repeat(minute // 60, counts)] / (1 + 0.6 * busy)
        size = np.exp(rng.normal(np.log(1.5e9) + rng.normal(0, 0.3), 1.0, n)).round()
        queue = rng.exponential(30 * busy)
        p_fail = np.full(n, 0.02)
        for inc in incidents:
            inside = (submitted >= inc.start_ms) & (submitted < inc.end_ms) & (inc.series == names[k])
            if not inside.any():
                continue
            if inc.kind == "congested_link":
                bandwidth[inside] /= rng.uniform(4, 8)
            elif inc.kind == "link_failures":
                p_fail[inside] = rng.uniform(0.4, 0.7)
            elif inc.kind == "stuck_queue":
                queue[inside] += rng.uniform(600, 3600, inside.sum())
        duration = 3 * np.exp(rng.normal(0, 0.4, n)) + size / bandwidth * np.exp(rng.normal(0, 0.2, n))
        failed = rng.random(n) < p_fail
        duration = np.where(failed, duration * rng.uniform(0.05, 0.6, n), duration)
        started = submitted + (queue * 1000).astype(np.int64)
        frames.append(
            pd.DataFrame(
                {
                    "src": pairs[k][0] + "_DATADISK",
                    "dst": pairs[k][1] + "_DATADISK",
                    "size": size,
                    "activity": rng.choice(np.array(ACTIVITIES), n),
                    "protocol": rng.choice(np.array(PROTOCOLS), n),
                    "submitted": submitted,
                    "started": started,
                    "ended": started + (duration * 1000).astype(np.int64),
                    "failed": failed,
                }
            )
        )
    events = pd.concat(frames, ignore_index=True)
    events = events[events["ended"] < t0 + days * DAY_MS]  # the logs end with the span
    events["type"] = np.where(events["failed"], "transfer-failed", "transfer-done")
    # the submissions a message bus also carries, which a reader must count and pass over
    submitted_msgs = events.sample(frac=0.05, random_state=seed).assign(type="transfer-submitted")
    events = pd.concat([events, submitted_msgs], ignore_index=True).sort_values("ended", kind="stable")
    events["day"] = (events["ended"].to_numpy() - t0) // DAY_MS
    events["request"] = np.arange(len(events))
    for d, part in events.groupby("day"):
        name = pd.Timestamp(t0 + int(d) * DAY_MS, unit="ms").strftime("transfers-%Y-%m-%d.json")
        (folder / name).write_text("".join(_message(row) for row in part.itertuples(index=False)))
    return incidents


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # as Rucio writes them


def _message(row) -> str:
    payload = {
        "request-id": f"{row.request:032x}",
        "scope": "mc23",
        "name": f"EVNT.{row.request:08d}._000001.pool.root.1",
        "src-rse": row.src,
        "dst-rse": row.dst,
        "file-size": int(row.size),
        "bytes": int(row.size),
        "activity": row.activity,
        "protocol": row.protocol,
        "submitted_at": _when(row.submitted),
        "started_at": _when(row.started),
        "transferred_at": _when(row.ended),
        "reason": "TRANSFER [110] Operation timed out" if row.failed else "",
    }
    created = row.submitted if row.type == "transfer-submitted" else row.ended
    return json.dumps({"event_type": row.type, "created_at": _when(created), "payload": payload}) + "\n"


def _pick_links(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    pairs = [(s, d) for s in SITES for d in SITES if s != d]
    return [pairs[i] for i in rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)]
