"""The ``feedback-export`` flow (DVC stage ``feedback``, `vigil feedback export`; the pipeline's
prepare runs it first outside DVC): the alerts store's verdicts written as the feedback
dataset (``feedback.folder``, `tasks.feedback`), which prepare reads for the model it trains.
"""

from __future__ import annotations

from prefect import flow

from tasks.alerts import store_exists
from tasks.feedback import export_feedback
from tasks.files import write_atomic
from tasks.urls import storage_url
from vigil.config import Config
from vigil.workspace import Workspace


@flow(name="feedback-export")
def export_flow(cfg: Config, repo_root: str = ".") -> dict:
    """The alerts store's verdicts as the feedback dataset (``feedback.folder``)."""
    ws = Workspace.at(repo_root)
    store = storage_url(cfg.scoring.store, ws.root)
    folder = ws.root / cfg.feedback.folder
    if not store_exists(store):
        write_atomic(folder / "index.json", b"{}\n")  # an empty dataset: nothing reviewed yet
        return {}
    return export_feedback(store, folder, cfg.feedback.context_steps)
