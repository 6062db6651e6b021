"""DVC stage ``prepare`` (`vigil run --step prepare`): data version check, validation, prepare."""

from __future__ import annotations

import argparse

from vigil.config import load_config
from vigil.entry import run_entry, step_imports


def summary(version: dict) -> str:
    return f"prepared: raw {version['raw_path']} md5 {version['raw_md5']} ({version['status']})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--new-data-version", action="store_true", help="accept raw data dvc.lock does not record")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)  # a named error, exit 2, before Prefect starts
    from flows.prepare import prepare_flow

    return run_entry(
        lambda: summary(prepare_flow(cfg, args.params, args.new_data_version)), warm_up=step_imports(cfg, "prepare")
    )
