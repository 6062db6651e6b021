"""The feedback dataset: operators' verdicts in the alerts store exported as labelled steps
(`components.feedback`), one folder per model, which the next run of the pipeline reads
(`tasks.data.read_feedback`). DVC tracks it (stage ``feedback``), so a threshold that
learned from it traces to the exact verdicts.

Layout: ``<folder>/<model>/<series>.csv`` with ``segment``, the time column, the model's
metrics, ``label`` (1 anomaly, 0 normal, -1 left out) and ``new_normal``; and
``<folder>/<model>/feedback.json``, the incidents and verdicts behind them. A model's folder
is written beside the old one and swapped in whole; identical verdicts write identical bytes.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from prefect import task

from components.feedback import Span, labelled_segments

from .alerts import INCIDENTS, POINTS, SOURCES, VALUES, latest_verdicts, open_store
from .files import write_atomic

TIME = "timestamp"


def _step_times(conn, source: str) -> np.ndarray:
    """Every stored step time of ``source``, in order (fixed-width text: sorts as time)."""
    rows = conn.execute(sa.select(POINTS.c.ts).where(POINTS.c.source == source).order_by(POINTS.c.ts))
    return np.asarray([ts for (ts,) in rows], dtype=object)


def _stretch(conn, source: str, features: list[str], first: str, last: str) -> pd.DataFrame:
    """The stored steps of ``source`` from ``first`` to ``last`` with their metric values
    (NaN where the store kept none): read one stretch at a time, not the whole series."""
    rows = conn.execute(
        sa.select(POINTS.c.ts, POINTS.c.metrics)
        .where(POINTS.c.source == source, POINTS.c.ts >= first, POINTS.c.ts <= last)
        .order_by(POINTS.c.ts)
    ).all()
    width = VALUES.itemsize * len(features)
    values = np.full((len(rows), len(features)), np.nan)
    for i, (_, blob) in enumerate(rows):
        if blob is not None and len(blob) == width:
            values[i] = np.frombuffer(blob, dtype=VALUES)
    frame = pd.DataFrame(values, columns=features)
    frame.insert(0, TIME, [ts for ts, _ in rows])
    return frame


def export_model(conn, model: str, context_steps: int) -> tuple[dict[str, pd.DataFrame], dict]:
    """The labelled segments of every series scored by ``model`` that has a reviewed
    incident (with ``context_steps`` either side), and the record of what they came from."""
    incidents = [
        dict(r)
        for r in conn.execute(
            sa.select(INCIDENTS).where(INCIDENTS.c.model == model).order_by(INCIDENTS.c.source, INCIDENTS.c.id)
        ).mappings()
    ]
    verdicts = latest_verdicts(conn, [i["id"] for i in incidents])
    reviewed_sources = sorted({i["source"] for i in incidents if i["id"] in verdicts})
    frames, record = {}, {"model": model, "series": {}, "incidents": []}
    for source in reviewed_sources:
        state = conn.execute(sa.select(SOURCES.c.state).where(SOURCES.c.source == source)).scalar_one()
        features = json.loads(state)["features"]
        mine = [i for i in incidents if i["source"] == source]
        spans = [Span(i["start"], i["end"], verdicts.get(i["id"], {}).get("verdict")) for i in mine]
        times = _step_times(conn, source)
        segments, label, new_normal = labelled_segments(times, spans, context_steps)
        parts, dropped = [], 0
        for k, (a, b) in enumerate(segments):
            part = _stretch(conn, source, features, times[a], times[b - 1])
            keep = part[features].notna().all(axis=1).to_numpy()
            dropped += int((~keep).sum())
            part.insert(0, "segment", k)
            part["label"], part["new_normal"] = label[a:b], new_normal[a:b]
            parts.append(part[keep])
        columns = ["segment", TIME, *features, "label", "new_normal"]
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
        frames[source] = frame
        record["series"][source] = {
            "features": features,
            "steps": len(frame),
            "anomalous": int((frame["label"] == 1).sum()),
            "normal": int((frame["label"] == 0).sum()),
            "left_out": int((frame["label"] == -1).sum()),
            "new_normal": int(frame["new_normal"].sum()),
            "without_values": dropped,
        }
        for inc in mine:
            if inc["id"] in verdicts:
                v = verdicts[inc["id"]]
                record["incidents"].append(
                    {
                        "id": inc["id"],
                        "series": source,
                        "start": inc["start"],
                        "end": inc["end"],
                        "verdict": v["verdict"],
                        "who": v["who"],
                        "feedback_id": v["id"],
                    }
                )
    return frames, record


@task(name="export feedback")
def export_feedback(store_url: str, folder: Path, context_steps: int) -> dict:
    """Every model's reviewed incidents in the store, exported under ``folder``; returns what
    was written (models, series, steps by label)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    engine = open_store(store_url)
    try:
        with engine.connect() as conn:
            models = [m for (m,) in conn.execute(sa.select(INCIDENTS.c.model).distinct().order_by(INCIDENTS.c.model))]
            exported = {}
            for model in models:
                frames, record = export_model(conn, model, context_steps)
                if frames:
                    _write_model(folder / model, frames, record)
                    exported[model] = record
    finally:
        engine.dispose()
    index = {m: {"series": sorted(r["series"]), "incidents": len(r["incidents"])} for m, r in exported.items()}
    write_atomic(folder / "index.json", (json.dumps(index, indent=1, sort_keys=True) + "\n").encode())
    return exported


def _write_model(target: Path, frames: dict[str, pd.DataFrame], record: dict) -> None:
    """Write beside ``target``, then swap it in: a reader sees the old folder or the new one."""
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    for source, frame in frames.items():
        frame.to_csv(staging / f"{source}.csv", index=False)
    (staging / "feedback.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    old = target.with_name(f".{target.name}.old.{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
