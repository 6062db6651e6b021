"""MLflow: a parent run per pipeline run, a child run per detector, the best model registered
and given the alias ``champion`` only when it beats the current champion on the same data."""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.logging import get_run_logger

from components.evaluation import evaluate
from flows.config import Config
from flows.core import DetectorResult

from .data import Processed
from .plots import write_plots
from .versioning import DataVersion

REPO = Path(__file__).resolve().parents[1]
MODEL_CODE = REPO / "tasks" / "mlflow_model.py"
CHAMPION = "champion"


def write_bundle(folder: Path, detector_path: Path, scaler: dict, features: list[str], threshold: float,
                 detector: str) -> Path:
    """What the pyfunc model loads: the fitted detector, its scaler and threshold, the features."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(detector_path, folder / "detector.pkl")
    meta = {"detector": detector, "threshold": threshold, "scaler": scaler, "features": features}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return folder


def model_name(cfg: Config, dataset: str) -> str:
    return cfg.registry.model_name or "vigil-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset).strip("-")


def setup_mlflow(cfg: Config, repo_root: Path):
    import mlflow

    mlflow.set_tracking_uri(cfg.registry.tracking_uri)
    exp = mlflow.get_experiment_by_name(cfg.registry.experiment)
    if exp is None:
        root = (Path(repo_root) / cfg.registry.artifact_root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(cfg.registry.experiment, artifact_location=root.as_uri())
    mlflow.set_experiment(cfg.registry.experiment)
    return mlflow


def _finite(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def selection_score(metric: str, labels: np.ndarray, scores: np.ndarray, flags: np.ndarray, vus_window: int) -> float:
    """The selection metric from scores and flags, as `evaluate` computes it."""
    threshold_free = {"auc_pr", "vus_pr", "auc_roc"}
    th = np.inf if metric in threshold_free else float(np.min(scores[flags == 1])) if flags.any() else np.inf
    return evaluate(labels, scores, th, vus_window=vus_window)[metric]


@task(name="register in MLflow")
def register(cfg: Config, repo_root: Path, processed_dir: Path, models_dir: Path, results: list[DetectorResult],
             version: DataVersion, validation_report: Path | None, train_info: dict[str, dict]) -> dict:
    """Log everything, register the best detector by the validation selection metric, and move
    ``champion`` only if the new version beats the current champion on this data version's
    validation split. Earlier versions are never deleted or changed."""
    logger = get_run_logger()
    mlflow = setup_mlflow(cfg, repo_root)
    from mlflow import MlflowClient

    data = Processed(processed_dir)
    dataset = data.meta["dataset"]
    name = model_name(cfg, dataset)
    metric = cfg.registry.selection_metric
    tags = {**version.tags(), "vigil.dataset": dataset}
    child_runs: dict[str, str] = {}
    with mlflow.start_run(run_name=f"pipeline {dataset}", tags=tags) as parent:
        mlflow.log_params({"dataset": dataset, "detectors": ",".join(r.name for r in results),
                           "threshold_method": cfg.threshold.method, "selection_metric": metric,
                           **{f"preprocessing.{k}": v for k, v in cfg.preprocessing.model_dump().items()}})
        if validation_report is not None and Path(validation_report).is_file():
            mlflow.log_artifact(str(validation_report), "validation")
        for r in results:
            with mlflow.start_run(run_name=r.name, nested=True, tags={**tags, "vigil.detector": r.name}) as child:
                info = train_info.get(r.name, {})
                mlflow.log_params({f"detector.{k}": v for k, v in info.get("params", {}).items()})
                mlflow.log_params({"detector": r.name, "threshold": r.threshold})
                mlflow.log_metrics({**_finite(r.validation, "val_"), **_finite(r.test, "test_"),
                                    "fit_seconds": r.fit_seconds})
                if "seconds_per_epoch" in info:
                    mlflow.log_metrics({"seconds_per_epoch": info["seconds_per_epoch"], "epochs": info["epochs"]})
                with tempfile.TemporaryDirectory() as tmp:
                    for path in write_plots(Path(tmp), r, data["test_labels"]):
                        mlflow.log_artifact(str(path), "plots")
                    bundle = write_bundle(Path(tmp) / "bundle", Path(models_dir) / f"{r.name}.pkl",
                                          data.meta["scaler"], data.meta["features"], r.threshold, r.name)
                    if validation_report is not None and Path(validation_report).is_file():
                        mlflow.log_artifact(str(validation_report), "validation")
                    example = pd.DataFrame(data["raw_validation"][:64], columns=data.meta["features"])
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)  # the int8 flag column's schema hint
                        logged = mlflow.pyfunc.log_model(
                            name="model", python_model=str(MODEL_CODE), artifacts={"bundle": str(bundle)},
                            code_paths=[str(REPO / "components")],
                            pip_requirements=["torch==2.13.0", "scikit-learn==1.9.1", "numpy==2.4.6",
                                              "pandas==3.1.1", "scipy==1.17.1", "mlflow==3.17.2"],
                            input_example=example,
                        )
                child_runs[r.name] = logged.model_uri
        best = max(results, key=lambda r: r.validation.get(metric, -math.inf)
                   if math.isfinite(r.validation.get(metric, math.nan)) else -math.inf)
        new_score = best.validation[metric]
        mv = mlflow.register_model(child_runs[best.name], name, tags={
            **tags, "vigil.detector": best.name, f"vigil.val_{metric}": str(new_score)})
        client = MlflowClient()
        val_df = pd.DataFrame(data["raw_validation"], columns=data.meta["features"])
        try:
            current = client.get_model_version_by_alias(name, CHAMPION)
        except Exception:  # no champion yet (MLflow raises a RestException)
            current = None
        champ_score = None
        if current is not None:
            # the current champion, scored now on this data version's validation split
            out = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}").predict(val_df)
            champ_score = selection_score(metric, data["validation_labels"], out["score"].to_numpy(),
                                          out["flag"].to_numpy(), cfg.evaluation.vus_window)
        promoted = current is None or new_score > champ_score
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, mv.version)
        decision = {
            "model": name, "version": int(mv.version), "detector": best.name, "metric": f"val_{metric}",
            "score": new_score, "champion_before": None if current is None else int(current.version),
            "champion_before_score": champ_score, "promoted": promoted,
            "champion": int(mv.version) if promoted else int(current.version), "parent_run": parent.info.run_id,
        }
        mlflow.log_dict(decision, "registry_decision.json")
        mlflow.set_tags({"vigil.registered_version": mv.version, "vigil.promoted": str(promoted)})
        client.set_model_version_tag(name, mv.version, "vigil.promoted", str(promoted))
        logger.info("registered %s version %s (%s, val %s %.4f); champion: version %s",
                    name, mv.version, best.name, metric, new_score, decision["champion"])
    return decision
