"""The Prefect flows: `prepare` → `train` → `evaluate`, and `pipeline` that chains them.

Each step reads and writes files (``data/processed``, ``models``, ``reports``), so `dvc repro`
can run them as separate stages and `vigil run` as one flow; both do the same work.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefect import flow
from prefect.logging import get_run_logger

from tasks.data import Processed, ensure_synthetic, prepare_data
from tasks.registry import register
from tasks.training import evaluate_detector, train_detector
from tasks.validation import validate_raw
from tasks.versioning import DataVersion, check_data_version, dvc_hash, git_state, record_data_version, recorded_hashes

from .config import Config, load_config, params_hash
from .core import format_table

PROCESSED = Path("data/processed")
MODELS = Path("models")
REPORTS = Path("reports")


def _paths(repo_root: Path) -> tuple[Path, Path, Path]:
    return repo_root / PROCESSED, repo_root / MODELS, repo_root / REPORTS


@flow(name="prepare")
def prepare_flow(params: str = "params.yaml", new_data_version: bool = False, repo_root: str = ".") -> dict:
    """Data version check → validation → prepare. Stops before writing anything if the data
    version is refused or validation fails."""
    root = Path(repo_root).resolve()
    cfg = load_config(root / params)
    processed, _, reports = _paths(root)
    allow_new = new_data_version
    if cfg.dataset.kind == "synthetic" and ensure_synthetic(cfg):
        allow_new = True  # regenerated from params: a new version by construction
    version = check_data_version(root, cfg.dataset.root, params_hash(cfg), allow_new)
    validate_raw(cfg, reports / "validation.json")
    prepare_data(cfg, version.raw_md5, processed)
    under_dvc = "DVC_STAGE" in os.environ  # `dvc repro` writes dvc.lock itself
    # dvc.lock describes the stages of params.yaml; data read under another params file is not
    # what the prepare stage tracks, so it runs as "new" without being written there.
    if version.status == "new" and not under_dvc and Path(params).name == "params.yaml":
        record_data_version(root, "prepare")
    return version.__dict__


@flow(name="train")
def train_flow(params: str = "params.yaml", repo_root: str = ".", verbose: bool = False) -> dict:
    """Fit every detector named in params, one task each (retried once on failure)."""
    root = Path(repo_root).resolve()
    cfg = load_config(root / params)
    processed, models, _ = _paths(root)
    futures = [train_detector.submit(name, p, processed, models, verbose) for name, p in cfg.detectors.items()]
    return {f.result()["name"]: f.result() for f in futures}


def current_version(root: Path, cfg: Config, processed: Path, meta: dict) -> DataVersion:
    commit, dirty = git_state(root)
    raw = (root / cfg.dataset.root).resolve()
    recorded = recorded_hashes(root).get(raw)
    return DataVersion(str(cfg.dataset.root), meta["raw_md5"], recorded,
                       "recorded" if recorded == meta["raw_md5"] else "new", commit, dirty, params_hash(cfg),
                       dvc_hash(root, processed))


@flow(name="evaluate")
def evaluate_flow(params: str = "params.yaml", repo_root: str = ".") -> dict:
    """Threshold on validation, evaluate on test, log to MLflow, register and maybe promote."""
    logger = get_run_logger()
    root = Path(repo_root).resolve()
    cfg = load_config(root / params)
    processed, models, reports = _paths(root)
    results = [evaluate_detector(name, processed, models, cfg) for name in cfg.detectors]
    train_info = {n: json.loads((models / f"{n}.json").read_text()) for n in cfg.detectors}
    meta = Processed(processed).meta
    version = current_version(root, cfg, processed, meta)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "metrics.json").write_text(json.dumps(
        {r.name: {"test": r.test, "validation": r.validation} for r in results}, indent=1, sort_keys=True) + "\n")
    decision = register(cfg, root, processed, models, results, version, reports / "validation.json", train_info)
    table = format_table(
        f"dataset {meta['dataset']} (data md5 {version.raw_md5}, {version.status})",
        results, cfg.registry.selection_metric)
    logger.info("\n%s", table)
    return {"table": table, "decision": decision, "version": version.__dict__}


@flow(name="pipeline")
def pipeline(params: str = "params.yaml", new_data_version: bool = False, repo_root: str = ".",
             verbose: bool = False) -> dict:
    """The whole run: prepare → train → evaluate."""
    version = prepare_flow(params, new_data_version, repo_root)
    train_flow(params, repo_root, verbose)
    out = evaluate_flow(params, repo_root)
    out["prepare"] = version
    return out
