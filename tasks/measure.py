"""Threshold one fitted detector on validation (or by the label-free rule) and measure it on
both splits."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task

from components.detectors import load_detector
from components.evaluation import AlertSettings, DetectorResult, threshold_and_measure

from .data import Processed, feedback_arrays


@task(name="threshold and measure", task_run_name="measure {name}")
def measure_detector(
    name: str, processed_dir: Path, models_dir: Path, *, alerting: AlertSettings, vus_window: int
) -> DetectorResult:
    data = Processed(processed_dir)
    det = load_detector(Path(models_dir) / f"{name}.npz")
    info = json.loads((Path(models_dir) / f"{name}.json").read_text())
    return threshold_and_measure(
        name,
        det,
        info["fit_seconds"],
        val_x=data["validation"],
        val_labels=data["validation_labels"],
        test_x=data["test"],
        test_labels=data["test_labels"],
        test_causes=data.causes("test"),
        alerting=alerting,
        vus_window=vus_window,
        # false incidents per day where the rows carry time (None: per 1,000 steps only)
        steps_per_day=86400 / data.meta["step_seconds"] if data.meta.get("step_seconds") else None,
        feedback=feedback_arrays(data),
    )
