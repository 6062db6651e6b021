"""Scoring a stream in batches with the scores of one pass (flags and incidents of the scores:
`components.alerting`).

A detector's score at a step reads ``past`` steps before it and ``future`` steps after it
(`Detector.context_steps`). A batch is therefore scored together with the last ``past`` steps
already scored, and its last ``future`` steps wait for the next batch: they are scored once
the steps that follow them have arrived. `StreamState` is what is carried between batches (in
the alerts store, so a restart resumes it): those steps, as the scaler left them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class StreamState:
    """The tail of a stream: ``rows`` [n, F], the last ``pending`` of which are not scored yet
    (they wait for ``future`` later steps); the ones before them are context only."""

    rows: np.ndarray
    pending: int = 0

    @classmethod
    def empty(cls, n_features: int) -> StreamState:
        return cls(np.empty((0, n_features)), 0)

    def to_json(self) -> dict:
        return {"rows": self.rows.tolist(), "pending": int(self.pending)}

    @classmethod
    def from_json(cls, obj: dict, n_features: int) -> StreamState:
        rows = np.asarray(obj.get("rows") or [], dtype=np.float64).reshape(-1, n_features)
        return cls(rows, int(obj.get("pending", 0)))


@dataclass
class StreamScores:
    """What one batch made final: the scores and contributions of the oldest pending step
    and the ones after it, in order."""

    scores: np.ndarray
    contributions: np.ndarray


def score_batch(
    score_fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    state: StreamState,
    batch: np.ndarray,
    past: int,
    future: int,
) -> tuple[StreamScores, StreamState]:
    """Score ``batch`` [T, F] after ``state``; return the steps that became final (the pending
    ones first, then the batch's own, all but its last ``future``) and the state to carry on.

    ``score_fn(x) -> (scores [T], contributions [T, F])``: the detector's
    `score_and_contributions` (after the scaler, where the rows are raw)."""
    batch = np.asarray(batch, dtype=np.float64).reshape(-1, state.rows.shape[1])
    x = np.concatenate([state.rows, batch]) if len(state.rows) else batch
    done = len(state.rows) - state.pending  # context: scored in an earlier batch
    end = len(x) - future  # steps before this have every step their score reads
    if end <= done or len(x) < past + future + 1:
        nothing = StreamScores(np.empty(0), np.empty((0, x.shape[1])))
        return nothing, StreamState(x[max(0, done - past) :], len(x) - done)
    scores, contrib = score_fn(x)
    final = StreamScores(np.asarray(scores[done:end]), np.asarray(contrib[done:end]))
    keep = max(0, end - past)
    return final, StreamState(x[keep:], len(x) - end)
