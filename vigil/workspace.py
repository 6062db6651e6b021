"""Where a run reads and writes. Published files are the DVC stage outputs at the repository
root (``data/processed``, ``tuned``, ``models``, ``reports``); a run writes into its own folder under
``.vigil/runs/<run id>`` and publishes there from only once it has succeeded, so a run that
fails at any step leaves the published files as they were (its folder stays, for a look).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

PARTS = ("processed", "tuned", "models", "reports")


@dataclass(frozen=True)
class Workspace:
    root: Path  # the checkout
    base: Path | None = None  # a run's own folder; None: the published places

    @classmethod
    def at(cls, repo_root: str | Path) -> Workspace:
        return cls(Path(repo_root).resolve())

    def run_folder(self, run_id: str | None = None) -> Workspace:
        """This checkout's folder for run ``run_id`` (a new id: timestamp and process)."""
        run_id = run_id or f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        return Workspace(self.root, self.root / ".vigil" / "runs" / run_id)

    @property
    def run_id(self) -> str | None:
        return self.base.name if self.base else None

    @property
    def processed(self) -> Path:
        return (self.base or self.root) / "data" / "processed"

    @property
    def tuned(self) -> Path:
        return (self.base or self.root) / "tuned"

    @property
    def models(self) -> Path:
        return (self.base or self.root) / "models"

    @property
    def reports(self) -> Path:
        return (self.base or self.root) / "reports"

    def publish(self, *parts: str) -> None:
        """Move this run's ``parts`` into the published places: folders swapped whole by rename
        (data/processed, tuned, models), report files one by one with `os.replace`, each atomic."""
        if self.base is None:
            return
        published = Workspace(self.root)
        for part in parts:
            src, dst = getattr(self, part), getattr(published, part)
            if not src.exists():
                continue
            if part == "reports":
                dst.mkdir(parents=True, exist_ok=True)
                for f in src.iterdir():
                    os.replace(f, dst / f.name)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            old = self.base / f"{part}.replaced"
            if dst.exists():
                os.replace(dst, old)
            os.replace(src, dst)
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Remove this run's folder (after a successful publish)."""
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
