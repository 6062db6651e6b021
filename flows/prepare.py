"""The `prepare` flow (DVC stage ``prepare``): data version check → validation → prepare.

Stops before writing anything if the data version is refused or validation fails.
"""

from __future__ import annotations

import os

from prefect import flow

from components.datasets import get_kind
from tasks.data import ensure_generated, prepare_data
from tasks.logs import make_telemetry
from tasks.validation import validate_raw
from tasks.versioning import check_data_version, record_if_new
from vigil.config import Config, check_root_is_portable, params_hash
from vigil.run_lock import holds_checkout
from vigil.run_names import dataset_run
from vigil.workspace import Workspace

from .feedback_export import export_flow


@flow(name="prepare", flow_run_name=dataset_run("prepare"))
@holds_checkout
def prepare_flow(
    cfg: Config,
    params: str = "params.yaml",
    new_data_version: bool = False,
    repo_root: str = ".",
    wait_for_lock: bool = True,
    run_id: str | None = None,
) -> dict:
    """Standalone (no ``run_id``) it publishes data/processed and the validation report, and
    records a new data version in dvc.lock (only for ``params`` named params.yaml, the file
    ``cfg`` was read from), once it has succeeded; inside the pipeline it writes into the
    run's folder and the pipeline publishes at the end."""
    ws = Workspace.at(repo_root)
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
        export_flow(cfg, str(ws.root))
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
        record_if_new(ws.root, params, version.status)
        out.discard()
    return version.__dict__
