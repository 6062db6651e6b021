"""The `vigil` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from components.datasets import DataError

from .config import ConfigError, load_config


def _run(args: argparse.Namespace) -> int:
    from .core import format_table, run_core

    cfg = load_config(args.params)
    data, results = run_core(cfg, progress=lambda m: print(m, flush=True))
    print()
    print(format_table(data, results, cfg.threshold.method))
    if args.metrics:
        out = Path(args.metrics)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({r.name: r.test for r in results}, indent=2, sort_keys=True) + "\n")
        print(f"\nmetrics written to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vigil", description="Anomaly detection for system telemetry.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fit every detector in params and report test metrics")
    run.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    run.add_argument("--metrics", default=None, help="also write test metrics as JSON here")
    run.set_defaults(func=_run)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DataError) as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
