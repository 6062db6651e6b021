"""Seeded synthetic server telemetry: the embedded default that needs no download.

Metrics come in groups (CPU, memory, disk, network, service) that share a latent load with a
daily cycle, so metrics within a group are correlated, as on a real machine. The test part
holds labelled anomalies of five kinds, each with the metrics behind it:

- ``spike``: 1-3 steps far off on one metric;
- ``level_shift``: one metric jumps to a new level for a while;
- ``drift``: one metric ramps away and back (a slow leak);
- ``variance_burst``: one metric turns noisy;
- ``correlated_fault``: every metric of one group moves together (a failing disk, a saturated NIC).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Anomaly, Dataset, labels_from_ranges

# (name, group, base level, load loading, noise) per metric; units loosely percent / rates.
_METRICS = [
    ("cpu_user", "cpu", 30.0, 20.0, 2.0),
    ("cpu_system", "cpu", 8.0, 5.0, 0.8),
    ("load_1m", "cpu", 2.0, 1.5, 0.2),
    ("mem_used", "mem", 55.0, 10.0, 1.0),
    ("mem_cache", "mem", 20.0, -6.0, 0.8),
    ("disk_read", "disk", 40.0, 25.0, 4.0),
    ("disk_write", "disk", 30.0, 18.0, 3.0),
    ("disk_util", "disk", 25.0, 15.0, 2.0),
    ("net_in", "net", 100.0, 60.0, 8.0),
    ("net_out", "net", 80.0, 50.0, 7.0),
    ("tcp_conn", "net", 300.0, 150.0, 15.0),
    ("latency_ms", "service", 12.0, 6.0, 1.0),
]
KINDS = ("spike", "level_shift", "drift", "variance_burst", "correlated_fault")


def make_synthetic(
    seed: int = 0,
    n_train: int = 4000,
    n_test: int = 4000,
    n_metrics: int = 12,
    n_anomalies: int = 12,
    period: int = 288,
) -> Dataset:
    """Generate a labelled telemetry dataset; the same arguments give the same data.

    ``period`` is the daily cycle in steps (288 five-minute steps a day).
    """
    if n_metrics < 2:
        raise ValueError("n_metrics must be at least 2")
    if n_test < 20 * max(n_anomalies, 1):
        raise ValueError(f"n_test={n_test} is too short for {n_anomalies} anomalies (needs 20 steps each)")
    rng = np.random.default_rng(seed)
    specs = [_METRICS[i % len(_METRICS)] for i in range(n_metrics)]
    names = [s[0] if i < len(_METRICS) else f"{s[0]}_{i // len(_METRICS) + 1}" for i, s in enumerate(specs)]
    groups = [s[1] if i < len(_METRICS) else f"{s[1]}_{i // len(_METRICS) + 1}" for i, s in enumerate(specs)]
    group_names = list(dict.fromkeys(groups))
    n = n_train + n_test
    t = np.arange(n)

    # One latent load per group: daily cycle with its own phase, a weekly swell and AR(1) noise.
    latent = {}
    for g in group_names:
        phase = rng.uniform(0, 2 * np.pi)
        daily = 0.5 + 0.5 * np.sin(2 * np.pi * t / period + phase)
        weekly = 0.15 * np.sin(2 * np.pi * t / (7 * period) + rng.uniform(0, 2 * np.pi))
        ar = np.zeros(n)
        eps = rng.normal(0, 0.05, n)
        for i in range(1, n):
            ar[i] = 0.9 * ar[i - 1] + eps[i]
        latent[g] = daily + weekly + ar

    values = np.empty((n, n_metrics))
    for j, (_, _, base, loading, noise) in enumerate(specs):
        scale = rng.uniform(0.8, 1.2)
        values[:, j] = base + scale * loading * latent[groups[j]] + rng.normal(0, noise, n)
    sigma = values[:n_train].std(axis=0)

    test = values[n_train:]
    causes = plant_anomalies(test, sigma, groups, n_anomalies, rng)

    index = pd.date_range("2026-01-01", periods=n, freq="5min", name="timestamp")
    frame = pd.DataFrame(values, columns=names, index=index)
    return Dataset(
        name=f"synthetic/seed{seed}",
        train=frame.iloc[:n_train],
        test=frame.iloc[n_train:],
        labels=labels_from_ranges(n_test, [(a.start, a.end) for a in causes]),
        causes=causes,
        features=names,
    )


def plant_anomalies(
    x: np.ndarray, sigma: np.ndarray, groups: list, n_anomalies: int, rng: np.random.Generator
) -> list[Anomaly]:
    """Add ``n_anomalies`` anomalies of the five kinds, in turn, to ``x`` [T, F] in place, one
    in each of ``n_anomalies`` equal slots; returns where each is and which metrics it moved.

    Sizes are in units of ``sigma``, each metric's spread on normal data. ``groups`` names
    each metric's group (metrics that move together; a correlated fault moves a whole group);
    a metric whose group is None is never touched (a constant one, say, where sigma says
    nothing). The generator plants its test anomalies with this, and the label-free tuning
    objective plants the same kinds into held-out normal train (`components/tuning.py`).
    """
    n_steps, n_metrics = x.shape
    eligible = [j for j in range(n_metrics) if groups[j] is not None]
    group_names = list(dict.fromkeys(groups[j] for j in eligible))
    if not eligible:
        raise ValueError("no metric varies: there is nothing to plant anomalies in")
    causes: list[Anomaly] = []
    slot = n_steps // max(n_anomalies, 1)
    for k in range(n_anomalies):
        kind = KINDS[k % len(KINDS)]
        length = {
            "spike": int(rng.integers(1, 4)),
            "level_shift": int(rng.integers(15, 45)),
            "drift": int(rng.integers(30, 70)),
            "variance_burst": int(rng.integers(15, 45)),
            "correlated_fault": int(rng.integers(20, 60)),
        }[kind]
        length = min(length, slot // 2)
        start = k * slot + int(rng.integers(slot // 4, slot - length))
        end = start + length
        if kind == "correlated_fault":
            g = group_names[int(rng.integers(len(group_names)))]
            metrics = [j for j in eligible if groups[j] == g]
            if len(metrics) < 2 and len(eligible) > 1:  # a fault that spreads needs company: the next metric too
                nxt = eligible[(eligible.index(metrics[0]) + 1) % len(eligible)]
                metrics = sorted({metrics[0], nxt})
        else:
            metrics = [eligible[int(rng.integers(len(eligible)))]]
        sign = rng.choice([-1.0, 1.0])
        for j in metrics:
            s = sigma[j]
            if kind == "spike":
                x[start:end, j] += sign * rng.uniform(6, 10) * s
            elif kind == "level_shift":
                x[start:end, j] += sign * rng.uniform(3, 5) * s
            elif kind == "drift":
                ramp = np.sin(np.linspace(0, np.pi, length))  # away and back
                x[start:end, j] += sign * rng.uniform(3, 5) * s * ramp
            elif kind == "variance_burst":
                x[start:end, j] += rng.normal(0, rng.uniform(3, 5) * s, length)
            else:
                x[start:end, j] += rng.uniform(3, 5) * s
        causes.append(Anomaly(start, end, tuple(metrics)))
    return causes


def anomaly_kinds(n_anomalies: int) -> list[str]:
    """The kind of each anomaly `make_synthetic` plants, in order."""
    return [KINDS[k % len(KINDS)] for k in range(n_anomalies)]
