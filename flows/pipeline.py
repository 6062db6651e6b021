"""The `pipeline` flow: `prepare` → `tune` → `train` → `evaluate`, each a sub-flow (`tune` only
writes "tuning is off" unless ``tuning.enabled`` is set).

Each step reads and writes files (``data/processed``, ``tuned``, ``models``, ``reports``), so `dvc repro`
can run them as separate stages (``vigil stage <name>``) and `vigil run` as one flow; both do
the same work.
"""

from __future__ import annotations

from prefect import flow

from tasks.versioning import record_if_new
from vigil.config import Config
from vigil.run_lock import holds_checkout
from vigil.run_names import dataset_run
from vigil.workspace import PARTS, Workspace

from .evaluate import evaluate_flow
from .prepare import prepare_flow
from .train import train_flow
from .tune import tune_flow


@flow(name="pipeline", flow_run_name=dataset_run("pipeline"))
@holds_checkout
def pipeline(
    cfg: Config,
    params: str = "params.yaml",
    new_data_version: bool = False,
    repo_root: str = ".",
    verbose: bool = False,
    wait_for_lock: bool = True,
) -> dict:
    """The whole run, holding the checkout from the first step to the last (vigil/run_lock.py),
    in its own folder: data/processed, tuned/, models/, reports/ and dvc.lock change only once every
    step has succeeded (vigil/workspace.py). ``cfg``: the parameters, parsed once by the caller
    from the file ``params`` (a new data version goes to dvc.lock only for params.yaml's)."""
    ws = Workspace.at(repo_root)
    run = ws.run_folder()
    version = prepare_flow(cfg, params, new_data_version, repo_root, run_id=run.run_id)
    tuned = tune_flow(cfg, repo_root, run_id=run.run_id)
    train_flow(cfg, repo_root, verbose, run_id=run.run_id)
    out = evaluate_flow(cfg, repo_root, run_id=run.run_id)
    run.publish(*PARTS)
    record_if_new(run.root, params, version["status"])
    run.discard()
    out["prepare"] = version
    out["tune"] = tuned
    return out
