"""Data versions: DVC hashes of the raw input against dvc.lock, the git commit, the params hash."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from prefect import task

from components.datasets import DataError


class DataVersionError(DataError):
    """The raw data's DVC hash is not the one dvc.lock records (a refused data version)."""


@dataclass
class DataVersion:
    raw_path: str
    raw_md5: str
    recorded_md5: str | None  # what dvc.lock holds for raw_path, if anything
    status: str  # "recorded" (matches dvc.lock) or "new" (accepted as a new version)
    git_commit: str
    git_dirty: bool
    params_hash: str
    processed_md5: str | None = None

    def tags(self) -> dict[str, str]:
        return {f"vigil.{k}": str(v) for k, v in asdict(self).items()}


def dvc_hash(repo_root: Path, path: Path) -> str:
    """The md5 DVC records for a file or folder (``<md5>.dir`` for folders), as `dvc repro` would."""
    from dvc.dependency import Dependency
    from dvc.repo import Repo
    from dvc.stage import Stage

    with Repo(str(repo_root)) as repo:
        return Dependency(Stage(repo), str(path)).get_hash().value


def recorded_hashes(repo_root: Path) -> dict[Path, str]:
    """Every path dvc.lock records (deps and outs of all stages), resolved, with its md5."""
    lock = repo_root / "dvc.lock"
    if not lock.is_file():
        return {}
    doc = yaml.safe_load(lock.read_text()) or {}
    out: dict[Path, str] = {}
    for stage in (doc.get("stages") or {}).values():
        for entry in (stage.get("deps") or []) + (stage.get("outs") or []):
            if "md5" in entry:
                out[(repo_root / entry["path"]).resolve()] = entry["md5"]
    return out


def _git(repo_root: Path, *args: str) -> subprocess.CompletedProcess | None:
    """``git ARGS`` in ``repo_root``, or None where git is not installed (Vigil's image has no
    git: its code is the commit on the image's label)."""
    if shutil.which("git") is None:
        return None
    return subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True)


def git_state(repo_root: Path) -> tuple[str, bool]:
    """(HEAD's commit, whether tracked files changed); ("none", False) outside git or without it."""
    head = _git(repo_root, "rev-parse", "HEAD")
    if head is None:
        return "none", False
    commit = head.stdout.strip() if head.returncode == 0 else "none"
    dirty = bool(_git(repo_root, "status", "--porcelain", "--untracked-files=no").stdout.strip())
    return commit, dirty


def last_commit_of(repo_root: Path, paths: list[str]) -> str:
    """The newest commit that changed any of ``paths`` (what a report depends on): a report
    reproduced at a later commit that changed none of them names the same one. "none" outside
    git, without it, or where no commit touched them."""
    out = _git(repo_root, "log", "-1", "--format=%H", "--", *paths)
    return (out.stdout.strip() or "none") if out is not None and out.returncode == 0 else "none"


@task(name="data version check")
def check_data_version(repo_root: Path, raw_path: Path, params_hash: str, allow_new: bool) -> DataVersion:
    """Compare the raw input's DVC hash with dvc.lock before anything else runs.

    A mismatch (or an input dvc.lock has never seen) is refused unless ``allow_new``; then the
    run goes on as a new data version, which `record_data_version` writes to dvc.lock once
    validation and preparation have succeeded.
    """
    repo_root = Path(repo_root).resolve()
    raw = (repo_root / raw_path).resolve()
    if not raw.exists():
        raise DataVersionError(f"raw data {raw_path} does not exist")
    current = dvc_hash(repo_root, raw)
    recorded = recorded_hashes(repo_root).get(raw)
    commit, dirty = git_state(repo_root)
    if recorded == current:
        status = "recorded"
    elif allow_new:
        status = "new"
    elif recorded is None:
        raise DataVersionError(
            f"raw data {raw_path} (md5 {current}) is not recorded in dvc.lock. Run `dvc repro`, or "
            f"`vigil run --new-data-version` to accept it as a new data version."
        )
    else:
        raise DataVersionError(
            f"raw data {raw_path} has md5 {current} but dvc.lock records {recorded}: the data changed since it "
            f"was versioned. Restore it (`dvc checkout`), or accept it with `vigil run --new-data-version`."
        )
    return DataVersion(str(raw_path), current, recorded, status, commit, dirty, params_hash)


def prepared_version(
    repo_root: Path, raw_path: Path, params_hash: str, processed_dir: Path, raw_md5: str
) -> DataVersion:
    """The lineage of data prepared earlier (its raw md5 as prepare recorded it), as the
    evaluate step tags its runs with."""
    repo_root = Path(repo_root).resolve()
    commit, dirty = git_state(repo_root)
    recorded = recorded_hashes(repo_root).get((repo_root / raw_path).resolve())
    return DataVersion(
        str(raw_path),
        raw_md5,
        recorded,
        "recorded" if recorded == raw_md5 else "new",
        commit,
        dirty,
        params_hash,
        dvc_hash(repo_root, processed_dir),
    )


@task(name="record data version")
def record_data_version(repo_root: Path, stage: str = "prepare") -> None:
    """Write the prepare stage's current deps and outs to dvc.lock (and the DVC cache)."""
    from dvc.repo import Repo

    with Repo(str(Path(repo_root).resolve())) as repo:
        repo.commit(stage, force=True)


def record_if_new(repo_root: Path, params: str, status: str) -> None:
    """Write a new data version to dvc.lock (after the data it describes is published);
    ``params``: the parameters file the run read."""
    under_dvc = "DVC_STAGE" in os.environ  # `dvc repro` writes dvc.lock itself
    # dvc.lock describes the stages of params.yaml; data read under another params file is not
    # what the prepare stage tracks, so it runs as "new" without being written there.
    if status == "new" and not under_dvc and Path(params).name == "params.yaml":
        record_data_version(repo_root, "prepare")
