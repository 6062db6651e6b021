"""The `pipeline` flow: `prepare` → `tune` → `train` → `evaluate`, each a sub-flow (`tune` only
writes "tuning is off" unless ``tuning.enabled`` is set).

Each step reads and writes files (``data/processed``, ``tuned``, ``models``, ``reports``), so `dvc repro`
can run them as separate stages (``python -m flows.<stage>``) and `vigil run` as one flow;
both do the same work.
"""

from __future__ import annotations

from prefect import flow

from .config import Config, load_config
from .evaluate import evaluate_flow
from .prepare import prepare_flow, record_if_new
from .run_lock import holds_checkout
from .train import train_flow
from .tune import tune_flow
from .workspace import PARTS, Workspace


@flow(name="pipeline")
@holds_checkout
def pipeline(
    params: str = "params.yaml",
    new_data_version: bool = False,
    repo_root: str = ".",
    verbose: bool = False,
    wait_for_lock: bool = True,
    cfg: Config | None = None,
) -> dict:
    """The whole run, holding the checkout from the first step to the last (flows/run_lock.py),
    in its own folder: data/processed, tuned/, models/, reports/ and dvc.lock change only once every
    step has succeeded (flows/workspace.py). The parameters are parsed once (``cfg`` from the
    caller, else ``params`` read here) and handed to every step."""
    ws = Workspace.at(repo_root)
    cfg = cfg or load_config(ws.root / params)
    run = ws.run_folder()
    version = prepare_flow(params, new_data_version, repo_root, run_id=run.run_id, cfg=cfg)
    tuned = tune_flow(params, repo_root, run_id=run.run_id, cfg=cfg)
    train_flow(params, repo_root, verbose, run_id=run.run_id, cfg=cfg)
    out = evaluate_flow(params, repo_root, run_id=run.run_id, cfg=cfg)
    run.publish(*PARTS)
    record_if_new(run, params, version["status"])
    run.discard()
    out["prepare"] = version
    out["tune"] = tuned
    return out
