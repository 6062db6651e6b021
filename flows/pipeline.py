"""The `pipeline` flow: `prepare` → `train` → `evaluate`, each a sub-flow.

Each step reads and writes files (``data/processed``, ``models``, ``reports``), so `dvc repro`
can run them as separate stages (``python -m flows.<stage>``) and `vigil run` as one flow;
both do the same work.
"""

from __future__ import annotations

from prefect import flow

from .evaluate import evaluate_flow
from .prepare import prepare_flow
from .run_lock import holds_checkout
from .train import train_flow


@flow(name="pipeline")
@holds_checkout
def pipeline(
    params: str = "params.yaml",
    new_data_version: bool = False,
    repo_root: str = ".",
    verbose: bool = False,
    wait_for_lock: bool = True,
) -> dict:
    """The whole run, holding the checkout from the first step to the last (flows/run_lock.py)."""
    version = prepare_flow(params, new_data_version, repo_root)
    train_flow(params, repo_root, verbose)
    out = evaluate_flow(params, repo_root)
    out["prepare"] = version
    return out
