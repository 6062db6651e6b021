"""Steps written into an alerts store as `tasks.scoring.score_file` writes them, without a
model: for the tests of what reads the store (notifiers, the fleet page)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np

from components.alerting import AlertRule
from tasks.alerts import Scorer, now, read_source, write_source, write_steps

RULE = AlertRule(threshold=1.0, merge_gap=5, min_steps=2)
SCORER = Scorer("vigil-test", "3", "zscore", RULE, ["cpu", "mem"])
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def scored(engine, source: str, scores: list[float], sink=None, scorer: Scorer = SCORER, values=None) -> list[int]:
    """Steps of ``source`` into the store (one minute apart, after its last), the incidents they
    raise told to ``sink`` (`tasks.alerts.Sink`) in the same transaction; ``values``: the
    steps' metric values (steps x ``scorer.names``), stored for the page. Returns the incidents
    raised."""
    with engine.begin() as conn:
        src = read_source(conn, source)
        done = src["steps"] if src else 0
        times = [(T0 + timedelta(minutes=done + i)).strftime("%Y-%m-%dT%H:%M:%S.%f") for i in range(len(scores))]
        weights = 3.0 ** -np.arange(len(scorer.names))  # the first metric leads: 0.75, 0.25 of two
        contributions = np.tile(weights / weights.sum(), (len(scores), 1))
        open_incident, carry, raised, _ = write_steps(
            conn, source, scorer, times, np.array(scores), contributions, values,
            src["open_incident"] if src else None, json.loads(src["state"]) if src else None,
        )  # fmt: skip
        if sink is not None:
            sink.incidents_raised(conn, raised, "")
        state = {**carry, "features": scorer.names}
        row = {"watermark": times[-1], "steps": done + len(scores), "state": json.dumps(state),
               "model": scorer.model, "version": scorer.version, "open_incident": open_incident,
               "updated": now()}  # fmt: skip
        write_source(conn, source, row, exists=src is not None)
    return raised
