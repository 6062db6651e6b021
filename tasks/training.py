"""Fit one detector (a Prefect task each, fanned out by the flow) and evaluate it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from components.detectors import get_detector, load_detector
from flows.config import Config
from flows.core import DetectorResult, threshold_and_evaluate

from .data import Processed


def _progress(logger, message: str) -> None:
    # Prefect's own logs stay at WARNING on the console; progress goes to stderr regardless.
    logger.info(message)
    print(message, file=sys.stderr, flush=True)


@task(name="train detector", retries=1, retry_delay_seconds=2, task_run_name="train {name}")
def train_detector(name: str, params: dict, processed_dir: Path, models_dir: Path, verbose: bool = False) -> dict:
    """Fit on the train split and save to ``models_dir/<name>.pkl``; retried once on failure."""
    logger = get_run_logger()
    data = Processed(processed_dir)
    det = get_detector(name, **params)
    has_verbose = "verbose" in det.get_params()
    if verbose and has_verbose:
        det.verbose = True  # per-epoch progress bar while it trains
    _progress(logger, f"[{name}] fitting on {data['train'].shape[0]} steps x {data['train'].shape[1]} metrics")
    t0 = time.perf_counter()
    det.fit(data["train"])
    seconds = time.perf_counter() - t0
    if has_verbose:
        det.verbose = params.get("verbose", False)  # the saved params are the configured ones
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    det.save(models_dir / f"{name}.pkl")
    info = {"name": name, "params": det.get_params(), "fit_seconds": seconds}
    if hasattr(det, "history_"):
        h = det.history_
        info.update(epochs=h.epochs_run, best_epoch=h.best_epoch, seconds_per_epoch=h.seconds_per_epoch,
                    device=str(det.device_))
    (models_dir / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    _progress(logger, f"[{name}] fitted in {seconds:.1f} s")
    return info


@task(name="threshold and evaluate", task_run_name="evaluate {name}")
def evaluate_detector(name: str, processed_dir: Path, models_dir: Path, cfg: Config) -> DetectorResult:
    data = Processed(processed_dir)
    det = load_detector(Path(models_dir) / f"{name}.pkl")
    info = json.loads((Path(models_dir) / f"{name}.json").read_text())
    return threshold_and_evaluate(name, det, info["fit_seconds"], data["validation"], data["validation_labels"],
                                  data["test"], data["test_labels"], data.causes("test"), cfg)
