"""The `train` flow (DVC stage ``train``): fit every detector named in params, one task each
(retried once on failure), with the parameters `tune` chose where ``tuning.enabled`` is set.
Run alone: ``python -m flows.train [--params FILE]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prefect import flow

from tasks.fit import fit_detector

from .config import Config, ConfigError, load_config
from .entry import run_entry
from .run_lock import holds_checkout
from .workspace import Workspace


@flow(name="train")
@holds_checkout
def train_flow(
    params: str = "params.yaml",
    repo_root: str = ".",
    verbose: bool = False,
    wait_for_lock: bool = True,
    run_id: str | None = None,
    cfg: Config | None = None,
) -> dict:
    """Standalone (no ``run_id``) it reads the published data/processed and publishes models/
    whole once every detector is fitted; inside the pipeline it works in the run's folder.
    ``cfg``: the parameters, parsed once by the caller (else read from ``params``)."""
    ws = Workspace.at(repo_root)
    cfg = cfg or load_config(ws.root / params)
    out = ws.run_folder(run_id)
    inputs = out if run_id else ws
    chosen = fit_params(cfg, inputs.tuned)
    futures = [
        fit_detector.submit(name, p, inputs.processed, out.models, verbose, tuning=t) for name, (p, t) in chosen.items()
    ]
    info = {f.result()["name"]: f.result() for f in futures}
    if run_id is None:
        out.publish("models")
        out.discard()
    return info


TUNING_KEYS = ("study", "storage", "objective_used", "best_value", "default_value", "chosen", "mlflow_run_id")


def fit_params(cfg: Config, tuned_dir: Path) -> dict[str, tuple[dict, dict | None]]:
    """Each detector's parameters for the fit, and where they came from: the configured ones,
    or with ``tuning.enabled`` those in ``tuned/params.json`` (the `tune` step's), after
    checking that they were tuned with the detector settings params.yaml holds now."""
    if not cfg.tuning.enabled:
        return {name: (params, None) for name, params in cfg.detectors.items()}
    path = Path(tuned_dir) / "params.json"
    rerun = "run `vigil tune` (or `vigil run`, which tunes first) or set tuning.enabled: false"
    tuned = json.loads(path.read_text()) if path.is_file() else {"enabled": False}
    if not tuned["enabled"]:
        raise ConfigError(f"tuning.enabled is set, but {path} holds no tuned parameters; {rerun}")
    out = {}
    for name, configured in cfg.detectors.items():
        if name in tuned["untuned"]:
            out[name] = (configured, None)
            continue
        entry = tuned["detectors"].get(name)
        if entry is None:
            raise ConfigError(f"{path}: detector {name} was not tuned (added since?); {rerun}")
        fixed = {k: v for k, v in configured.items() if k not in entry["best_params"]}
        changed = sorted(k for k, v in fixed.items() if entry["params"].get(k) != v)
        if changed:
            raise ConfigError(f"{path}: {name} was tuned with other detectors.{name} settings ({changed}); {rerun}")
        out[name] = (entry["params"], {k: entry.get(k) for k in TUNING_KEYS})
    return out


def summary(info: dict) -> str:
    return "\n".join(f"trained {name} in {i['fit_seconds']:.1f} s" for name, i in info.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.train", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")
    args = parser.parse_args(argv)
    return run_entry(lambda: summary(train_flow(args.params, verbose=sys.stderr.isatty())))


if __name__ == "__main__":
    sys.exit(main())
