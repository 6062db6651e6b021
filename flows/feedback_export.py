"""The ``feedback`` flow (DVC stage ``feedback``, `vigil feedback export`; the pipeline's
prepare runs it first outside DVC): the alerts store's verdicts written as the feedback
dataset (``feedback.folder``, `tasks.feedback`), which prepare reads for the model it trains.
Run alone: ``python -m flows.feedback_export [--params FILE]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import flow

from tasks.feedback import export_feedback
from tasks.files import write_atomic
from tasks.urls import storage_url

from .config import Config, load_config
from .entry import run_entry
from .workspace import Workspace


def store_exists(url: str) -> bool:
    """False for a SQLite store whose file is not there yet (nothing to read; not made here)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return not parsed.drivername.startswith("sqlite") or Path(parsed.database or "").is_file()


@flow(name="feedback-export")
def export_flow(params: str = "params.yaml", repo_root: str = ".", cfg: Config | None = None) -> dict:
    """The alerts store's verdicts as the feedback dataset (``feedback.folder``). ``cfg``: the
    parameters, parsed once by the caller (else read from ``params``)."""
    ws = Workspace.at(repo_root)
    cfg = cfg or load_config(ws.root / params)
    store = storage_url(cfg.scoring.store, ws.root)
    folder = ws.root / cfg.feedback.folder
    if not store_exists(store):
        write_atomic(folder / "index.json", b"{}\n")  # an empty dataset: nothing reviewed yet
        return {}
    return export_feedback(store, folder, cfg.feedback.context_steps)


def export_summary(exported: dict) -> str:
    if not exported:
        return "feedback: no reviewed incident in the alerts store; the feedback dataset is empty"
    lines = []
    for model, record in exported.items():
        for series, s in record["series"].items():
            lines.append(
                f"feedback for {model}, series {series}: {s['steps']} steps ({s['anomalous']} anomalous, "
                f"{s['normal']} normal, {s['left_out']} left out, {s['new_normal']} new normal)"
                + (f"; {s['without_values']} without stored values" if s["without_values"] else "")
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.feedback_export", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")
    args = parser.parse_args(argv)
    return run_entry(lambda: export_summary(export_flow(args.params)))


if __name__ == "__main__":
    sys.exit(main())
