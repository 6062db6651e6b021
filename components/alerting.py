"""From scores to what an operator sees: smoothing, the threshold, and incidents.

A detector's raw scores flicker: one anomaly crosses the threshold, dips under it, crosses
again, and an operator gets six incidents for it. Everything after the raw score is one
`AlertRule`, chosen on validation with the model and carried with it, so evaluation, the
served model, `vigil score` and the live page apply the same rule:

1. the scores are smoothed over a trailing window (``mean``, ``ewma`` or ``max`` of the last
   ``window`` raw scores; causal, so a stream needs only the last ``window - 1`` raw scores);
2. a step is flagged where the smoothed score is at or over ``threshold``;
3. flagged steps separated by fewer than ``merge_gap`` unflagged steps are one incident; an
   incident shorter than ``min_steps`` (first to last flagged step) is kept as points but not
   raised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .datasets.base import ranges_from_labels

SMOOTHING = ("none", "mean", "ewma", "max")
# ewma: each weight halves every window / EWMA_HALVINGS steps, so the oldest of the window's
# scores weighs about 1/16 of the newest; cut at the window, a stream stays exact batch by batch
EWMA_HALVINGS = 4
# the threshold rules (`components.evaluation.THRESHOLD_RULES` holds their functions): name -> reads labels
RULES_NEED_LABELS = {
    "best_f1": True,
    "best_event_f1": True,
    "pot_train": False,
    "pot_validation": False,
    "dynamic": False,
    "gauss_tail": False,
}


def smooth(scores: np.ndarray, kind: str, window: int, past: np.ndarray | None = None) -> np.ndarray:
    """The trailing ``kind`` of the last ``window`` raw scores at each step. ``past``: the raw
    scores just before ``scores`` (a stream's last ``window - 1``); without them the first steps
    use the scores there are."""
    s = np.asarray(scores, dtype=np.float64)
    if kind == "none" or window <= 1 or s.size == 0:
        return s.copy()
    if kind not in SMOOTHING:
        raise ValueError(f"smoothing must be one of {SMOOTHING}, got {kind!r}")
    head = np.asarray(past if past is not None else [], dtype=np.float64)[-(window - 1) :]
    x = np.concatenate([head, s])
    n_head = len(head)
    if kind == "mean":
        c = np.concatenate([[0.0], np.cumsum(x)])
        i = np.arange(n_head, len(x))
        lo = np.maximum(0, i - window + 1)
        return (c[i + 1] - c[lo]) / (i + 1 - lo)
    if kind == "ewma":
        # weights of the newest .. oldest score of the window, normalised over the scores there are
        w = 0.5 ** (np.arange(window) * EWMA_HALVINGS / window)
        total = np.convolve(x, w)[: len(x)]
        weight = np.cumsum(w)[np.minimum(np.arange(len(x)), window - 1)]  # the weights of the scores there are
        return (total / weight)[n_head:]
    # max: pad the front with -inf so every step has a full window, then a sliding max
    padded = np.concatenate([np.full(window - 1, -np.inf), x])
    return np.lib.stride_tricks.sliding_window_view(padded, window).max(axis=1)[n_head:]


@dataclass(frozen=True)
class AlertSettings:
    """How a model's `AlertRule` is chosen (params ``threshold`` and ``incidents``).

    ``method``: ``nested`` picks, per series, the (rule, smoothing) pair among ``rules`` x
    ``smoothing`` whose threshold, set on one half of the validation head, gives the best
    point F1 on the other half (both ways where both halves hold labels: two-fold
    time-series cross-validation), then sets that pair's threshold on the whole head; where
    the halves cannot both be labelled, ``fallback`` is used; where the head holds no label,
    ``label_free``. Any rule name instead forces that rule, with ``fallback``'s smoothing
    where it needs labels and ``label_free``'s where it does not.
    """

    method: str = "nested"
    rules: tuple[str, ...] = ("best_f1", "best_event_f1", "pot_train", "dynamic", "gauss_tail")
    smoothing: tuple[tuple[str, int], ...] = (("none", 1), ("mean", 20), ("ewma", 20), ("max", 20), ("max", 50))
    fallback: tuple[str, str, int] = ("best_f1", "max", 100)
    label_free: tuple[str, str, int] = ("pot_train", "max", 50)
    pot_q: float = 1e-3
    pot_level: float = 0.98
    tail_p: float = 1e-3
    merge_gap: int = 50
    min_steps: int = 2


@dataclass(frozen=True)
class Incident:
    """Flagged steps ``start`` .. ``end`` (inclusive; unflagged gaps shorter than the merge gap
    inside), ``flagged`` of them, the highest smoothed score ``peak``; ``raised``: long enough
    to alert on (else its steps are kept as flagged points only)."""

    start: int
    end: int
    flagged: int
    peak: float
    raised: bool

    @property
    def steps(self) -> int:
        return self.end - self.start + 1


def group_incidents(flags: np.ndarray, scores: np.ndarray, merge_gap: int, min_steps: int) -> list[Incident]:
    """Incidents of a whole series (`AlertRule.incidents`; the store groups a stream with the
    same rule batch by batch, `tasks.alerts.write_steps`)."""
    idx = np.flatnonzero(np.asarray(flags, dtype=bool))
    if idx.size == 0:
        return []
    # a new incident starts where more than merge_gap - 1 unflagged steps separate two flags
    breaks = np.flatnonzero(np.diff(idx) - 1 >= merge_gap) + 1
    out = []
    for part in np.split(idx, breaks):
        a, b = int(part[0]), int(part[-1])
        out.append(Incident(a, b, len(part), float(np.max(scores[part])), b - a + 1 >= min_steps))
    return out


@dataclass(frozen=True)
class AlertRule:
    """Smoothing, threshold and incident rule of a model (module docstring). ``rule`` says how
    the threshold was chosen and on which split; ``detail`` gives its figures and why."""

    threshold: float
    smoothing: str = "none"
    window: int = 1
    merge_gap: int = 1
    min_steps: int = 1
    rule: str = ""
    label_free: bool = False
    detail: str = ""

    def __post_init__(self):
        problems = check_rule(asdict(self))
        if problems:
            raise ValueError("alert rule: " + "; ".join(problems))

    @property
    def value(self) -> float:  # the threshold, as `evaluation.Threshold` names it
        return self.threshold

    def smoothed(self, raw: np.ndarray, past: np.ndarray | None = None) -> np.ndarray:
        return smooth(raw, self.smoothing, self.window, past)

    def flags(self, raw: np.ndarray, past: np.ndarray | None = None) -> np.ndarray:
        return self.smoothed(raw, past) >= self.threshold

    def incidents(self, raw: np.ndarray, past: np.ndarray | None = None) -> list[Incident]:
        s = self.smoothed(raw, past)
        return group_incidents(s >= self.threshold, s, self.merge_gap, self.min_steps)

    @property
    def past_steps(self) -> int:
        """Raw scores a stream carries between batches for the smoothing."""
        return self.window - 1 if self.smoothing != "none" else 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AlertRule:
        """A rule as `to_dict` wrote it; a model saved before rules existed holds only its
        threshold (``{"threshold": t}``), which reads as no smoothing and no merging."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"alert rule: unknown field(s) {unknown}")
        return cls(**d)


def check_rule(d: dict) -> list[str]:
    """What is wrong with an alert rule's fields (read from a model's metadata or params)."""
    problems = []
    t = d.get("threshold")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        problems.append(f"threshold must be a finite number, got {t!r}")
    if d.get("smoothing", "none") not in SMOOTHING:
        problems.append(f"smoothing must be one of {SMOOTHING}, got {d.get('smoothing')!r}")
    for key in ("window", "merge_gap", "min_steps"):
        v = d.get(key, 1)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100_000:
            problems.append(f"{key} must be an integer in [1, 100000], got {v!r}")
    return problems


# --- incident quality: what an operator counts -------------------------------------------


@dataclass
class IncidentQuality:
    """Raised incidents against the labelled events of a split.

    ``incidents_per_event``: raised incidents that overlap an event, per event they detect
    (1 is ideal; 6 means one anomaly paged six times); ``false_per_day``: raised incidents
    that overlap no event, per day of the split; ``event_recall``: events overlapped by a
    raised incident; ``event_precision``: raised incidents that overlap an event (telemanom's
    event-wise precision); ``time_to_detect``: mean steps from an event's first step to the
    first step of its first raised incident (0 where the incident began before it)."""

    events: int
    incidents: int
    false: int
    incidents_per_event: float
    false_per_day: float
    event_recall: float
    event_precision: float
    time_to_detect: float
    detected: int = 0

    def figures(self) -> dict[str, float]:
        return {
            "incidents_per_event": self.incidents_per_event,
            "false_incidents_per_day": self.false_per_day,
            "incident_event_recall": self.event_recall,
            "incident_event_precision": self.event_precision,
            "time_to_detect_steps": self.time_to_detect,
        }


def incident_quality(labels: np.ndarray, incidents: Sequence[Incident], steps_per_day: float) -> IncidentQuality:
    events = ranges_from_labels(np.asarray(labels))  # half-open [a, b)
    raised = [i for i in incidents if i.raised]
    days = len(labels) / steps_per_day if steps_per_day > 0 else math.nan
    on_event, detect = 0, {}
    for inc in raised:
        hit = [k for k, (a, b) in enumerate(events) if inc.start < b and inc.end >= a]
        on_event += bool(hit)
        for k in hit:
            a = events[k][0]
            detect[k] = min(detect.get(k, math.inf), max(0, inc.start - a))
    false = len(raised) - on_event
    # each incident counted once, even where it spans two events
    per_event = on_event / len(detect) if detect else math.nan
    return IncidentQuality(
        events=len(events),
        incidents=len(raised),
        false=false,
        incidents_per_event=per_event,
        false_per_day=false / days if days and days > 0 else math.nan,
        event_recall=len(detect) / len(events) if events else math.nan,
        event_precision=on_event / len(raised) if raised else math.nan,
        time_to_detect=float(np.mean(list(detect.values()))) if detect else math.nan,
        detected=len(detect),
    )


# --- the same incident rule on a stream, batch by batch ------------------------------------


@dataclass
class StreamGroup:
    """Flagged steps of one batch that belong to one incident: their positions ``flagged``,
    whether they continue the incident the last batch left open, and the incident's span
    (first to last flagged step, in steps) once they are added."""

    flagged: np.ndarray
    continued: bool
    span: int


@dataclass
class AlertCarry:
    """What a stream carries between batches for its alert rule: the last raw scores (the
    smoothing reads them); for the incident left open, the unflagged steps since its last
    flagged step (``quiet``) and its span so far. ``quiet`` None: no incident is open."""

    past: list[float] = field(default_factory=list)
    quiet: int | None = None
    span: int = 0

    def to_json(self) -> dict:
        return {"past": [float(x) for x in self.past], "quiet": self.quiet, "span": int(self.span)}

    @classmethod
    def from_json(cls, obj: dict | None) -> AlertCarry:
        obj = obj or {}
        quiet = obj.get("quiet")
        return cls(
            [float(x) for x in obj.get("past") or []], None if quiet is None else int(quiet), int(obj.get("span", 0))
        )

    def advance(self, raw: np.ndarray, rule: AlertRule) -> tuple[np.ndarray, np.ndarray, list[StreamGroup], AlertCarry]:
        """One batch of raw scores: its alert scores, flags, incident groups, and the carry for
        the next batch. Over any split into batches, the groups join into the incidents
        `AlertRule.incidents` finds on the whole stream."""
        raw = np.asarray(raw, dtype=np.float64)
        alert = rule.smoothed(raw, np.asarray(self.past) if self.past else None)
        flags = alert >= rule.threshold
        idx = np.flatnonzero(flags)
        past = (list(self.past) + raw.tolist())[-rule.past_steps :] if rule.past_steps else []
        groups: list[StreamGroup] = []
        if idx.size == 0:
            quiet = None if self.quiet is None or self.quiet + len(raw) >= rule.merge_gap else self.quiet + len(raw)
            return alert, flags, groups, AlertCarry(past, quiet, self.span if quiet is not None else 0)
        breaks = np.flatnonzero(np.diff(idx) - 1 >= rule.merge_gap) + 1
        for k, part in enumerate(np.split(idx, breaks)):
            cont = k == 0 and self.quiet is not None and self.quiet + int(part[0]) < rule.merge_gap
            span = int(part[-1] - part[0] + 1) + (self.span + self.quiet + int(part[0]) if cont else 0)
            groups.append(StreamGroup(part, cont, span))
        quiet = len(raw) - 1 - int(idx[-1])
        open_ = quiet < rule.merge_gap
        return alert, flags, groups, AlertCarry(past, quiet if open_ else None, groups[-1].span if open_ else 0)
