"""The `tune` flow (DVC stage ``tune``, `vigil tune`): Optuna tuning of every detector that has a
search space in params (``tuning.spaces``), on train and the validation head only, fanned out
over detectors (``tuning.concurrency`` at once). It writes ``tuned/params.json``: each
detector's parameters for train (the best trial's, or the configured ones where no trial beat
them), its study and the figures behind the choice. With ``tuning.enabled: false`` it writes
that file saying so, and train fits the configured parameters.

Several workers (the ``vigil-tune`` deployment on the ``gpu`` work pool, `flows/deployments.py`)
share one study per detector through ``tuning.storage``.
"""

from __future__ import annotations

import json

from prefect import flow

from tasks.cluster import handed_over, task_runner
from tasks.fit import TUNED_FILE
from tasks.registry import setup_mlflow
from tasks.tune import tune_detector
from tasks.urls import storage_url
from vigil.config import Config
from vigil.run_lock import holds_checkout
from vigil.run_names import dataset_run
from vigil.workspace import Workspace

from .cluster import fan_out


@flow(name="tune", flow_run_name=dataset_run("tune"))
@holds_checkout
def tune_flow(cfg: Config, repo_root: str = ".", wait_for_lock: bool = True, run_id: str | None = None) -> dict:
    """Standalone (no ``run_id``) it reads the published data/processed and publishes tuned/ at
    the end; inside the pipeline it works in the run's folder."""
    ws = Workspace.at(repo_root)
    out = ws.run_folder(run_id)
    inputs = out if run_id else ws
    t = cfg.tuning
    result: dict = {"enabled": t.enabled, "objective": t.objective, "detectors": {}, "untuned": []}
    if t.enabled:
        spaces, result["untuned"] = cfg.tuning_jobs()
        reg = cfg.registry
        common = {
            "objective": t.objective,
            "n_trials": t.n_trials,
            "timeout": t.timeout,
            "pruner": t.pruner,
            "seed": t.seed,
            "storage": storage_url(t.storage, ws.root),
            "label_free": t.label_free.model_dump(),
            "vus_window": cfg.evaluation.vus_window,
            "tracking": {
                "tracking_uri": storage_url(reg.tracking_uri, ws.root),  # the same store from any worker's folder
                "experiment": reg.experiment,
                "artifact_root": ws.root / reg.artifact_root,
            },
        }
        if cfg.cluster.distributed:
            # `cluster.trials_workers` tasks per detector on the cluster, sharing its one study in
            # tuning.storage (which every worker must reach), each drawing from its own seed; they
            # stop together once the study holds n_trials. A detector's summary is its last
            # task's, which saw every trial. MLflow's store is made and migrated here, once:
            # workers opening a new one at once collide.
            setup_mlflow(**common["tracking"])
            tasks = [
                {"name": name, "fixed": cfg.detectors[name], "space": space, "processed_dir": inputs.processed,
                 **common, "seed": common["seed"] + k}
                for name, space in spaces.items()
                for k in range(cfg.cluster.trials_workers)
            ]  # fmt: skip
            summaries = result["detectors"]
            with handed_over(tune_detector, tasks, lambda s: summaries.update({s["detector"]: s})) as work:
                fan_out.with_options(task_runner=task_runner(cfg.cluster))(f"tune: {len(spaces)} studies", work)
        else:
            running = []
            for name, space in spaces.items():
                while len(running) >= t.concurrency:  # at most `concurrency` detectors at once
                    done = running.pop(0)
                    result["detectors"][done[0]] = done[1].result()
                future = tune_detector.submit(name, cfg.detectors[name], space, inputs.processed, **common)
                running.append((name, future))
            for name, future in running:
                result["detectors"][name] = future.result()
    out.tuned.mkdir(parents=True, exist_ok=True)
    (out.tuned / TUNED_FILE).write_text(json.dumps(result, indent=1, sort_keys=True, default=str) + "\n")
    if run_id is None:
        out.publish("tuned")
        out.discard()
    return result
