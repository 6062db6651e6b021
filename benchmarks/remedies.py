"""Remedy ranking learned from feedback against fixed orders, on a simulated operator
(components/remedy_simulation.py): 1,000 incidents of Vigil's own telemetry kinds, each kind
with a true best remedy, noisy outcomes, and feedback that is sometimes missing or wrong.

For each ranker in params.yaml's catalogue setting (``remedies``), averaged over seeds (each
seed a new sequence of incidents and luck, the same for every ranker):

- cumulative regret (expected reward of the best applicable remedy less that of the one
  ranked first) after 250, 500 and 1,000 incidents;
- NDCG@3 of the ranking against the true expected rewards, per window of 100 incidents;
- mean time to resolution (minutes; failed attempts and escalation included), and its ratio
  to catalogue order's on the same first and last 200 incidents; the share resolved by a
  proposed remedy.

Then what serving costs, on a scratch SQLite store and MLflow store: ``--store`` verdicts
recorded (one transaction each, with the audit row), the ranker fitted from the store,
registered (a new digest), loaded again (the same digest: no new version), and one incident
ranked with its reasons.

    .venv/bin/python benchmarks/remedies.py                 # 1,000 incidents, seeds 0-4; 1,000 verdicts
    .venv/bin/python benchmarks/remedies.py --incidents 2000 --seeds 10 --store 5000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.remedies import get_ranker  # noqa: E402
from components.remedy_simulation import SimulationConfig, default_world, generate_incidents, simulate  # noqa: E402
from tasks.remedies import remedy_settings  # noqa: E402
from vigil.config import load_config  # noqa: E402

POLICIES = ("linucb", "thompson", "success_rate", "catalogue_order", "random")


def run(n_incidents: int, seeds: int, window: int) -> dict:
    settings = remedy_settings(load_config(REPO / "params.yaml").remedies, REPO)
    catalogue = list(settings.catalogue)
    out = {}
    for name in POLICIES:
        params = settings.ranker_params if name == settings.ranker else {}
        runs, seconds = [], 0.0
        for seed in range(seeds):
            cfg = SimulationConfig(n_incidents=n_incidents, seed=seed, time_scale=settings.time_scale, dim=settings.dim)
            incidents = generate_incidents(default_world(), cfg)
            t0 = time.perf_counter()
            runs.append(simulate(get_ranker(name, **params), catalogue, incidents, cfg))
            seconds += time.perf_counter() - t0
        out[name] = {"runs": runs, "seconds": seconds / seeds}
    return out


def mean_sd(values) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def report(results: dict, n_incidents: int, seeds: int, window: int) -> str:
    marks = sorted({m for m in (250, 500, 1000, n_incidents) if m <= n_incidents})
    lines = [
        f"simulated operator: {n_incidents} incidents, {seeds} seed(s); mean ± sd over seeds",
        "",
        "| ranker | " + " | ".join(f"regret @{m}" for m in marks) + " | NDCG@3 first / last "
        f"{window} | MTTR min (all) | MTTR / catalogue order's, first 200 / last 200 | resolved by a remedy "
        "| ms / incident |",
        "|---" * (len(marks) + 6) + "|",
    ]
    fixed = results["catalogue_order"]["runs"]

    def vs_fixed(runs, part: slice) -> float:  # the same incidents, the same luck: a paired ratio
        return float(np.mean([x["minutes"][part].mean() / f["minutes"][part].mean() for x, f in zip(runs, fixed)]))

    for name, r in results.items():
        runs = r["runs"]
        regret = " | ".join(mean_sd([x["regret"][:m].sum() for x in runs]) for m in marks)
        first = [x["ndcg3"][:window].mean() for x in runs]
        last = [x["ndcg3"][-window:].mean() for x in runs]
        lines.append(
            f"| {name} | {regret} | {np.mean(first):.3f} / {np.mean(last):.3f} | "
            f"{mean_sd([x['minutes'].mean() for x in runs])} | "
            f"{vs_fixed(runs, slice(0, 200)):.2f} / {vs_fixed(runs, slice(-200, None)):.2f} | "
            f"{np.mean([x['resolved'].mean() for x in runs]):.1%} | {1000 * r['seconds'] / n_incidents:.2f} |"
        )
    lines += ["", f"NDCG@3 per window of {window} incidents (mean over seeds):", ""]
    n_windows = n_incidents // window
    lines.append("| ranker | " + " | ".join(f"{(k + 1) * window}" for k in range(n_windows)) + " |")
    lines.append("|---" * (n_windows + 1) + "|")
    for name, r in results.items():
        per = np.mean(
            [[x["ndcg3"][k * window : (k + 1) * window].mean() for k in range(n_windows)] for x in r["runs"]], 0
        )
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in per) + " |")
    base = {n: np.mean([x["minutes"].mean() for x in results[n]["runs"]]) for n in results}
    learned = next(iter(results))
    lines += [
        "",
        f"{learned}: MTTR {base[learned]:.1f} min against catalogue order's {base['catalogue_order']:.1f} "
        f"({base[learned] / base['catalogue_order']:.2f}x) and random's {base['random']:.1f} "
        f"({base[learned] / base['random']:.2f}x)",
    ]
    return "\n".join(lines)


def store_overhead(n: int) -> str:
    import json
    import tempfile

    import sqlalchemy as sa

    from components.remedies import applicable
    from tasks.alerts import INCIDENTS, open_store, record_feedback
    from tasks.remedies import current_advisor, fit_advisor

    settings = remedy_settings(load_config(REPO / "params.yaml").remedies, REPO)
    folder = Path(tempfile.mkdtemp(prefix="vigil-remedies-"))
    engine = open_store(f"sqlite:///{folder / 'alerts.db'}")
    incidents = generate_incidents(default_world(), SimulationConfig(n_incidents=n))
    with engine.begin() as conn:
        for inc in incidents:
            c = inc.context
            row = {"source": "s", "start": f"2026-01-01T{int(c.hour):02d}:00:00.000000", "end": "-", "steps": 1,
                   "peak_score": 1 + c.margin, "threshold": 1.0, "detector": c.detector, "model": "m",
                   "version": "1", "top_metrics": json.dumps([list(t) for t in c.top_metrics])}  # fmt: skip
            conn.execute(sa.insert(INCIDENTS).values(**row))
        ids = [r[0] for r in conn.execute(sa.select(INCIDENTS.c.id).order_by(INCIDENTS.c.id))]
    rng = np.random.default_rng(0)
    lines = [f"serving, {n} incidents with one outcome each (SQLite alerts store, SQLite MLflow store):"]
    t = time.perf_counter()
    for i, inc in zip(ids, incidents):
        remedy = applicable(list(settings.catalogue), inc.context)[0]
        ok, minutes = bool(rng.random() < 0.6), float(rng.uniform(5, 60))
        record_feedback(engine, i, "confirmed", "bench", remedy=remedy, resolved=ok, minutes=minutes)
    lines.append(f"  {n} verdicts recorded: {1000 * (time.perf_counter() - t) / n:.2f} ms each")
    t = time.perf_counter()
    fit_advisor(engine, settings, "synthetic")
    lines.append(f"  ranker fitted from the store: {time.perf_counter() - t:.3f} s")
    tracking, artifacts = f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts"
    t = time.perf_counter()
    first = current_advisor(engine, tracking, artifacts, settings, "synthetic")
    lines.append(
        f"  fitted and registered as version {first.version} (a new MLflow store): {time.perf_counter() - t:.2f} s"
    )
    t = time.perf_counter()
    again = current_advisor(engine, tracking, artifacts, settings, "synthetic")
    lines.append(f"  the same feedback again: version {again.version} loaded, {time.perf_counter() - t:.2f} s")
    row = {"id": 1, "start": "2026-01-01T03:00:00.000000", "peak_score": 2.0, "threshold": 1.0, "detector": "pca",
           "top_metrics": [["cpu_user", 0.7], ["load_1m", 0.3]]}  # fmt: skip
    t = time.perf_counter()
    for _ in range(100):
        again.rank(row, "synthetic")
    lines.append(f"  one incident ranked with its reasons: {10 * (time.perf_counter() - t):.2f} ms")
    size = sum(p.stat().st_size for p in artifacts.rglob("ranker.json")) / len(list(artifacts.rglob("ranker.json")))
    lines.append(f"  ranker state artifact: {size / 1e6:.2f} MB")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--store", type=int, default=1000, help="verdicts for the serving figures (0: skip)")
    args = parser.parse_args()
    print(report(run(args.incidents, args.seeds, args.window), args.incidents, args.seeds, args.window))
    if args.store:
        print()
        print(store_overhead(args.store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
