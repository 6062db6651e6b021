"""DVC stage ``logs_generate`` (`vigil logs generate`): only the generated logs of each format."""

from __future__ import annotations

import argparse
from pathlib import Path

from components.logs.formats import get_format
from vigil.config import LOG_SOURCES, LogsConfig, load_config
from vigil.entry import run_entry


def generate_logs(logs: LogsConfig, outs: dict[str, str | None]) -> str:
    """The generated logs of each format, into ``outs[format]`` (default: ``logs.<format>.logs``),
    with its generator settings, or the defaults where the section sets none."""
    defaults = LogsConfig()  # the generator settings a section with `generate: null` would have had
    lines = []
    for f in LOG_SOURCES:
        source = logs.source(f)
        folder = Path(outs.get(f) or source.logs)
        settings = (source.generate or defaults.source(f).generate).model_dump()
        written = get_format(f).generate(folder, settings)
        lines.append(f"{f}: {'written to' if written else 'already current in'} {folder}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for f in LOG_SOURCES:
        parser.add_argument(f"--{f.replace('_', '-')}-out", dest=f, help=f"folder (default: logs.{f}.logs)")


def run(args: argparse.Namespace) -> int:
    outs = {f: getattr(args, f) for f in LOG_SOURCES}
    logs = load_config(args.params).logs
    return run_entry(lambda: generate_logs(logs, outs), runs_flows=False)
