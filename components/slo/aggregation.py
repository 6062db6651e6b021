"""Per-second aggregation of the ``stats`` and ``responsetime`` streams, by event time.

A message belongs to the second its event time falls in. Each input partition has its own
watermark, the latest event time read from it; a message more than ``grace`` seconds behind
its own partition's watermark (its second closed there) is late: counted, never folded in.
Second ``s`` is emitted once every partition has closed it, in order, each second once, empty
ones included (no request ended in them).

Judging lateness within a partition makes the records a function of each partition's message
sequence, whichever way a consumer interleaves the partitions: a consumer that reads a
thousand ``responsetime`` messages ahead of ``stats`` loses nothing (one watermark for all
would call the lagging ``stats`` late). It also makes a restart exact: after the last record a
broker holds (second ``s``), `Aggregator.resume` starts with ``s`` emitted and every partition
at the least watermark that closes it, and each partition is read again from the offset
`low_water` gave when that record was emitted (or an earlier one). What it reads again of
seconds up to ``s`` the first run had folded into records it emitted, or dropped as late; what
it reads of later seconds is judged against the same earlier messages of its partition as the
first time (those before the restart offset are all older than ``s + 1``).

Every partition must carry messages (``stats`` arrive each second): an idle one holds every
second open.

Event times come from outside: with ``max_skew`` set, a message stamped more than that many
seconds after the latest watermark of any partition (or after the wall clock, where the caller
gives it) is set aside (`too_far_ahead`, `set_aside`): counted, never folded in, never moving a
watermark, so one message stamped in the year 2100 neither makes every later message late nor
fills the seconds between with empty records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

RECORD_FIELDS = ("second", "n", "rt_mean", "rt_max", "cpu", "mem", "violation")


@dataclass
class _Bucket:
    n: int = 0
    rt_sum: float = 0.0
    rt_max: float = 0.0
    n_stats: int = 0
    cpu_sum: float = 0.0
    mem_sum: float = 0.0
    first_offset: dict = field(default_factory=dict)  # partition -> least offset of a message in it


def closed_through(watermark: float, grace: float) -> float:
    """The last second closed under ``watermark``: every second up to it has ended ``grace``
    seconds before the latest event time read."""
    return -math.inf if watermark == -math.inf else math.floor(watermark - grace) - 1


class Aggregator:
    """`add_response` / `add_stats` fold one message of input ``partition`` in and return the
    records it closed. ``partitions``: every input partition (any hashable names)."""

    def __init__(
        self,
        rt_limit: float,
        grace: float,
        partitions: list,
        last_emitted: int | None = None,
        max_skew: float | None = None,
    ):
        self.rt_limit = rt_limit
        self.grace = grace
        self.max_skew = max_skew
        self.ahead = 0  # messages set aside: stamped too far ahead
        self.last_emitted = last_emitted  # the last second emitted, None before the first
        # per partition: the latest event time read; after a restart, the least that closes last_emitted
        start = -math.inf if last_emitted is None else last_emitted + 1 + grace
        self.watermarks = {p: start for p in partitions}
        self.late = 0  # messages dropped because their second had closed in their partition
        self._buckets: dict[int, _Bucket] = {}
        self._next_offset: dict = {}  # partition -> offset after the last message read from it

    @classmethod
    def resume(
        cls, rt_limit: float, grace: float, partitions: list, last_record: dict | None, max_skew: float | None = None
    ) -> Aggregator:
        """The state right after ``last_record`` was emitted (None: from the start)."""
        last = None if last_record is None else int(last_record["second"])
        return cls(rt_limit, grace, partitions, last, max_skew)

    def too_far_ahead(self, ts: float, now: float | None = None) -> bool:
        """Whether event time ``ts`` lies more than ``max_skew`` seconds after every watermark
        read so far, or after ``now`` (the wall clock, in the same seconds)."""
        if self.max_skew is None:
            return False
        known = [w for w in self.watermarks.values() if w != -math.inf]
        return bool(known and ts > max(known) + self.max_skew) or (now is not None and ts > now + self.max_skew)

    def set_aside(self, partition, offset: int | None = None, ahead: bool = False) -> None:
        """A message of ``partition`` not folded in (``ahead``: stamped too far ahead, counted;
        else unreadable), and read past: its offset is not read again after a restart."""
        self.ahead += int(ahead)
        if offset is not None:
            self._next_offset[partition] = offset + 1

    def _bucket(self, ts: float, partition, offset: int | None) -> _Bucket | None:
        if offset is not None:
            self._next_offset[partition] = offset + 1
        sec = math.floor(ts)
        if sec <= closed_through(self.watermarks[partition], self.grace) or (
            self.last_emitted is not None and sec <= self.last_emitted
        ):
            self.late += 1
            return None
        b = self._buckets.get(sec)
        if b is None:
            b = self._buckets[sec] = _Bucket()
        if offset is not None and partition not in b.first_offset:
            b.first_offset[partition] = offset
        return b

    def add_response(self, ts: float, rt: float, partition, offset: int | None = None) -> list[dict]:
        b = self._bucket(ts, partition, offset)
        if b is None:
            return []
        b.n += 1
        b.rt_sum += rt
        if rt > b.rt_max:
            b.rt_max = rt
        return self._advance(partition, ts)

    def add_stats(self, ts: float, cpu: float, mem: float, partition, offset: int | None = None) -> list[dict]:
        b = self._bucket(ts, partition, offset)
        if b is None:
            return []
        b.n_stats += 1
        b.cpu_sum += cpu
        b.mem_sum += mem
        return self._advance(partition, ts)

    def _advance(self, partition, ts: float) -> list[dict]:
        """Move ``partition``'s watermark to ``ts`` and emit the seconds every partition has
        closed, in order."""
        if ts <= self.watermarks[partition]:
            return []
        self.watermarks[partition] = ts
        through = closed_through(min(self.watermarks.values()), self.grace)
        if not self._buckets and self.last_emitted is None:
            return []
        s = self.last_emitted + 1 if self.last_emitted is not None else min(self._buckets)
        out = []
        while s <= through:
            b = self._buckets.pop(s, None) or _Bucket()
            out.append(
                {
                    "second": s,
                    "n": b.n,
                    "rt_mean": b.rt_sum / b.n if b.n else None,
                    "rt_max": b.rt_max if b.n else None,
                    "cpu": b.cpu_sum / b.n_stats if b.n_stats else None,
                    "mem": b.mem_sum / b.n_stats if b.n_stats else None,
                    "violation": bool(b.n and b.rt_max > self.rt_limit),
                }
            )
            self.last_emitted = s
            s += 1
        return out

    def low_water(self) -> dict:
        """Per input partition, the offset to read again from after a restart: the first
        message of a still-open second, or the next unread one where no open second holds any."""
        out = dict(self._next_offset)
        for b in self._buckets.values():
            for p, off in b.first_offset.items():
                if off < out.get(p, math.inf):
                    out[p] = off
        return out


def partition_of(m: dict, partitions: int) -> int:
    """The partition a message goes to: by its second, so each partition stays in event order
    as much as its producer's."""
    return int(m["ts"]) % partitions


def aggregate_messages(
    messages, rt_limit: float, grace: float, partitions: int = 1, max_skew: float | None = None
) -> list[dict]:
    """The records of a whole sequence of (stream, message) sent to topics of ``partitions``
    partitions each: the offline reference the streaming aggregator must equal, and how a
    recorded run becomes training data."""
    keys = [(s, p) for s in ("stats", "responsetime") for p in range(partitions)]
    agg = Aggregator(rt_limit, grace, keys, max_skew=max_skew)
    out = []
    for stream, m in messages:
        key = (stream, partition_of(m, partitions))
        if agg.too_far_ahead(m["ts"]):
            agg.set_aside(key, ahead=True)
            continue
        if stream == "responsetime":
            out += agg.add_response(m["ts"], m["rt"], key)
        else:
            out += agg.add_stats(m["ts"], m["cpu"], m["mem"], key)
    return out
