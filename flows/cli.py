"""The `vigil` command line: `vigil run`, `vigil generate`, `vigil ui`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from .config import ConfigError, load_config

STEPS = ("all", "prepare", "train", "evaluate")


def _quiet_prefect() -> None:
    # Prefect without a server: a temporary local API per process, no UI needed.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import logging

    for name in ("mlflow", "great_expectations", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run(args: argparse.Namespace) -> int:
    _quiet_prefect()
    from components.datasets import DataError
    from tasks.validation import ValidationFailed
    from tasks.versioning import DataVersionError

    from . import pipeline as P

    cfg = load_config(args.params)  # fail fast, with the named problem, before Prefect starts
    verbose = sys.stderr.isatty()
    try:
        if args.step == "prepare":
            v = P.prepare_flow(args.params, args.new_data_version)
            print(f"prepared: raw {v['raw_path']} md5 {v['raw_md5']} ({v['status']})")
            return 0
        if args.step == "train":
            info = P.train_flow(args.params, verbose=verbose)
            for name, i in info.items():
                print(f"trained {name} in {i['fit_seconds']:.1f} s")
            return 0
        out = P.evaluate_flow(args.params) if args.step == "evaluate" else P.pipeline(
            args.params, args.new_data_version, verbose=verbose)
    except (DataVersionError, ValidationFailed, DataError) as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 3
    d = out["decision"]
    print(out["table"])
    print()
    if d["promoted"]:
        before = "" if d["champion_before"] is None else (
            f" (beat version {d['champion_before']}: {d['champion_before_score']:.4f})")
        print(f"registered {d['model']} version {d['version']} ({d['detector']}, {d['metric']} {d['score']:.4f}) "
              f"and made it @champion{before}")
    else:
        print(f"registered {d['model']} version {d['version']} ({d['detector']}, {d['metric']} {d['score']:.4f}); "
              f"champion stays version {d['champion']} ({d['champion_before_score']:.4f} on this data)")
    print(f"open the MLflow UI: .venv/bin/mlflow ui --backend-store-uri {cfg.registry.tracking_uri}   (or `vigil ui`)")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from tasks.data import ensure_synthetic

    cfg = load_config(args.params)
    out = Path(args.out) if args.out else cfg.dataset.root if cfg.dataset.kind == "synthetic" else Path("data/raw/synthetic")
    ensure_synthetic.fn(cfg, force=True, root=out)
    print(f"synthetic data written to {out}")
    return 0


def _ui(args: argparse.Namespace) -> int:
    """Start the Prefect and MLflow UIs on 127.0.0.1 until interrupted."""
    cfg = load_config(args.params)
    bin_dir = Path(sys.executable).parent
    procs = [
        subprocess.Popen([str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(args.prefect_port)]),
        subprocess.Popen([str(bin_dir / "mlflow"), "ui", "--host", "127.0.0.1", "--port", str(args.mlflow_port),
                          "--backend-store-uri", cfg.registry.tracking_uri]),
    ]
    print(f"Prefect UI: http://127.0.0.1:{args.prefect_port}   MLflow UI: http://127.0.0.1:{args.mlflow_port}   (Ctrl-C stops both)")
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            p.terminate()
    return 0


def _serve(args: argparse.Namespace) -> int:
    _quiet_prefect()
    from .deployments import DEPLOYMENT, serve

    cfg = load_config(args.params)
    print(f"serving deployment pipeline/{DEPLOYMENT} on cron {cfg.schedule.cron!r} (Ctrl-C stops)")
    serve(cfg, args.params)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vigil", description="Anomaly detection for system telemetry.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="data version check, validation, prepare, train, evaluate, register")
    run.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    run.add_argument("--step", choices=STEPS, default="all", help="one step only (as the dvc stages do)")
    run.add_argument("--new-data-version", action="store_true",
                     help="accept raw data that dvc.lock does not record, as a new data version")
    run.set_defaults(func=_run)
    gen = sub.add_parser("generate", help="write the synthetic dataset named in params")
    gen.add_argument("--params", default="params.yaml")
    gen.add_argument("--out", help="folder (default: dataset.root for the synthetic kind, else data/raw/synthetic)")
    gen.set_defaults(func=_generate)
    ui = sub.add_parser("ui", help="start the Prefect and MLflow UIs on 127.0.0.1")
    ui.add_argument("--params", default="params.yaml")
    ui.add_argument("--prefect-port", type=int, default=4200)
    ui.add_argument("--mlflow-port", type=int, default=5000)
    ui.set_defaults(func=_ui)
    srv = sub.add_parser("serve", help="serve the pipeline as a scheduled Prefect deployment (schedule.cron)")
    srv.add_argument("--params", default="params.yaml")
    srv.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
