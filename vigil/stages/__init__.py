"""`vigil stage NAME [ARGS]`: the DVC stages of `dvc.yaml`, one module each, every one a single
command that parses params.yaml once, runs its flow (or writes its files) and prints what it did.

A stage module has `run(args) -> int`, and `add_arguments(parser)` where it takes arguments
beyond ``--params`` and ``--debug``; the commands of the tree that do the same work
(`vigil benchmark`, `vigil logs build`, `vigil feedback export`, ...) call the same `run`.
A stage module imports its flow inside `run`, once params.yaml is parsed: building the command
tree (which imports every module with arguments) then loads no flow, whose Prefect parameter
schema alone costs some 0.14 s each, and a bad params.yaml is named before any of it loads.
"""

from __future__ import annotations

import argparse
import importlib
import sys

STAGES = (
    "generate",
    "logs_generate",
    "logs",
    "logs_reference",
    "feedback",
    "prepare",
    "tune",
    "train",
    "evaluate",
    "benchmark",
    "slo_record",
    "slo_train",
)


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STAGES:
        given = f"unknown stage {argv[0]!r}; " if argv and not argv[0].startswith("-") else ""
        print(f"vigil stage: {given}give one of {', '.join(STAGES)}", file=sys.stderr)
        return 2
    name = argv[0]
    module = importlib.import_module(f"vigil.stages.{name}")  # a name from STAGES only
    parser = argparse.ArgumentParser(prog=f"vigil stage {name}", description=module.__doc__)
    common_arguments(parser)
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    from vigil.config import ConfigError

    try:
        return module.run(args)
    except ConfigError as exc:  # params.yaml refused before any work: one paragraph, exit 2
        from components.text import printable

        print(f"vigil: {printable(exc)}", file=sys.stderr)
        return 2
