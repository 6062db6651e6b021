"""DVC stage ``logs`` (`vigil logs build`): logs -> per-series telemetry, the roots of the
dataset kinds made from logs."""

from __future__ import annotations

import argparse

from components.logs import dropped_summary
from vigil.config import LOG_SOURCES, load_config
from vigil.entry import run_entry


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
    parser.add_argument("--format", dest="formats", nargs="+", choices=LOG_SOURCES, help="default: both")
    parser.add_argument("--engine", choices=("duckdb", "spark"), help="default: logs.engine")
    parser.add_argument("--force", action="store_true", help="rebuild even if the logs and settings are unchanged")


def run(args: argparse.Namespace) -> int:
    logs = load_config(args.params).logs  # a named error, exit 2, before Prefect starts
    from flows.logs import logs_flow

    return run_entry(lambda: build_summary(logs_flow(logs, args.formats, args.engine, args.force)))
