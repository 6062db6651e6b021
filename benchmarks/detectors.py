"""Speed, memory and skill of every detector on the real reference series.

Prints, per series and detector: fit seconds, seconds per epoch (torch detectors), scoring
throughput (time steps per second, `score` on the test tail), peak resident memory of the
process that ran it, and AUC-PR on the test tail beside the label prevalence (a random
scorer's AUC-PR). PyOD's IForest and PCA on identical input are the reference; the
`x ref` column is our throughput over PyOD's for the same method.

Reference series: the first SMD machine where ../shared/data/SMD exists, otherwise MSL channel C-1
and NAB's machine_temperature_system_failure and ec2_cpu_utilization_825cc2.

    .venv/bin/python benchmarks/detectors.py [--device auto|cpu|cuda] [--only NAME ...] [--json OUT]

Each (series, detector) runs in a fresh process, so peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

OURS = [
    "zscore",
    "pca",
    "iforest",
    "conv_bigru_ae",
    "lstm_ae",
    "lstm_vae",
    "lstm_forecaster",
    # the autoencoders again, scoring each step once (stride = window) instead of averaging 20 windows
    "conv_bigru_ae:score_stride=20",
    "lstm_ae:score_stride=20",
    "lstm_vae:score_stride=20",
]
REFERENCE = {"pyod_iforest": "iforest", "pyod_pca": "pca"}


def reference_series() -> list[tuple[str, str, str]]:
    if (SHARED / "SMD").is_dir():
        from components.datasets import list_series

        machines = list_series("smd", SHARED / "SMD")  # here machine-1-2 ... machine-1-8
        if machines:
            return [("smd", str(SHARED / "SMD"), machines[0])]
    series = []
    if (SHARED / "MSL").is_dir():
        series.append(("telemanom", str(SHARED / "MSL"), "C-1"))
    if (SHARED / "NAB").is_dir():
        series += [
            ("nab", str(SHARED / "NAB"), "realKnownCause/machine_temperature_system_failure"),
            ("nab", str(SHARED / "NAB"), "realAWSCloudwatch/ec2_cpu_utilization_825cc2"),
        ]
    return series


def _load(kind: str, root: str, name: str):
    from components.datasets import DatasetSource, load_dataset
    from components.preprocessing import Scaler, split_validation

    data = load_dataset(DatasetSource(kind, Path(root), name))
    _, test = split_validation(data, 0.3)
    scaler = Scaler("minmax", 5.0).fit(data.train.to_numpy())
    return data, test, scaler.transform(data.train.to_numpy()), scaler.transform(test.test.to_numpy())


def _throughput(fn, x, min_seconds: float = 1.0) -> float:
    fn(x)  # warm-up (allocations, CUDA kernels)
    n, t0 = 0, time.perf_counter()
    while True:
        fn(x)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return n * len(x) / elapsed


def run_one(kind: str, root: str, name: str, detector: str, device: str) -> dict:
    import numpy as np
    import torch  # noqa: F401  (before the baseline RSS, so every row's base includes torch)

    from components.metrics import auc_pr

    data, test, train_x, test_x = _load(kind, root, name)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {
        "series": data.name,
        "detector": detector,
        "train_steps": len(train_x),
        "test_steps": len(test_x),
        "metrics": train_x.shape[1],
        "prevalence": float(test.labels.mean()),
    }
    if detector in REFERENCE:
        from pyod.models.iforest import IForest
        from pyod.models.pca import PCA

        model = IForest(n_estimators=100, random_state=0) if detector == "pyod_iforest" else PCA(n_components=0.95)
        t0 = time.perf_counter()
        model.fit(train_x)
        row["fit_s"] = time.perf_counter() - t0
        score = model.decision_function
    else:
        from components.detectors import get_detector

        name, _, extra = detector.partition(":")
        params = {"device": device} if name not in ("zscore", "pca", "iforest") else {}
        for kv in filter(None, extra.split(",")):  # name:key=value,... overrides defaults
            k, v = kv.split("=")
            params[k] = json.loads(v)
        det = get_detector(name, **params)
        t0 = time.perf_counter()
        det.fit(train_x)
        row["fit_s"] = time.perf_counter() - t0
        if hasattr(det, "history_"):
            row["s_per_epoch"] = det.history_.seconds_per_epoch
            row["epochs"] = det.history_.epochs_run
            row["device"] = str(det.device_)
        score = det.score
    scores = score(test_x)
    row["auc_pr"] = auc_pr(test.labels, np.asarray(scores))
    row["steps_per_s"] = _throughput(score, test_x)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["base_rss_mb"] = rss_before
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", nargs="*", help="detectors to run (default: all, with the PyOD references)")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--one", nargs=4, metavar=("KIND", "ROOT", "NAME", "DETECTOR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, args.device)))
        return 0
    series = reference_series()
    if not series:
        print(f"no reference data under {SHARED}: nothing to benchmark")
        return 1
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, cuda available: {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "")
    )
    names = args.only or OURS + list(REFERENCE)
    rows = []
    head = (
        f"{'detector':<31}{'dev':>5}{'fit s':>9}{'s/epoch':>9}{'epochs':>7}{'steps/s':>12}{'x ref':>7}"
        f"{'peak MB':>9}{'base MB':>9}{'AUC-PR':>8}{'prev':>7}"
    )
    for kind, root, name in series:
        print(f"\n== {kind}/{name}")
        print(head)
        print("-" * len(head))
        ref_speed = {}
        for det in names:
            out = subprocess.run(
                [sys.executable, __file__, "--device", args.device, "--one", kind, root, name, det],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                print(
                    f"{det:<31} FAILED: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"
                )
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            if det in REFERENCE:
                ref_speed[REFERENCE[det]] = row["steps_per_s"]
        for row in [r for r in rows if r["series"].endswith(name)]:
            ratio = ""
            ref = ref_speed.get(row["detector"].split(":")[0])
            if ref and row["detector"].split(":")[0] in REFERENCE.values():
                ratio = f"{row['steps_per_s'] / ref:.2f}"
            dev = row.get("device", "cpu")[:4]
            spe = f"{row['s_per_epoch']:.2f}" if "s_per_epoch" in row else "-"
            ep = str(row.get("epochs", "-"))
            print(
                f"{row['detector']:<31}{dev:>5}{row['fit_s']:>9.2f}{spe:>9}{ep:>7}{row['steps_per_s']:>12.3g}{ratio:>7}"
                f"{row['peak_rss_mb']:>9.0f}{row['base_rss_mb']:>9.0f}{row['auc_pr']:>8.3f}{row['prevalence']:>7.3f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
