"""The `score` flow (`vigil score`, deployment ``vigil-score``): every file waiting in the
landing folder (``scoring.landing``) scored by ``models:/<name>@champion`` into the alerts
store (``scoring.store``), with the run's counts in MLflow. One scoring run per checkout at a
time (the flock ``.vigil/score.lock``); it does not wait for training runs, which write
nothing it reads but the registry.

Run alone: ``python -m flows.score [--params FILE] [FILE --source NAME]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

from prefect import flow

from components.datasets import DataError
from components.text import one_line
from tasks.data import model_name as default_model_name
from tasks.scoring import (
    SUFFIXES,
    being_written,
    log_scoring_run,
    registry_errors,
    score_landing,
    source_name_problem,
)
from tasks.urls import storage_url

from .config import Config, ConfigError, load_config
from .entry import run_entry
from .feedback import source_kind
from .remedies import remedy_settings
from .run_lock import checkout_lock
from .workspace import Workspace


def scoring_model(cfg: Config, ws: Workspace) -> str:
    """``scoring.model_name``, else ``registry.model_name``, else the name the pipeline gives
    the model of the prepared dataset (vigil-<dataset>, as `data/processed/meta.json` names it)."""
    name = cfg.scoring.model_name or cfg.registry.model_name
    if name:
        return name
    meta = ws.processed / "meta.json"
    if not meta.is_file():
        raise ConfigError(
            "scoring.model_name is not set and there is no prepared dataset to name the model after: "
            "set scoring.model_name to the registered model to score with (models:/<name>@champion)"
        )
    return default_model_name(json.loads(meta.read_text())["dataset"])


@flow(name="score")
def score_flow(params: str = "params.yaml", repo_root: str = ".", wait_for_lock: bool = True) -> dict:
    ws = Workspace.at(repo_root)
    cfg = load_config(ws.root / params)
    sc = cfg.scoring
    tracking = storage_url(cfg.registry.tracking_uri, ws.root)  # a relative SQLite store is the checkout's
    with checkout_lock(ws.root, wait=wait_for_lock, name="score"):
        result = score_landing(
            storage_url(sc.store, ws.root),
            tracking,
            scoring_model(cfg, ws),
            str(ws.root / sc.landing),
            sc.time_column,
            sc.keep_values,
            remedies=remedy_settings(cfg, ws.root),
            kind=source_kind(cfg, ws),
            artifact_root=ws.root / cfg.registry.artifact_root,
            settle_seconds=sc.settle_seconds,
        )
        with registry_errors(tracking):
            log_scoring_run(tracking, sc.experiment, ws.root / cfg.registry.artifact_root, result)
    return result


def summary(result: dict) -> str:
    changed = f" (champion changed from version {result['previous_version']})" if result["previous_version"] else ""
    lines = [
        f"scored with {result['model']} version {result['version']} ({result['detector']}){changed}: "
        f"{result['files_scored']} file(s), {result['steps']} steps in, {result['steps_scored']} scored, "
        f"{result['alerts']} alert(s) in {result['incidents']} new incident(s); "
        f"{result['files_quarantined']} file(s) quarantined"
        + (f", {result['files_waiting']} still being written" if result["files_waiting"] else "")
        + (f", {result['files_refused']} refused and left in place" if result["files_refused"] else "")
    ]
    if result["incidents"]:
        ranker = result.get("ranker_version")
        by = f"remedy ranker version {ranker}" if ranker else "the untrained remedy ranker (no outcome reported yet)"
        lines.append(f"remedies of the new incidents ranked by {by}")
    for o in result["outcomes"]:
        if o["status"] == "quarantined":
            lines.append(f"  quarantined {one_line(o['source'])}/{one_line(o['file'])}: {one_line(o['reason'][0])}")
    for k in result["skipped"]:
        if not k["waiting"]:
            lines.append(f"  left in place {one_line(k['path'])}: {one_line(k['reason'])}")
    return "\n".join(lines)


def land(file: Path, landing: Path, source: str) -> Path:
    """Copy ``file`` into the landing folder as an arrival of ``source``. The source must be a
    plain folder name (no ``..``, no separator, no control characters) and the target must stay
    inside the landing folder; a name taken there is refused: the file waiting under it would
    be lost."""
    problem = source_name_problem(source)
    if problem:
        raise ConfigError(f"--source {one_line(source)!r}: {problem}; give the series' name as one folder name")
    if file.suffix.lower() not in SUFFIXES or being_written(file.name) or source_name_problem(file.name):
        raise DataError(f"{one_line(file)}: give a .csv or .parquet file with a plain, visible name")
    if not file.is_file():
        raise DataError(f"{one_line(file)}: no such file")
    root = landing.resolve()
    target = landing / source / file.name
    if not target.parent.resolve().is_relative_to(root):
        raise DataError(f"{one_line(target.parent)} leads out of the landing folder {root}: not copying {file}")
    if target.exists() or target.is_symlink():
        raise DataError(f"{target} is already waiting to be scored; rename {file} or wait for that run")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")  # never read as an arrival
    shutil.copy2(file, partial)
    try:  # whole, or not at all: scoring never meets half of it; and a file arriving meanwhile stays
        os.link(partial, target)
    except FileExistsError:
        raise DataError(f"{target} is already waiting to be scored; rename {file} or wait for that run") from None
    finally:
        partial.unlink()
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.score", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("file", nargs="?", type=Path, help="a file to score now (copied into the landing folder)")
    parser.add_argument("--source", help="the series FILE belongs to (its landing sub-folder)")
    parser.add_argument("--no-wait", action="store_true", help="refuse instead of waiting for a scoring run here")


def run(args: argparse.Namespace) -> int:
    def body() -> str:
        if args.file is not None:
            if not args.source:
                raise ConfigError("give --source NAME with a file: the series it belongs to")
            cfg = load_config(args.params)
            land(args.file, Path(cfg.scoring.landing), args.source)
        return summary(score_flow(params=args.params, wait_for_lock=not args.no_wait))

    return run_entry(body)


if __name__ == "__main__":
    sys.exit(main())
