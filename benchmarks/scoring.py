"""`vigil score` throughput and delay, landing folder to alerts store, on 38-metric telemetry.

For each champion (PCA, and a recurrent one: lstm_forecaster) it makes a scratch checkout
(`benchmarks/tuning.py`'s), trains the champion with `vigil run` on the synthetic generator
with 38 metrics, then:

- throughput: drops ``--steps`` steps (the generated test series repeated, timestamps
  continued) as CSV files of ``--file-rows`` rows into the landing folder and times
  `vigil score`, the whole command and the scoring task alone (the store's run row);
- delay: drops one file of ``--delay-rows`` rows and times `vigil score` until its steps are
  queryable in the store (a scheduled vigil-score adds at most its interval to this).

    .venv/bin/python benchmarks/scoring.py
    .venv/bin/python benchmarks/scoring.py --steps 200000 --recurrent-steps 50000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from tuning import BIN, scratch_checkout, sh  # noqa: E402

CHAMPIONS = {
    "pca": {"pca": {}},
    "lstm_forecaster": {"lstm_forecaster": {"window": 20, "epochs": 2, "device": "auto"}},
}


def train(root: Path, detectors: dict) -> Path:
    ws = scratch_checkout(root)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["dataset"]["synthetic"].update(n_metrics=38, n_train=4000, n_test=4000)
    params["detectors"] = detectors
    params["scoring"].update(landing=str(root / "landing"), store=f"sqlite:///{root / 'alerts.db'}")
    (ws / "params.yaml").write_text(yaml.safe_dump(params))
    sh(str(BIN / "vigil"), "run", "--new-data-version", cwd=ws, env=_env(root))
    return ws


def _env(root: Path) -> dict:
    return {**os.environ, "PREFECT_HOME": str(root / "prefect-home")}


def telemetry(ws: Path, steps: int) -> pd.DataFrame:
    """The generated test series (38 metrics), repeated to ``steps`` rows, time continued."""
    base = pd.read_csv(ws / "data" / "raw" / "synthetic" / "test.csv").drop(columns=["label"])
    reps = -(-steps // len(base))
    frame = pd.concat([base] * reps, ignore_index=True).iloc[:steps]
    start = pd.Timestamp(base["timestamp"].iloc[0])
    frame["timestamp"] = pd.date_range(start, periods=steps, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
    return frame


def drop(frame: pd.DataFrame, landing: Path, source: str, rows: int, first: int = 0) -> int:
    folder = landing / source
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for i, lo in enumerate(range(0, len(frame), rows)):
        frame.iloc[lo : lo + rows].to_csv(folder / f"part-{first + i:05d}.csv", index=False, float_format="%.6f")
        n += 1
    return n


def count(root: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{root / 'alerts.db'}")
    with engine.connect() as conn:
        n = conn.execute(sa.text("select count(*) from points")).scalar()
    engine.dispose()
    return n


def last_run_seconds(root: Path) -> float:
    engine = sa.create_engine(f"sqlite:///{root / 'alerts.db'}")
    with engine.connect() as conn:
        started, finished = conn.execute(sa.text("select started, finished from runs order by started desc")).first()
    engine.dispose()
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


def measure(name: str, detectors: dict, steps: int, args) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"vigil-score-{name}-"))
    t0 = time.perf_counter()
    ws = train(root, detectors)
    print(f"{name}: champion trained in {time.perf_counter() - t0:.0f} s ({ws})", flush=True)
    frame = telemetry(ws, steps + args.delay_rows)
    files = drop(frame.iloc[:steps], root / "landing", "host-1", args.file_rows)
    t0 = time.perf_counter()
    sh(str(BIN / "vigil"), "score", cwd=ws, env=_env(root))
    wall = time.perf_counter() - t0
    scored = count(root)
    task = last_run_seconds(root)
    # delay: one small file, landing to queryable
    drop(frame.iloc[steps:], root / "landing", "host-1", args.delay_rows, first=files)
    t0 = time.perf_counter()
    sh(str(BIN / "vigil"), "score", cwd=ws, env=_env(root))
    delay = time.perf_counter() - t0
    assert count(root) > scored, "the delay file was not scored"
    return {
        "champion": name,
        "metrics": 38,
        "steps": steps,
        "files": files,
        "steps_scored": scored,
        "command_seconds": round(wall, 2),
        "task_seconds": task,
        "steps_per_second_command": round(steps / wall),
        "steps_per_second_task": round(steps / task) if task else None,
        "delay_rows": args.delay_rows,
        "delay_seconds": round(delay, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000, help="steps for the PCA champion")
    parser.add_argument("--recurrent-steps", type=int, default=200_000, help="steps for the recurrent champion")
    parser.add_argument("--file-rows", type=int, default=50_000)
    parser.add_argument("--delay-rows", type=int, default=60)
    parser.add_argument("--only", choices=sorted(CHAMPIONS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    for name, detectors in CHAMPIONS.items():
        if args.only and name != args.only:
            continue
        steps = args.steps if name == "pca" else args.recurrent_steps
        results.append(measure(name, detectors, steps, args))
        print(json.dumps(results[-1]), flush=True)
    print(f"\n{os.cpu_count()} CPU(s), torch threads {_threads()}")
    print("| champion | steps | files | command s | steps/s (command) | task s | steps/s (task) | delay s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['champion']} | {r['steps']:,} | {r['files']} | {r['command_seconds']} | "
            f"{r['steps_per_second_command']:,} | {r['task_seconds']} | {r['steps_per_second_task'] or 'n/a'} | "
            f"{r['delay_seconds']} ({r['delay_rows']} rows) |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
