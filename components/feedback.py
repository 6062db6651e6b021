"""Operators' verdicts on incidents turned into labelled steps: what the next training run's
threshold search learns from (tasks/feedback.py writes them, tasks/data.py reads them).

A reviewed incident is exported with ``context`` steps either side, so that a threshold sees
the normal steps around it too; overlapping stretches merge into one segment. Each step gets:

- ``label`` 1 inside a *confirmed* incident; 0 inside a *false alarm* and in the context
  steps (the operator saw them and raised nothing); -1 (left out) inside an incident marked
  *expected* (planned work: real, but not an anomaly to alert on) or not reviewed;
- ``new_normal`` 1 inside an incident marked *new normal*: the system changed for good, so
  these steps join train at the next run and are left out of the threshold search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABEL = {"confirmed": 1, "false_alarm": 0, "expected": -1, "new_normal": -1}
UNREVIEWED = -1


@dataclass(frozen=True)
class Span:
    start: str  # first step's time, as the store writes it (fixed width: sorts as text)
    end: str  # last step's time
    verdict: str | None  # None: not reviewed


def labelled_segments(times: np.ndarray, spans: list[Span], context: int):
    """``times``: a series' step times, sorted. Returns the segments to export as (first, last
    + 1) row ranges, and per step the ``label`` and ``new_normal`` arrays (over all of
    ``times``; only the segments' rows are meant to be read)."""
    times = np.asarray(times)
    n = len(times)
    label = np.zeros(n, dtype=np.int8)
    new_normal = np.zeros(n, dtype=np.int8)
    windows = []
    for span in spans:
        a = int(np.searchsorted(times, span.start, side="left"))
        b = int(np.searchsorted(times, span.end, side="right"))
        if b <= a:
            continue  # none of its steps is stored (scored without keeping values, or pruned)
        label[a:b] = UNREVIEWED if span.verdict is None else LABEL[span.verdict]
        if span.verdict == "new_normal":
            new_normal[a:b] = 1
        if span.verdict is not None:
            windows.append((max(0, a - context), min(n, b + context)))
    segments: list[tuple[int, int]] = []
    for a, b in sorted(windows):
        if segments and a <= segments[-1][1]:
            segments[-1] = (segments[-1][0], max(segments[-1][1], b))
        else:
            segments.append((a, b))
    return segments, label, new_normal
