"""Fit one detector on the train split and save it (a Prefect task each, fanned out by the flow)."""

from __future__ import annotations

import json
import threading
import time
from contextlib import nullcontext
from pathlib import Path

from prefect import task

from components.detectors import TorchDetector, TrainingStopped, get_detector, stop_requested
from vigil.config import ConfigError

from . import every, progress
from .data import Processed

# Torch fits run one at a time whatever the task runner does (torch's RNG is process-global:
# components/detectors/deep.py seeds under one lock). Taking this lock before the timer starts
# makes a torch fit's time its own, not the time it waited for another's.
TORCH_FITS = threading.Lock()


def _unless_stopping(task, task_run, state) -> bool:
    """Retry a failed fit, but not one stopped on request (Ctrl-C): that would only wait the
    retry delay to stop again."""
    return not stop_requested()


PROGRESS_SECONDS = 5.0  # a fit longer than this says how far it got, at most this often


def epoch_lines(name: str, epochs: int | None, t0: float):
    """An epoch callback that logs a progress line (epoch, validation loss, time so far) at most
    every `PROGRESS_SECONDS`: under Prefect or in a log file there is no progress bar, and a
    torch fit can take minutes."""
    due = every(PROGRESS_SECONDS, t0)
    of = f"/{epochs}" if epochs else ""

    def said(epoch: int, val_loss: float) -> None:
        if (elapsed := due()) is not None:
            progress(f"[{name}] epoch {epoch + 1}{of}: validation loss {val_loss:.4g} ({elapsed:.0f} s)")

    return said


@task(
    name="fit detector",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=_unless_stopping,
    task_run_name="fit {name}",
)
def fit_detector(
    name: str, params: dict, processed_dir: Path, models_dir: Path, verbose: bool = False, tuning: dict | None = None
) -> dict:
    """Fit on the train split and save to ``models_dir/<name>.npz`` with ``<name>.json`` (its
    parameters, fit time, epochs, and ``tuning``: the study the parameters came from, if
    any); retried once on failure. ``verbose``: per-epoch progress bars."""
    data = Processed(processed_dir)
    det = get_detector(name, **params)
    progress(f"[{name}] fitting on {data['train'].shape[0]} steps x {data['train'].shape[1]} metrics")
    torch_fit = isinstance(det, TorchDetector)
    with TORCH_FITS if torch_fit else nullcontext():
        t0 = time.perf_counter()
        if torch_fit:
            lines = epoch_lines(name, det.get_params().get("epochs"), t0)
            det.fit(data["train"], verbose=verbose, epoch_callback=lines)
        else:
            det.fit(data["train"], verbose=verbose)
        seconds = time.perf_counter() - t0
    if stop_requested():  # a fit that finished after Ctrl-C is not written
        raise TrainingStopped(f"{name}: stopped on request; not saved")
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    det.save(models_dir / f"{name}.npz")
    info = {
        "name": name,
        "params": det.get_params(),
        "fit_seconds": seconds,
        "calibration_steps": len(det.calibration_scores_),
        "tuning": tuning,
    }
    if hasattr(det, "history_"):
        h = det.history_
        info.update(
            epochs=h.epochs_run, best_epoch=h.best_epoch, seconds_per_epoch=h.seconds_per_epoch, device=str(det.device_)
        )
    (models_dir / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    progress(f"[{name}] fitted in {seconds:.1f} s")
    return info


TUNED_FILE = "params.json"  # in tuned/: what the tune flow chose, read here
TUNING_KEYS = ("study", "storage", "objective_used", "best_value", "default_value", "chosen", "mlflow_run_id")


def fit_params(
    detectors: dict[str, dict], tuning_enabled: bool, tuned_dir: Path
) -> dict[str, tuple[dict, dict | None]]:
    """Each detector's parameters for the fit, and where they came from: the configured ones
    (``detectors``), or with tuning enabled those in ``tuned/params.json`` (the `tune` step's),
    after checking that they were tuned with the detector settings params.yaml holds now."""
    if not tuning_enabled:
        return {name: (params, None) for name, params in detectors.items()}
    path = Path(tuned_dir) / TUNED_FILE
    rerun = "run `vigil tune` (or `vigil run`, which tunes first) or set tuning.enabled: false"
    tuned = json.loads(path.read_text()) if path.is_file() else {"enabled": False}
    if not tuned["enabled"]:
        raise ConfigError(f"tuning.enabled is set, but {path} holds no tuned parameters; {rerun}")
    out = {}
    for name, configured in detectors.items():
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
