"""Every detector of params.yaml, and PyOD peers, on the telemetry made from the logs: each pool
of the dCache billing telemetry and each link of the Rucio one, by the benchmark's own protocol
(thresholds on each series' validation head, figures on its test tail).

It runs `vigil benchmark` in a scratch checkout whose benchmark datasets are this checkout's
``logs.<format>.out`` folders (build them first: `vigil logs build`), so the repository's own
benchmark report is left as it is, and prints the scratch report's summary tables.

    .venv/bin/python benchmarks/logs_detectors.py [--peers pyod_knn pyod_copod]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from tuning import BIN, scratch_checkout, sh  # noqa: E402

COLUMNS = ("vus_pr", "auc_pr", "point_f1", "event_f1", "pa_f1")


def _mean(row: dict, column: str) -> float:
    cell = row.get(column) or {}
    return float("nan") if cell.get("mean") is None else cell["mean"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", nargs="*", default=["pyod_knn", "pyod_copod"])
    args = parser.parse_args()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    roots = {f: (REPO / params["logs"][f]["out"]).resolve() for f in ("dcache_billing", "rucio_transfers")}
    missing = [str(r) for r in roots.values() if not (r / "telemetry.json").is_file()]
    if missing:
        print(f"no telemetry at {missing}: run `.venv/bin/vigil logs build` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vigil-bench-logs-detectors-") as tmp:
        ws = scratch_checkout(Path(tmp))
        params["benchmark"].update(
            datasets={"dcache": {"kind": "dcache_billing", "root": str(roots["dcache_billing"])},
                      "rucio": {"kind": "rucio_transfers", "root": str(roots["rucio_transfers"])}},
            peers=args.peers,
            plots=0,
        )  # fmt: skip
        (ws / "params.yaml").write_text(yaml.safe_dump(params))
        sh(str(BIN / "vigil"), "benchmark", cwd=ws)
        summary = json.loads((ws / "reports" / "benchmark_summary.json").read_text())
    for name in summary["datasets"]:
        rows = sorted((r for r in summary["summary"] if r["dataset"] == name), key=lambda r: -_mean(r, "vus_pr"))
        print(
            f"\n{name}: {len(summary['series'][name])} series, means over series, test tail, F1 at the validation "
            f"threshold (PA F1 is inflated)"
        )
        print("| detector | kind | " + " | ".join(COLUMNS) + " |\n|---|---|" + "---|" * len(COLUMNS))
        for r in rows:
            print(f"| {r['detector']} | {r['family']} | " + " | ".join(f"{_mean(r, c):.3f}" for c in COLUMNS) + " |")
        v = summary["verdicts"][name]
        print(
            f"best of Vigil: {v['best_vigil']} (VUS-PR {v['vigil_vus_pr']:.3f}); best peer: {v['best_peer']} "
            f"(VUS-PR {v['peer_vus_pr']:.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
