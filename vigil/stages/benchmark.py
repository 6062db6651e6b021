"""DVC stage ``benchmark`` (`vigil benchmark`): every benchmark series x every detector and peer;
``--readme`` rewrites README's Benchmark section from reports/benchmark_summary.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from vigil.config import load_config, with_cluster
from vigil.entry import add_cluster_arguments, run_entry


def summary(out: dict) -> str:
    return (
        f"benchmark: {out['computed']} cell(s) computed, {out['reused']} reused, {out['logged']} logged to MLflow; "
        f"reports: {', '.join(str(p) for p in out['reports'])}"
    )


def known_peers() -> list[str]:
    """The names benchmark.peers may use: PyOD's and TSB-AD's."""
    from tasks.peers import PEERS
    from tasks.tsb_peers import TSB_PEERS

    return [*PEERS, *TSB_PEERS]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="KIND:SERIES",
        help="these series only (e.g. smd:machine-1-2); the report goes to .vigil/benchmark-only/, never reports/",
    )
    parser.add_argument(
        "--tuned", action="store_true", help="a tuned row for every detector on every series (default: benchmark.tuned)"
    )
    parser.add_argument("--readme", action="store_true", help="rewrite README's Benchmark section from the report")
    parser.add_argument("--no-wait", action="store_true", help="refuse instead of waiting for a benchmark running here")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.readme:
        from tasks.benchmark_report import update_readme

        return run_entry(
            lambda: update_readme(Path("README.md"), Path("reports/benchmark_summary.json")), runs_flows=False
        )
    tuned = True if args.tuned else None
    cfg = load_config(args.params, peers=known_peers())  # a named error, exit 2, before Prefect starts
    cfg = with_cluster(cfg, args.workers, args.scheduler)
    from flows.benchmark import benchmark_flow

    return run_entry(lambda: summary(benchmark_flow(cfg, only=args.only, tuned=tuned, wait_for_lock=not args.no_wait)))
