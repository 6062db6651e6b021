"""Telemetry from event logs (`vigil logs ...`, README: Telemetry from logs).

- ``build`` (the Prefect flow ``logs``; DVC stage ``logs``): each log format's folder read
  strictly, featurised by ``logs.engine`` (DuckDB, or Spark at ``logs.spark_master``) into one
  series per pool / link, written to ``logs.<format>.out``, the root of the dataset kind of the
  same name. Generated logs are written first where ``logs.<format>.generate`` is set.
- ``generate`` (DVC stage ``logs_generate``): only the generated logs.
- ``reference`` (flows/logs_reference.py: the flow ``logs-reference``, DVC stage
  ``logs_reference``): the reference models of both formats, their figures in
  ``reports/logs_reference.json`` and MLflow.

Run alone: ``python -m flows.logs build|generate [--params FILE]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import flow

from components.logs import dropped_summary

from .config import LOG_SOURCES, LogsConfig, load_config
from .entry import run_entry
from .run_lock import holds_checkout
from .workspace import Workspace

REFERENCE_REPORT = Path("reports/logs_reference.json")


def generator_settings(logs: LogsConfig, log_format: str) -> dict | None:
    gen = logs.source(log_format).generate
    return None if gen is None else gen.model_dump()


def make_telemetry(
    root: Path, logs: LogsConfig, log_format: str, engine: str | None = None, force: bool = False
) -> dict:
    """One format's generated logs (where configured) and its telemetry, each only if stale;
    paths relative to ``root``. Returns the telemetry stamp, with ``generated`` and ``rebuilt``."""
    from tasks.logs import build_telemetry, ensure_logs

    source = logs.source(log_format)
    generated = ensure_logs(log_format, root / source.logs, generator_settings(logs, log_format))
    stamp = build_telemetry(
        log_format,
        root / source.logs,
        root / source.out,
        engine=engine or logs.engine,
        bin_seconds=logs.bin_seconds,
        train_fraction=logs.train_fraction,
        spark_master=logs.spark_master,
        spark_partitions=logs.spark_partitions,
        force=force or generated,
        max_span_days=logs.max_span_days,
    )
    return {**stamp, "generated": generated}


@flow(name="logs")
@holds_checkout
def logs_flow(
    params: str = "params.yaml",
    formats: list[str] | None = None,
    engine: str | None = None,
    force: bool = False,
    repo_root: str = ".",
    wait_for_lock: bool = True,
) -> dict:
    """Telemetry of every format in ``formats`` (default: both), each rebuilt only when its
    logs or settings changed (``force``: always), on ``engine`` (default: ``logs.engine``)."""
    ws = Workspace.at(repo_root)
    cfg = load_config(ws.root / params)
    return {f: make_telemetry(ws.root, cfg.logs, f, engine, force) for f in formats or LOG_SOURCES}


def generate_logs(params: str, outs: dict[str, str | None]) -> str:
    """The generated logs of each format, into ``outs[format]`` (default: ``logs.<format>.logs``),
    with its generator settings, or the defaults where the section sets none."""
    from components.logs.formats import get_format

    cfg = load_config(params)
    defaults = LogsConfig()  # the generator settings a section with `generate: null` would have had
    lines = []
    for f in LOG_SOURCES:
        source = cfg.logs.source(f)
        folder = Path(outs.get(f) or source.logs)
        settings = (source.generate or defaults.source(f).generate).model_dump()
        written = get_format(f).generate(folder, settings)
        lines.append(f"{f}: {'written to' if written else 'already current in'} {folder}")
    return "\n".join(lines)


def build_summary(result: dict) -> str:
    lines = []
    for f, stamp in result.items():
        report = stamp["report"]
        state = "rebuilt" if stamp["rebuilt"] else "already current"
        lines.append(
            f"{f}: {report['files']} files, {report['lines']} lines, {report['kept']} records kept, "
            f"{report['dropped']} dropped ({dropped_summary(report)}); "
            f"{len(stamp['series'])} series x {len(stamp['metrics'])} metrics, {state}; "
            f"{stamp['incidents']} labelled incidents ({len(stamp['incidents_in_train'])} in train, not used as labels)"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="logs_command", required=True)
    build = sub.add_parser("build", help="logs -> per-series telemetry (the dataset kinds' roots)")
    build.add_argument("--params", default="params.yaml")
    build.add_argument("--format", dest="formats", nargs="+", choices=LOG_SOURCES, help="default: both")
    build.add_argument("--engine", choices=("duckdb", "spark"), help="default: logs.engine")
    build.add_argument("--force", action="store_true", help="rebuild even if the logs and settings are unchanged")
    gen = sub.add_parser("generate", help="write the generated logs only")
    gen.add_argument("--params", default="params.yaml")
    for f in LOG_SOURCES:
        gen.add_argument(f"--{f.replace('_', '-')}-out", dest=f, help=f"folder (default: logs.{f}.logs)")
    ref = sub.add_parser("reference", help="the reference models of both formats: reports/logs_reference.json")
    add_reference_arguments(ref)


def add_reference_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--format", dest="formats", nargs="+", choices=LOG_SOURCES, help="default: both")


def run(args: argparse.Namespace) -> int:
    """``build`` and ``generate``; `vigil logs reference` is flows/logs_reference.py's (its own
    DVC stage, whose deps are not these)."""
    if args.logs_command == "build":
        return run_entry(lambda: build_summary(logs_flow(args.params, args.formats, args.engine, args.force)))
    outs = {f: getattr(args, f) for f in LOG_SOURCES}
    return run_entry(lambda: generate_logs(args.params, outs), runs_flows=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.logs", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
