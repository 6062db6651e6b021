"""The `tune` flow (DVC stage ``tune``, `vigil tune`): Optuna tuning of every detector that has a
search space in params (``tuning.spaces``), on train and the validation head only, fanned out
over detectors (``tuning.concurrency`` at once). It writes ``tuned/params.json``: each
detector's parameters for train (the best trial's, or the configured ones where no trial beat
them), its study and the figures behind the choice. With ``tuning.enabled: false`` it writes
that file saying so, and train fits the configured parameters.

Run alone: ``python -m flows.tune [--params FILE]``. Several workers (the ``vigil-tune``
deployment on the ``gpu`` work pool, `flows/deployments.py`) share one study per detector
through ``tuning.storage``.
"""

from __future__ import annotations

import argparse
import json
import sys

from prefect import flow

from tasks.tune import tune_detector
from tasks.urls import storage_url

from .config import Config, load_config
from .entry import run_entry
from .run_lock import holds_checkout
from .workspace import Workspace

TUNED_FILE = "params.json"


def tuning_jobs(cfg: Config) -> tuple[dict[str, dict], list[str]]:
    """(detector -> its plain search space) for the detectors to tune, and the configured
    detectors left out for want of a space."""
    given = {n: cfg.tuning.spaces[n] for n in cfg.detectors if cfg.tuning.spaces.get(n)}
    spaces = {n: {p: r.spec() for p, r in space.items()} for n, space in given.items()}
    return spaces, [n for n in cfg.detectors if n not in spaces]


@flow(name="tune")
@holds_checkout
def tune_flow(
    params: str = "params.yaml",
    repo_root: str = ".",
    wait_for_lock: bool = True,
    run_id: str | None = None,
    cfg: Config | None = None,
) -> dict:
    """Standalone (no ``run_id``) it reads the published data/processed and publishes tuned/ at
    the end; inside the pipeline it works in the run's folder. ``cfg``: the parameters, parsed
    once by the caller (else read from ``params``)."""
    ws = Workspace.at(repo_root)
    cfg = cfg or load_config(ws.root / params)
    out = ws.run_folder(run_id)
    inputs = out if run_id else ws
    t = cfg.tuning
    result: dict = {"enabled": t.enabled, "objective": t.objective, "detectors": {}, "untuned": []}
    if t.enabled:
        spaces, result["untuned"] = tuning_jobs(cfg)
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
                "tracking_uri": reg.tracking_uri,
                "experiment": reg.experiment,
                "artifact_root": ws.root / reg.artifact_root,
            },
        }
        running = []
        for name, space in spaces.items():
            while len(running) >= t.concurrency:  # at most `concurrency` detectors at once
                done = running.pop(0)
                result["detectors"][done[0]] = done[1].result()
            running.append((name, tune_detector.submit(name, cfg.detectors[name], space, inputs.processed, **common)))
        for name, future in running:
            result["detectors"][name] = future.result()
    out.tuned.mkdir(parents=True, exist_ok=True)
    (out.tuned / TUNED_FILE).write_text(json.dumps(result, indent=1, sort_keys=True, default=str) + "\n")
    if run_id is None:
        out.publish("tuned")
        out.discard()
    return result


def summary(result: dict) -> str:
    if not result["enabled"]:
        return "tuning is off (tuning.enabled: false): train fits the configured parameters"
    lines = []
    for name, s in result["detectors"].items():
        t = s["trials"]
        lines.append(
            f"{name:16s} {s['objective_used']} configured {s['default_value']:.4f} -> best {s['best_value']:.4f} "
            f"({s['chosen']}); {t['complete']} complete, {t['pruned']} pruned, {t['failed']} failed; "
            f"{s['seconds']:.0f} s this run; study {s['study']}"
        )
    if result["untuned"]:
        lines.append(f"no search space in tuning.spaces, configured parameters kept: {', '.join(result['untuned'])}")
    storage = next(iter(result["detectors"].values()), {}).get("storage")
    if storage:
        lines.append(f"studies in {storage}; browse them: .venv/bin/optuna-dashboard {storage}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.tune", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")
    args = parser.parse_args(argv)
    return run_entry(lambda: summary(tune_flow(args.params)))


if __name__ == "__main__":
    sys.exit(main())
