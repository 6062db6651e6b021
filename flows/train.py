"""The `train` flow (DVC stage ``train``, `vigil stage train`): fit every detector named in
params, one task each (retried once on failure), with the parameters `tune` chose where
``tuning.enabled`` is set."""

from __future__ import annotations

from prefect import flow

from tasks.fit import fit_detector, fit_params
from vigil.config import Config
from vigil.run_lock import holds_checkout
from vigil.run_names import dataset_run
from vigil.workspace import Workspace


@flow(name="train", flow_run_name=dataset_run("train"))
@holds_checkout
def train_flow(
    cfg: Config, repo_root: str = ".", verbose: bool = False, wait_for_lock: bool = True, run_id: str | None = None
) -> dict:
    """Standalone (no ``run_id``) it reads the published data/processed and publishes models/
    whole once every detector is fitted; inside the pipeline it works in the run's folder."""
    ws = Workspace.at(repo_root)
    out = ws.run_folder(run_id)
    inputs = out if run_id else ws
    chosen = fit_params(cfg.detectors, cfg.tuning.enabled, inputs.tuned)
    futures = [
        fit_detector.submit(name, p, inputs.processed, out.models, verbose, tuning=t) for name, (p, t) in chosen.items()
    ]
    info = {f.result()["name"]: f.result() for f in futures}
    if run_id is None:
        out.publish("models")
        out.discard()
    return info
