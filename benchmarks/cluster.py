"""Scale-out on Dask, measured (`make bench-cluster`; README: Scaling out).

1. The benchmark on this machine: the same cells (real series read in place, Vigil's
   detectors and PyOD peers) run in one process, then on a local Dask cluster of 1 and of 2
   worker processes (``vigil stage benchmark --workers N``), every cell computed anew each
   time. Wall time of the whole stage, and its ratio to the one-process run.
2. The full benchmark on 8, 32 and 128 workers, extrapolated from the measured cost of every
   cell: the stored cells of this checkout (``benchmark/cells``) where present, else the
   committed summary's per-dataset-and-detector seconds spread evenly over its series (which
   hides the spread between series, so the critical path is a floor there). Longest cell
   first onto the least loaded worker (LPT), each cell with the per-cell overhead measured in
   step 1's two-worker run; plus the serial part, measured: the command's start (step 1's
   rerun that reuses every cell, less its series preparation), preparing every series of
   params.yaml's benchmark datasets (timed here on the real data), and logging and reporting
   per cell (step 1's first run, less its rerun and its cells).
3. Fleet scoring: ``vigil score`` of N synthetic series (a file each) in one process and on
   a local cluster of 2 workers: steps per second.

    .venv/bin/python benchmarks/cluster.py                    # all three, defaults
    .venv/bin/python benchmarks/cluster.py --series 4 --fleet 1000
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from vigil.config import load_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from tuning import BIN, scratch_checkout, sh  # noqa: E402  (the benchmarks' scratch checkout and commands)

DATA = REPO.parent / "shared" / "data"
DETECTORS = {
    "zscore": {},
    "pca": {},
    "iforest": {},
    "knn": {},
    "kmeans": {},
    "uae": {"epochs": 5},
    "lstm_ae": {"epochs": 5},
}
PEERS = ["pyod_iforest", "pyod_knn", "pyod_ecod"]


def checkout(root: Path, params: dict) -> Path:
    """`scratch_checkout` with ``params`` written in full as its params.yaml (untracked)."""
    from vigil.config import parse_config

    ws = scratch_checkout(root)
    (ws / "params.yaml").write_text(yaml.safe_dump(parse_config(params).model_dump(mode="json")))
    return ws


def env_for(ws: Path) -> dict:
    return {**os.environ, "PREFECT_HOME": str(ws.parent / "prefect-home"), "OMP_NUM_THREADS": "1"}


def benchmark_runs(root: Path, n_series: int) -> tuple[list[dict], dict]:
    names = sorted(p.stem for p in (DATA / "MSL" / "train").glob("*.npy"))[:n_series]
    params = {
        "detectors": DETECTORS,
        "registry": {"tracking_uri": "sqlite:///mlflow/mlflow.db", "artifact_root": "mlflow/artifacts"},
        "benchmark": {
            "datasets": {"msl": {"kind": "telemanom", "root": str(DATA / "MSL"), "series": names}},
            "peers": PEERS,
            "plots": 0,
            "tuned": {"detectors": {}},
        },
    }
    ws = checkout(root / "bench", params)
    rows = []
    for label, extra in (
        ("one process", []),
        ("1 Dask worker", ["--workers", "1"]),
        ("2 Dask workers", ["--workers", "2"]),
    ):
        shutil.rmtree(ws / "benchmark" / "cells", ignore_errors=True)  # every cell computed anew
        t0 = time.perf_counter()
        out = sh(BIN / "python", "-m", "vigil", "stage", "benchmark", *extra, cwd=ws, env=env_for(ws))
        wall = time.perf_counter() - t0
        computed = int(re.search(r"(\d+) cell\(s\) computed", out).group(1))
        report = json.loads((ws / "reports" / "benchmark.json").read_text())
        cell_seconds = sum(r.get("seconds", 0.0) for r in report["rows"])
        rows.append({"run": label, "cells": computed, "wall_s": wall, "cell_s": cell_seconds})
        print(f"  {label}: {computed} cells in {wall:.1f} s wall ({cell_seconds:.1f} s inside the cells)", flush=True)
        if not extra:  # the same run again, every cell reused: its fixed cost and series preparation
            t0 = time.perf_counter()
            sh(BIN / "python", "-m", "vigil", "stage", "benchmark", cwd=ws, env=env_for(ws))
            rows[-1]["rerun_s"] = time.perf_counter() - t0
            print(f"  one process again, every cell reused: {rows[-1]['rerun_s']:.1f} s wall", flush=True)
    return rows, [prepare_seconds(params["benchmark"]["datasets"], ws, ws / ".vigil" / "prepare-timing")]


def prepare_seconds(datasets: dict, root: Path, out: Path) -> float:
    """Seconds to prepare every series of ``datasets`` (roots relative to the checkout
    ``root``) as a benchmark run does before its first cell (`tasks.benchmark.write_prepared`,
    under ``out`` inside ``root``): its serial part."""
    from tasks.benchmark import plan_series, write_prepared
    from vigil.config import BenchmarkDataset

    prep = load_config(REPO / "params.yaml").preprocessing
    preparation = {"validation_fraction": prep.validation_fraction, "scaler": prep.scaler, "clip": prep.clip}
    t0 = time.perf_counter()
    plan, _ = plan_series({n: BenchmarkDataset(**d) for n, d in datasets.items()}, root, None)
    for _, source, _ in plan:
        write_prepared(source, out, root, preparation)
    return time.perf_counter() - t0


def full_benchmark_cells() -> tuple[list[float], str]:
    """Seconds of every cell of the full benchmark, and where they come from."""
    stored = sorted((REPO / "benchmark" / "cells").rglob("*.json"))
    if stored:
        secs = [float(json.loads(p.read_text()).get("seconds") or 0.0) for p in stored]
        return secs, f"{len(secs)} stored cells of this checkout (benchmark/cells)"
    summary = json.loads((REPO / "reports" / "benchmark_summary.json").read_text())
    secs = []
    for key, total in summary["wall_seconds"].items():
        dataset = key.split("|", 1)[0]
        n = len(summary["series"][dataset])
        secs += [total / n] * n
    commit = summary["meta"]["git_commit"][:12]
    return secs, (
        f"reports/benchmark_summary.json (commit {commit}): {len(secs)} cells, each dataset x detector's seconds "
        "spread evenly over its series (the stored cells are not in this checkout: `dvc pull` restores them)"
    )


def lpt_makespan(seconds: list[float], workers: int, overhead: float) -> float:
    """Longest cell first onto the least loaded worker; each cell ``overhead`` seconds more."""
    loads = [0.0] * workers
    heapq.heapify(loads)
    for s in sorted(seconds, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + s + overhead)
    return max(loads)


def fleet_scoring(root: Path, n_series: int, steps: int) -> list[dict]:
    params = {
        "dataset": {"kind": "synthetic", "root": "data/raw/synthetic",
                    "synthetic": {"seed": 0, "n_train": 800, "n_test": 1200, "n_anomalies": 8}},
        "detectors": {"pca": {"n_components": 0.9}},
        "registry": {"tracking_uri": "sqlite:///mlflow/mlflow.db", "artifact_root": "mlflow/artifacts"},
    }  # fmt: skip
    ws = checkout(root / "fleet", params)
    sh(BIN / "vigil", "run", "--new-data-version", cwd=ws, env=env_for(ws))
    frame = pd.read_csv(ws / "data/raw/synthetic/test.csv").drop(columns=["label"])
    rng = np.random.default_rng(0)
    rows = []
    for label, extra in (("one process", []), ("2 Dask workers", ["--workers", "2"])):
        p = yaml.safe_load((ws / "params.yaml").read_text())
        where = root / "fleet" / label.replace(" ", "-")
        p["scoring"].update(landing=str(where / "landing"), store=f"sqlite:///{where / 'alerts.db'}", settle_seconds=0)
        where.mkdir(parents=True)
        (where / "params.yaml").write_text(yaml.safe_dump(p))
        for i in range(n_series):
            start = int(rng.integers(0, len(frame) - steps))
            folder = where / "landing" / f"node-{i:04d}"
            folder.mkdir(parents=True)
            frame.iloc[start : start + steps].to_csv(folder / "part-0.csv", index=False)
        t0 = time.perf_counter()
        out = sh(BIN / "vigil", "score", "--params", where / "params.yaml", *extra, cwd=ws, env=env_for(ws))
        wall = time.perf_counter() - t0
        scored = int(re.search(r"(\d+) scored", out).group(1))
        rows.append({"run": label, "series": n_series, "steps": scored, "wall_s": wall})
        print(
            f"  {label}: {scored} steps of {n_series} series in {wall:.1f} s = {scored / wall:.0f} steps/s", flush=True
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=6, help="MSL channels in the measured benchmark (step 1)")
    ap.add_argument("--fleet", type=int, default=1000, help="series scored in step 3")
    ap.add_argument("--steps", type=int, default=100, help="steps per series in step 3")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"1. the benchmark on {args.series} MSL channels x {len(DETECTORS)} detectors + {len(PEERS)} peers")
        runs, measured_prep = benchmark_runs(root, args.series)
        base = runs[0]["wall_s"]
        print("\n| run | cells | wall s | vs one process |\n|---|---|---|---|")
        for r in runs:
            print(f"| {r['run']} | {r['cells']} | {r['wall_s']:.1f} | {base / r['wall_s']:.2f}x |")
        one, two = runs[0], runs[2]
        # one process: wall = fixed start + series preparation + cells + per-cell logging and report
        fixed = one["rerun_s"] - measured_prep[0]
        per_cell = max(0.0, (one["wall_s"] - one["rerun_s"] - one["cell_s"]) / one["cells"])
        # two workers: the cells' part of the wall, less their own seconds spread over both
        cells_wall = two["wall_s"] - one["rerun_s"] - per_cell * two["cells"]
        overhead = max(0.0, (cells_wall * 2 - two["cell_s"]) / two["cells"])
        secs, source = full_benchmark_cells()
        full_datasets = {n: d.model_dump() for n, d in load_config(REPO / "params.yaml").benchmark.datasets.items()}
        prep_full = prepare_seconds(full_datasets, REPO, REPO / ".vigil" / "prepare-timing")
        shutil.rmtree(REPO / ".vigil" / "prepare-timing", ignore_errors=True)
        serial_full = fixed + prep_full + per_cell * len(secs)
        print(f"\n2. the full benchmark, extrapolated from {source}")
        print(
            f"   assumptions: each worker as fast as one core here, data and cells on a shared file system; serial "
            f"(one process, measured here): {fixed:.1f} s to start, {prep_full:.1f} s to prepare every series of "
            f"params.yaml's datasets, {per_cell:.2f} s per cell to log and report ({serial_full / 60:.1f} min in "
            f"all); {overhead:.2f} s of scheduling and Prefect overhead per cell on a worker (step 1's two-worker run)"
        )
        total = sum(secs)
        print("\n| workers | wall (min) | speed-up | longest cell (min) |\n|---|---|---|---|")
        for w in (1, 2, 8, 32, 128):
            wall = serial_full + lpt_makespan(secs, w, overhead)
            print(f"| {w} | {wall / 60:.1f} | {(serial_full + total) / wall:.1f}x | {max(secs) / 60:.1f} |")
        print(f"\n3. fleet scoring: {args.fleet} synthetic series of {args.steps} steps, a file each")
        fleet_rows = fleet_scoring(root, args.fleet, args.steps)
        print("\n| run | series | steps | wall s | steps/s |\n|---|---|---|---|---|")
        for r in fleet_rows:
            print(f"| {r['run']} | {r['series']} | {r['steps']} | {r['wall_s']:.1f} | {r['steps'] / r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
