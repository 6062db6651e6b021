"""`vigil score [FILE --source NAME]`: the champion scores the landing folder's new files into the
alerts store (the ``score`` flow); with FILE, the file is first copied into the landing folder
as an arrival of series NAME."""

from __future__ import annotations

import argparse
import os
import shutil
import uuid
from pathlib import Path

from components.datasets import DataError
from components.text import one_line
from tasks.scoring import SUFFIXES, being_written, source_name_problem
from vigil.config import ConfigError, load_config, with_cluster
from vigil.entry import add_cluster_arguments, run_entry


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("file", nargs="?", type=Path, help="a file to score now (copied into the landing folder)")
    parser.add_argument("--source", help="the series FILE belongs to (its landing sub-folder)")
    parser.add_argument("--no-wait", action="store_true", help="refuse instead of waiting for a scoring run here")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    def body() -> str:
        cfg = with_cluster(load_config(args.params), args.workers, args.scheduler)
        if args.file is not None:
            if not args.source:
                raise ConfigError("give --source NAME with a file: the series it belongs to")
            land(args.file, Path(cfg.scoring.landing), args.source)
        from flows.score import score_flow  # here, not at the top: building the command tree loads no flow

        return summary(score_flow(cfg, wait_for_lock=not args.no_wait))

    return run_entry(body)
