"""Threshold one fitted detector on validation (or by the label-free rule) and measure it on
both splits."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task

from components.detectors import load_detector
from components.evaluation import DetectorResult, threshold_and_measure

from .data import Processed, feedback_arrays


@task(name="threshold and measure", task_run_name="measure {name}")
def measure_detector(
    name: str, processed_dir: Path, models_dir: Path, *, method: str, pot_q: float, pot_level: float, vus_window: int
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
        method=method,
        pot_q=pot_q,
        pot_level=pot_level,
        vus_window=vus_window,
        feedback=feedback_arrays(data),
    )
