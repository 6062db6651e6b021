"""A seeded simulator of a three-tier web service, the embedded default of SLO prediction.

Clients send browse and bid requests (75/25) as a Poisson process whose rate drifts slowly.
The web server is one processor-sharing queue: a request of CPU demand ``x`` takes
``x / (1 - rho)`` seconds at utilisation ``rho``, plus the wait behind any backlog once demand
exceeds capacity. Two kinds of fault can be injected:

- a CPU hog takes a share of the CPU that grows linearly from nothing until the requests'
  demand no longer fits (``onset`` seconds after injection, 25-40 s by default), stays a few
  seconds more, and is then killed; response times blow up near the onset: the SLO breaks.
- a memory leak fills memory to 95-100 % and is then freed; response times do not change,
  so a predictor that raises alarms on it is wrong.

Everything is drawn from one ``numpy`` generator, so a seed gives the same messages anywhere.
Messages carry their event time (``ts``: when the second was measured, when a response ended)
and are ordered by when they reach the broker (``arrival``: event time plus a delivery delay,
a few of them late by seconds), which is the order a producer sends them in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CPU_HOG = "cpu_hog"
MEMORY_LEAK = "memory_leak"


@dataclass(frozen=True)
class Injection:
    kind: str  # CPU_HOG | MEMORY_LEAK
    start: int  # first second of the fault
    end: int  # first second after it
    onset: int | None = None  # CPU hog: the second its demand no longer fits


@dataclass
class Workload:
    stats: pd.DataFrame  # ts, arrival, cpu, mem: one row per second (percent)
    responses: pd.DataFrame  # ts, arrival, rt, kind: one row per request (seconds)
    injections: list[Injection]
    duration: int  # seconds


def _spread(rng, lengths: list[int], begin: int, end: int, what: str) -> list[int]:
    """Start times for windows of ``lengths`` in [begin, end), in order, never overlapping,
    at least 5 s apart, the spare time spread over the gaps at random."""
    spare = end - begin - sum(lengths) - 5 * len(lengths)
    if spare < 0:
        raise ValueError(
            f"{len(lengths)} {what} of {sum(lengths)} s in all do not fit in {end - begin} s with 5 s "
            f"between them: fewer injections or a longer run"
        )
    gaps = rng.dirichlet(np.ones(len(lengths) + 1)) * spare
    starts, t = [], float(begin)
    for length, gap in zip(lengths, gaps[:-1]):
        starts.append(int(t + gap + 5))
        t = starts[-1] + length
    return starts


def _schedule(rng, duration, n_cpu_hogs, n_memory_leaks, hog_onset, hog_hold, leak_seconds, warmup):
    """CPU hogs never overlap one another, nor do leaks; a leak may run during a hog, as two
    unrelated faults do (a dense schedule of 50 faults in 30 minutes leaves no room otherwise)."""
    onsets = [int(rng.integers(hog_onset[0], hog_onset[1] + 1)) for _ in range(n_cpu_hogs)]
    hog_len = [o + int(rng.integers(hog_hold[0], hog_hold[1] + 1)) for o in onsets]
    leak_len = [int(rng.integers(leak_seconds[0], leak_seconds[1] + 1)) for _ in range(n_memory_leaks)]
    hogs = [
        Injection(CPU_HOG, s, s + n, s + o)
        for s, n, o in zip(_spread(rng, hog_len, warmup, duration, "CPU hogs"), hog_len, onsets)
    ]
    leaks = [
        Injection(MEMORY_LEAK, s, s + n)
        for s, n in zip(_spread(rng, leak_len, warmup, duration, "memory leaks"), leak_len)
    ]
    return sorted(hogs + leaks, key=lambda i: i.start)


def simulate_workload(
    seed: int = 0,
    duration: int = 1800,
    n_cpu_hogs: int = 15,
    n_memory_leaks: int = 35,
    request_rate: float = 50.0,
    browse_share: float = 0.75,
    browse_cpu: float = 0.008,
    bid_cpu: float = 0.020,
    hog_onset: tuple[int, int] = (25, 40),
    hog_hold: tuple[int, int] = (2, 6),
    leak_seconds: tuple[int, int] = (20, 45),
    warmup: int = 60,
    late_share: float = 0.01,
) -> Workload:
    """``duration`` seconds of the service with the faults injected at random, seeded times.
    ``request_rate`` (requests per second) scales the message rate; the CPU demand per request
    scales down with it so the server runs at the same utilisation (about 55 %)."""
    rng = np.random.default_rng(seed)
    injections = _schedule(rng, duration, n_cpu_hogs, n_memory_leaks, hog_onset, hog_hold, leak_seconds, warmup)
    t = np.arange(duration)
    scale = 50.0 / request_rate  # the same utilisation at any message rate
    # Load drifts: a slow daily-like wave and an AR(1) wobble, so CPU alone is no give-away.
    wobble = np.zeros(duration)
    for i in range(1, duration):
        wobble[i] = 0.98 * wobble[i - 1] + rng.normal(0, 0.01)
    rate = request_rate * (1 + 0.15 * np.sin(2 * np.pi * t / 600 + rng.uniform(0, 2 * np.pi)) + wobble)
    rate = np.clip(rate, 0.2 * request_rate, None)
    mean_demand = browse_share * browse_cpu + (1 - browse_share) * bid_cpu
    demand = rate * mean_demand * scale  # CPU-seconds asked for per second (1.0 = the whole server)
    hog = np.zeros(duration)
    leak = np.zeros(duration)
    for inj in injections:
        span = np.arange(inj.start, inj.end)
        if inj.kind == CPU_HOG:
            # grows so that the requests' demand meets what is left of the CPU at the onset
            needed = 1.0 - demand[inj.onset]
            hog[span] = needed * (span - inj.start + 1) / (inj.onset - inj.start)
        else:
            top = rng.uniform(0.95, 1.0)
            leak[span] = (top - 0.42) * (span - inj.start + 1) / len(span)
    capacity = np.clip(1.0 - hog, 0.02, 1.0)
    backlog = np.zeros(duration)  # CPU-seconds of work queued beyond capacity
    for i in range(1, duration):
        backlog[i] = max(0.0, backlog[i - 1] + demand[i - 1] - capacity[i - 1])
    rho = np.minimum(demand / capacity, 0.985)

    cpu = np.clip(100 * np.minimum(1.0, demand + hog) + rng.normal(0, 1.5, duration), 0, 100)
    mem = np.clip(100 * (0.40 + 0.02 * (rate / request_rate - 1) + leak) + rng.normal(0, 0.5, duration), 0, 100)
    stats_ts = t + 0.5  # measured in the middle of each second
    stats = pd.DataFrame(
        {"ts": stats_ts, "arrival": stats_ts + _delays(rng, duration, late_share), "cpu": cpu, "mem": mem}
    )

    counts = rng.poisson(rate)
    sec = np.repeat(t, counts)
    n = len(sec)
    browse = rng.random(n) < browse_share
    size = rng.exponential(np.where(browse, browse_cpu, bid_cpu) * scale)
    start = sec + rng.random(n)
    rt = 0.002 + size / (1 - rho[sec]) + backlog[sec] / capacity[sec]
    done = start + rt
    keep = done < duration  # a response that ends after the run is never measured
    responses = pd.DataFrame(
        {
            "ts": done[keep],
            "arrival": done[keep] + _delays(rng, int(keep.sum()), late_share),
            "rt": rt[keep],
            "kind": np.where(browse[keep], "browse", "bid"),
        }
    )
    stats = stats.sort_values("arrival", kind="stable", ignore_index=True)
    responses = responses.sort_values("arrival", kind="stable", ignore_index=True)
    return Workload(stats, responses, injections, duration)


def _delays(rng, n: int, late_share: float) -> np.ndarray:
    """Delivery delays: mostly tens of milliseconds, ``late_share`` of them 1-3 s."""
    d = rng.exponential(0.05, n)
    late = rng.random(n) < late_share
    d[late] += rng.uniform(1.0, 3.0, late.sum())
    return d


def interleave(workload: Workload) -> list[tuple[str, dict]]:
    """Both streams as (topic, message) in arrival order: what the producers send, in order."""
    stats = workload.stats.assign(topic="stats")
    resp = workload.responses.assign(topic="responsetime")
    both = pd.concat([stats, resp], ignore_index=True).sort_values("arrival", kind="stable")
    out = []
    for row in both.itertuples(index=False):
        if row.topic == "stats":
            out.append(("stats", {"ts": round(row.ts, 3), "cpu": round(row.cpu, 2), "mem": round(row.mem, 2)}))
        else:
            out.append(("responsetime", {"ts": round(row.ts, 4), "rt": round(row.rt, 5), "kind": row.kind}))
    return out
