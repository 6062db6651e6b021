"""The `prepare` flow (DVC stage ``prepare``): data version check → validation → prepare.

Stops before writing anything if the data version is refused or validation fails.
Run alone: ``python -m flows.prepare [--params FILE] [--new-data-version]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from prefect import flow

from tasks.data import ensure_generated, prepare_data
from tasks.validation import validate_raw
from tasks.versioning import check_data_version, record_data_version

from .config import load_config, params_hash
from .entry import run_entry
from .run_lock import holds_checkout
from .workspace import Workspace


@flow(name="prepare")
@holds_checkout
def prepare_flow(
    params: str = "params.yaml", new_data_version: bool = False, repo_root: str = ".", wait_for_lock: bool = True
) -> dict:
    ws = Workspace.at(repo_root)
    cfg = load_config(ws.root / params)
    d, p = cfg.dataset, cfg.preprocessing
    source = d.source()
    allow_new = new_data_version
    if ensure_generated(source):
        allow_new = True  # regenerated from params: a new version by construction
    version = check_data_version(ws.root, d.root, params_hash(cfg), allow_new)
    validate_raw(
        source, ws.reports / "validation.json", min_rows=d.min_rows, min_value=d.min_value, max_value=d.max_value
    )
    prepare_data(
        source,
        scaler=p.scaler,
        clip=p.clip,
        validation_fraction=p.validation_fraction,
        detectors=cfg.detectors,
        raw_md5=version.raw_md5,
        out_dir=ws.processed,
    )
    under_dvc = "DVC_STAGE" in os.environ  # `dvc repro` writes dvc.lock itself
    # dvc.lock describes the stages of params.yaml; data read under another params file is not
    # what the prepare stage tracks, so it runs as "new" without being written there.
    if version.status == "new" and not under_dvc and Path(params).name == "params.yaml":
        record_data_version(ws.root, "prepare")
    return version.__dict__


def summary(version: dict) -> str:
    return f"prepared: raw {version['raw_path']} md5 {version['raw_md5']} ({version['status']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.prepare", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")
    parser.add_argument("--new-data-version", action="store_true")
    args = parser.parse_args(argv)
    return run_entry(lambda: summary(prepare_flow(args.params, args.new_data_version)))


if __name__ == "__main__":
    sys.exit(main())
