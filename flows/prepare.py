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

from components.datasets import get_kind
from tasks.data import ensure_generated, prepare_data
from tasks.validation import validate_raw
from tasks.versioning import check_data_version, record_data_version

from .config import Config, ConfigError, load_config, params_hash
from .entry import run_entry
from .feedback_export import export_flow
from .logs import make_telemetry
from .run_lock import holds_checkout
from .workspace import Workspace


@flow(name="prepare")
@holds_checkout
def prepare_flow(
    params: str = "params.yaml",
    new_data_version: bool = False,
    repo_root: str = ".",
    wait_for_lock: bool = True,
    run_id: str | None = None,
    cfg: Config | None = None,
) -> dict:
    """Standalone (no ``run_id``) it publishes data/processed and the validation report, and
    records a new data version in dvc.lock, once it has succeeded; inside the pipeline it
    writes into the run's folder and the pipeline publishes at the end. ``cfg``: the
    parameters, parsed once by the caller (else read from ``params``)."""
    ws = Workspace.at(repo_root)
    cfg = cfg or load_config(ws.root / params)
    d, p = cfg.dataset, cfg.preprocessing
    check_root_is_portable(ws.root, d.root)
    out = ws.run_folder(run_id)
    source = d.source()
    allow_new = new_data_version
    if ensure_generated(source):
        allow_new = True  # regenerated from params: a new version by construction
    log_format = get_kind(d.kind).log_format
    if log_format is not None and make_telemetry(ws.root, cfg.logs, log_format)["rebuilt"]:
        allow_new = True  # made from the logs just now: a new version only if the logs or settings changed
    version = check_data_version(ws.root, d.root, params_hash(cfg), allow_new)
    validate_raw(
        source, out.reports / "validation.json", min_rows=d.min_rows, min_value=d.min_value, max_value=d.max_value
    )
    if "DVC_STAGE" not in os.environ:  # under DVC the feedback stage exports it, before this one
        export_flow(params, str(ws.root), cfg=cfg)
    prepare_data(
        source,
        scaler=p.scaler,
        clip=p.clip,
        validation_fraction=p.validation_fraction,
        detectors=cfg.detectors,
        raw_md5=version.raw_md5,
        out_dir=out.processed,
        feedback_folder=ws.root / cfg.feedback.folder,
        model_name_override=cfg.registry.model_name,
    )
    if run_id is None:
        out.publish("processed", "reports")
        record_if_new(ws, params, version.status)
        out.discard()
    return version.__dict__


def check_root_is_portable(repo_root: Path, raw_root: Path) -> None:
    """dvc.lock records dataset.root as written: an absolute path into this checkout would tie
    the lock to one machine's folders, so it is refused (a path outside is kept as given)."""
    root = Path(raw_root)
    if root.is_absolute() and root.resolve().is_relative_to(repo_root):
        relative = root.resolve().relative_to(repo_root)
        raise ConfigError(
            f"dataset.root: {root} is inside this checkout; write it relative ({relative}) so that "
            f"dvc.lock stays valid in every clone"
        )


def record_if_new(ws: Workspace, params: str, status: str) -> None:
    """Write a new data version to dvc.lock (after the data it describes is published)."""
    under_dvc = "DVC_STAGE" in os.environ  # `dvc repro` writes dvc.lock itself
    # dvc.lock describes the stages of params.yaml; data read under another params file is not
    # what the prepare stage tracks, so it runs as "new" without being written there.
    if status == "new" and not under_dvc and Path(params).name == "params.yaml":
        record_data_version(ws.root, "prepare")


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
