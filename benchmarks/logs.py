"""Events featurised per second by each engine of `vigil logs`, and by the strict JSON reader.

- engines: ``--events`` synthetic billing (and transfer) events, drawn as the generators draw
  them but straight into Parquet (``--files`` files), featurised by DuckDB and by Spark
  ``local[N]`` with the format's one SQL text; each engine's tables are checked equal. Spark's
  session start-up is timed apart from its queries, and each query is run twice (the first
  pays the JVM's warm-up);
- reader: the generated default logs (``logs.*.generate``) read line by line into events,
  with every line's fate counted (`tasks/logs.read_logs`).

    .venv/bin/python benchmarks/logs.py                       # 10 million events, 2 threads / local[2]
    .venv/bin/python benchmarks/logs.py --events 1000000 --no-spark
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.logs.formats import LOG_FORMATS  # noqa: E402
from tasks.engines import featurise, normalise, run_spark, spark_session  # noqa: E402
from tasks.logs import read_logs  # noqa: E402

DAY_MS = 86_400_000


def billing_events(rng: np.random.Generator, n: int, t0: int, span_ms: int, pools: int) -> pd.DataFrame:
    pool = rng.integers(0, pools, n)
    size = np.exp(rng.normal(np.log(5e8), 1.0, n)).round()
    failed = rng.random(n) < 0.01
    return pd.DataFrame(
        {
            "t_ms": t0 + rng.integers(0, span_ms, n),
            "msg_type": pd.Categorical.from_codes(rng.choice(5, n, p=[0.5, 0.18, 0.22, 0.07, 0.03]),
                                                  ["store", "restore", "transfer", "request", "remove"]),
            "pool": pd.Categorical.from_codes(pool, [f"pool-{i + 1}" for i in range(pools)]),
            "file_size": size,
            "transfer_ms": (size / 1e5 * np.exp(rng.normal(0, 0.3, n))).round(),
            "queuing_ms": np.where(rng.random(n) < 0.4, rng.exponential(800, n).round(), 0.0),
            "status": np.where(failed, 666, 0),
        }
    )  # fmt: skip


def transfer_events(rng: np.random.Generator, n: int, t0: int, span_ms: int, links: int) -> pd.DataFrame:
    size = np.exp(rng.normal(np.log(1.5e9), 1.0, n)).round()
    submitted = t0 + rng.integers(0, span_ms, n)
    queue = rng.exponential(30, n)
    duration = 3 + size / 8e7 * np.exp(rng.normal(0, 0.3, n))
    started = submitted + (queue * 1000).astype(np.int64)
    return pd.DataFrame(
        {
            "ended_ms": started + (duration * 1000).astype(np.int64),
            "link": pd.Categorical.from_codes(rng.integers(0, links, n), [f"S{i}__D{i}" for i in range(links)]),
            "file_size": size,
            "activity": pd.Categorical.from_codes(rng.integers(0, 3, n), ["Production Output", "User", "T0 Export"]),
            "protocol": pd.Categorical.from_codes(rng.integers(0, 2, n), ["davs", "root"]),
            "submitted_ms": submitted,
            "started_ms": started,
            "duration_s": duration.round(3),
            "queue_s": queue.round(3),
            "failed": (rng.random(n) < 0.02).astype(np.int8),
        }
    )


MAKERS = {"dcache_billing": (billing_events, 50), "rucio_transfers": (transfer_events, 100)}


def write_events(folder: Path, log_format: str, n: int, files: int, days: int, seed: int) -> None:
    make, series = MAKERS[log_format]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    t0 = int(pd.Timestamp("2026-01-05", tz="UTC").value // 10**6)
    per_file = -(-n // files)
    for k in range(files):
        rows = min(per_file, n - k * per_file)
        make(rng, rows, t0, days * DAY_MS, series).to_parquet(folder / f"part-{k:05d}.parquet", index=False)


def timed(fn, repeat: int = 1) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--days", type=int, default=7, help="span of the events (bins of 60 s)")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads; Spark runs local[THREADS]")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--formats", nargs="+", default=list(MAKERS), choices=list(MAKERS))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="vigil-bench-logs-") as tmp:
        tmp = Path(tmp)
        for f in args.formats:
            t, _ = timed(lambda f=f: write_events(tmp / f, f, args.events, args.files, args.days, seed=0))
            print(f"{f}: {args.events:,} events written to {args.files} Parquet files in {t[0]:.1f} s", flush=True)
        duck = {}
        for f in args.formats:
            spec = LOG_FORMATS[f].features
            times, duck[f] = timed(
                lambda spec=spec, f=f: featurise(spec, tmp / f, 60, "duckdb", threads=args.threads), 3
            )
            best = min(times)
            results.append((f, f"duckdb ({args.threads} threads)", best, args.events / best, len(duck[f])))
            print(f"{f}: duckdb {', '.join(f'{x:.2f}' for x in times)} s -> {args.events / best:,.0f} events/s "
                  f"({len(duck[f]):,} rows)", flush=True)  # fmt: skip
        if not args.no_spark:
            master = f"local[{args.threads}]"
            t0 = time.perf_counter()
            with spark_session(master, partitions=2 * args.threads) as spark:
                startup = time.perf_counter() - t0
                print(f"spark {master}: session started in {startup:.1f} s", flush=True)
                for f in args.formats:
                    spec = LOG_FORMATS[f].features
                    times, table = timed(lambda spec=spec, f=f: normalise(run_spark(spark, spec, tmp / f, 60)), 2)
                    pd.testing.assert_frame_equal(table, duck[f], check_exact=True)
                    best = min(times)
                    results.append((f, f"spark {master}", best, args.events / best, len(table)))
                    print(f"{f}: spark {', '.join(f'{x:.2f}' for x in times)} s -> {args.events / best:,.0f} "
                          f"events/s; identical to duckdb's table", flush=True)  # fmt: skip
        reader = []
        for f in args.formats:
            folder = tmp / f"logs-{f}"
            LOG_FORMATS[f].generate(folder, {})  # the generator's defaults, as logs.*.generate ships them
            times, report = timed(lambda f=f, folder=folder: read_logs(f, folder, tmp / f"parsed-{f}"))
            reader.append((f, report["lines"], times[0]))
    print("\n| format | engine | seconds (best) | events/s | telemetry rows |\n|---|---|---|---|---|")
    for f, engine, secs, rate, rows in results:
        print(f"| {f} | {engine} | {secs:.2f} | {rate:,.0f} | {rows:,} |")
    if not args.no_spark:
        print(f"\nSpark {master} session start-up: {startup:.1f} s (paid once per `vigil logs build`)")
    ratios = [
        (f, next(r for x, e, _, r, _ in results if x == f and e.startswith("duckdb")) / rate)
        for f, engine, _, rate, _ in results
        if engine.startswith("spark")
    ]
    for f, ratio in ratios:
        print(f"{f}: duckdb featurises {ratio:.1f}x as many events per second as spark {master}")
    print("\n| format | reader: lines | seconds | lines/s |\n|---|---|---|---|")
    for f, lines, secs in reader:
        print(f"| {f} | {lines:,} | {secs:.1f} | {lines / secs:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
