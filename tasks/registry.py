"""MLflow: a parent run per pipeline run, a child run per detector, the best model registered
and given the alias ``champion`` only when it beats the current champion on the same data.

The steps, each a function below: log a detector run, pick the best (components.selection),
register it, find and score the current champion, promote if better. Any error on the way
stops the run with the champion untouched; only "this model has no champion alias yet" is
read as no champion.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from components.alerting import AlertRule
from components.detectors import FormatError
from components.evaluation import DetectorResult
from components.selection import Selection, pick_best, score_outside_candidate
from vigil.plumbing import owner_gone, owner_marks

from . import run_logger
from .data import Processed, model_name
from .plots import write_plots
from .versioning import DataVersion

REPO = Path(__file__).resolve().parents[1]
MODEL_CODE = REPO / "tasks" / "mlflow_model.py"
CHAMPION = "champion"
# What the pyfunc model imports when MLflow rebuilds it elsewhere (mlflow_model.py, components/).
SERVING_PACKAGES = ("torch", "scikit-learn", "numpy", "pandas", "scipy", "mlflow")


@dataclass(frozen=True)
class RegistryDecision:
    model: str
    version: int
    detector: str
    criterion: str  # "val_<metric>" or "val_consensus"
    criterion_rule: str  # the rule in words, with why (label-free or not)
    score: float
    champion_before: int | None
    champion_before_score: float | None
    promoted: bool
    parent_run: str
    champion_note: str = ""  # why the champion was not scored, where it was not

    @property
    def champion(self) -> int:
        return self.version if self.promoted else int(self.champion_before)


# MLflow 3's UI opens an experiment with no kind as a GenAI one (traces, token costs): Vigil's are
# model training, and tagged so, which opens them on their runs
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def experiment_page(ui: str, tracking_uri: str, experiment: str, metric: str) -> str:
    """The MLflow UI's page (``ui``: its base URL) of ``experiment``'s runs side by side (its
    compare view, a chart per metric), sorted by ``metric`` best first; ``ui`` itself where the
    experiment does not exist yet (the UI opens on its list of experiments)."""
    from urllib.parse import urlencode

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from .urls import sqlite_file

    store = sqlite_file(tracking_uri)
    if store is not None and not store.is_file():
        return ui  # no store yet: opening one would make it
    try:
        found = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    except MlflowException:  # a store not made yet
        found = None
    if found is None:
        return ui
    # the model-training view, runs best first, in the compare view (a chart per metric)
    query = {"workflowType": "machine_learning", "orderByKey": f"metrics.`{metric}`", "orderByAsc": "false",
             "compareRunsMode": "CHART"}  # fmt: skip
    return f"{ui}/#/experiments/{found.experiment_id}/runs?{urlencode(query)}"


def setup_mlflow(tracking_uri: str, experiment: str, artifact_root: Path):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        root = Path(artifact_root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(experiment, artifact_location=root.as_uri())
    exp = mlflow.set_experiment(experiment)
    if exp.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
        mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
    fail_runs_of_dead_processes(mlflow.MlflowClient(), exp.experiment_id)
    return mlflow


def process_tags() -> dict[str, str]:
    """Which process a run belongs to, so that a later run can tell a crashed one from a live one."""
    return owner_marks()


def fail_runs_of_dead_processes(client, experiment_id: str) -> list[str]:
    """Runs still RUNNING whose process on this machine is gone (killed, SIGKILL, power) end
    FAILED, with a tag that says so. Returns their ids."""
    stale = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
        pid = owner_gone(run.data.tags)
        if pid is None:
            continue
        client.set_tag(run.info.run_id, "vigil.ended_by", f"a later run: process {pid} was gone")
        client.set_terminated(run.info.run_id, "FAILED")
        stale.append(run.info.run_id)
    return stale

    return True


def pip_requirements() -> list[str]:
    # The installed versions, without a local tag (torch's "+cpu"), which an index does not serve.
    return [f"{p}=={installed_version(p).split('+')[0]}" for p in SERVING_PACKAGES]


def write_bundle(
    folder: Path, detector_path: Path, scaler: dict, features: list[str], rule: AlertRule, detector: str
) -> Path:
    """What the pyfunc model loads: the fitted detector, its scaler, its alert rule (smoothing,
    threshold, incident rule: what evaluation measured), the features."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(detector_path, folder / "detector.npz")
    meta = {
        "detector": detector,
        "threshold": rule.threshold,
        "alert_rule": rule.to_dict(),
        "scaler": scaler,
        "features": features,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return folder


def model_signature(features: list[str]):
    """Metric columns as optional doubles: MLflow converts their types, and the model itself
    names missing columns (MLflow's own message for a missing required column starts with a
    dump of the whole frame)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("double", f, required=False) for f in features])
    outputs = Schema(
        [
            ColSpec("double", "score"),
            ColSpec("double", "alert_score"),
            ColSpec("integer", "flag"),
            ColSpec("long", "incident"),
            ColSpec("string", "top_metrics"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def _finite(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def log_detector_run(
    mlflow,
    result: DetectorResult,
    *,
    tags: dict,
    info: dict,
    data: Processed,
    detector_file: Path,
    selection_figure: float,
    selection: Selection,
) -> str:
    """One child run: parameters, metrics of both splits, plots, the threshold rule, and the
    pyfunc model bundling scaler, detector and threshold. Returns the model's URI."""
    dataset = data.meta["dataset"]
    compare = {  # the same plain tags as the benchmark's runs, so MLflow's compare view lines them up
        "dataset": dataset,
        "series": dataset,
        "detector": result.name,
        "mlflow.note.content": (
            f"{result.name} on {dataset}. Metrics: val_* on the validation head (threshold and model choice), "
            f"test_* on the test tail at that threshold; plots/ holds scores, threshold and incidents."
        ),
    }
    with mlflow.start_run(run_name=result.name, nested=True, tags={**tags, **compare, "vigil.detector": result.name}):
        mlflow.log_params({f"detector.{k}": v for k, v in info.get("params", {}).items()})
        rule = result.threshold
        mlflow.log_params(
            {
                "detector": result.name,
                "threshold": rule.value,
                "smoothing": f"{rule.smoothing} {rule.window}",
                "incidents.merge_gap": rule.merge_gap,
                "incidents.min_steps": rule.min_steps,
            }
        )
        mlflow.set_tags(
            {
                "vigil.threshold_rule": rule.rule,
                "vigil.threshold_detail": rule.detail,
                **{f"vigil.undefined.{split}": why for split, why in result.undefined.items()},
                # where tuned: the study, and the tuning run whose children are its trials
                **{f"vigil.tuning.{k}": str(v) for k, v in (info.get("tuning") or {}).items() if v is not None},
            }
        )
        metrics = {
            **_finite(result.validation, "val_"),
            **_finite(result.test, "test_"),
            "fit_seconds": result.fit_seconds,
        }
        if math.isfinite(selection_figure):
            metrics[selection.key] = selection_figure  # the consensus figure, where label-free
        mlflow.log_metrics(metrics)
        if "seconds_per_epoch" in info:
            mlflow.log_metrics({"seconds_per_epoch": info["seconds_per_epoch"], "epochs": info["epochs"]})
        with tempfile.TemporaryDirectory() as tmp:
            for path in write_plots(Path(tmp), result, data["test_labels"]):
                mlflow.log_artifact(str(path), "plots")
            bundle = write_bundle(
                Path(tmp) / "bundle",
                detector_file,
                data.meta["scaler"],
                data.meta["features"],
                result.threshold,
                result.name,
            )
            example = pd.DataFrame(data["raw_validation"][:64], columns=data.meta["features"])
            logged = log_code_model(MODEL_CODE, bundle, example, model_signature(data.meta["features"]))
    return logged.model_uri


def log_code_model(model_code: Path, bundle: Path, example: pd.DataFrame, signature):
    """Log a pyfunc model from code (``model_code``) with its saved state (``bundle``, no
    pickle) and Vigil's components, into the active run; returns MLflow's ModelInfo."""
    import mlflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # schema hints on integer columns
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(model_code),
            artifacts={"bundle": str(bundle)},
            code_paths=[str(REPO / "components")],
            pip_requirements=pip_requirements(),
            input_example=example,
            signature=signature,
        )


def load_logged_model(tracking_uri: str, source: str):
    """The Python model behind a model version's ``source`` (``models:/m-...``, a logged model
    of the tracking store). Loaded by source, not by ``models:/<name>/<version>``: that would
    need MLflow's registry URI set globally, which it also exports to every subprocess, so a
    later run in this process or a child would register into, or load from, this store."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(source).unwrap_python_model()


def find_champion(client, name: str):
    """The model version holding the champion alias, or None where no version holds it yet.
    Read from the registered model's aliases rather than by catching the alias look-up's
    error (MLflow reports a missing alias with the same code as a bad request), so that every
    error (a store that cannot be reached or read) propagates."""
    models = [m for m in client.search_registered_models(f"name='{name}'") if m.name == name]
    if not models or CHAMPION not in models[0].aliases:
        return None
    return client.get_model_version(name, models[0].aliases[CHAMPION])


def score_champion(
    mlflow, name: str, selection: Selection, data: Processed, member_scores: list[np.ndarray], detector: str | None
) -> float:
    """The current champion, scored now through its own pyfunc on this data version's
    validation split, by the rule the candidates were scored by (under a prior: its
    ``detector``'s figure, which needs no scores)."""
    if selection.prior is not None:
        return score_outside_candidate(selection, np.empty(0), np.empty(0), data["validation_labels"], [], detector)
    frame = pd.DataFrame(data["raw_validation"], columns=data.meta["features"])
    out = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}").predict(frame)
    alert = out["alert_score"].to_numpy() if "alert_score" in out else None
    return score_outside_candidate(
        selection,
        out["score"].to_numpy(),
        out["flag"].to_numpy(),
        data["validation_labels"],
        member_scores,
        None,
        alert,
    )


def promote_if_better(
    client, name: str, version: int, score: float, champion_score: float | None, tie_promotes: bool = False
) -> bool:
    """Move the alias when there is no champion or the new version beats it. A tie keeps the
    champion, except with ``tie_promotes``: under a prior the figure belongs to the detector,
    not to the model, so a new version of the champion's detector ties, and it has seen the
    newest data."""
    if champion_score is None:
        better = True
    elif not math.isfinite(score):
        better = False
    else:  # a NaN champion figure compares False both ways: the new version wins
        better = not (score < champion_score if tie_promotes else score <= champion_score)
    if better:
        client.set_registered_model_alias(name, CHAMPION, version)
    return better


@task(name="register in MLflow")
def register(
    *,
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    model_name_override: str | None,
    processed_dir: Path,
    models_dir: Path,
    results: list[DetectorResult],
    figures: dict[str, float],
    selection: Selection,
    version: DataVersion,
    run_params: dict,
    validation_report: Path | None,
) -> RegistryDecision:
    """Log everything, register the best detector by ``selection`` (its ``figures``), and move
    ``champion`` only if the new version beats the current champion scored the same way on
    this data version's validation split. Earlier versions are never deleted or changed."""
    mlflow = setup_mlflow(tracking_uri, experiment, artifact_root)
    client = mlflow.MlflowClient()
    data = Processed(processed_dir)
    dataset = data.meta["dataset"]
    name = model_name(dataset, model_name_override)
    tags = {**version.tags(), "vigil.dataset": dataset, "vigil.selection": selection.reason, **process_tags()}
    started: list = []  # the parent run, once it exists
    try:
        logger = run_logger()
        with mlflow.start_run(run_name=f"pipeline {dataset}", tags=tags) as parent:
            started.append(parent)
            mlflow.log_params({"dataset": dataset, "detectors": ",".join(r.name for r in results), **run_params})
            if validation_report is not None and Path(validation_report).is_file():
                mlflow.log_artifact(str(validation_report), "validation")
            uris = {}
            for r in results:
                info = json.loads((Path(models_dir) / f"{r.name}.json").read_text())
                uris[r.name] = log_detector_run(
                    mlflow,
                    r,
                    tags=tags,
                    info=info,
                    data=data,
                    detector_file=Path(models_dir) / f"{r.name}.npz",
                    selection_figure=figures[r.name],
                    selection=selection,
                )
            best = pick_best(figures)
            score = figures[best]
            mv = mlflow.register_model(
                uris[best], name, tags={**tags, "vigil.detector": best, f"vigil.{selection.key}": str(score)}
            )
            current = find_champion(client, name)
            champion_score, note = None, ""
            if current is not None:
                try:
                    champion_score = score_champion(
                        mlflow,
                        name,
                        selection,
                        data,
                        [r.val_scores for r in results],
                        current.tags.get("vigil.detector"),
                    )
                except FormatError as exc:  # only this: Vigil's old pickle format, which it no longer loads
                    note = f"version {current.version} is in a format this Vigil refuses to load ({exc}); replaced"
            promoted = promote_if_better(
                client, name, mv.version, score, champion_score, tie_promotes=selection.prior is not None
            )
            decision = RegistryDecision(
                model=name,
                version=int(mv.version),
                detector=best,
                criterion=selection.key,
                criterion_rule=selection.reason,
                score=score,
                champion_before=None if current is None else int(current.version),
                champion_before_score=champion_score,
                promoted=promoted,
                parent_run=parent.info.run_id,
                champion_note=note,
            )
            mlflow.log_dict(asdict(decision), "registry_decision.json")
            mlflow.set_tags({"vigil.registered_version": mv.version, "vigil.promoted": str(promoted)})
            client.set_model_version_tag(name, mv.version, "vigil.promoted", str(promoted))
            logger.info(
                "registered %s version %s (%s, %s %.4f); champion: version %s",
                name,
                mv.version,
                best,
                selection.key,
                score,
                decision.champion,
            )
        return decision
    except KeyboardInterrupt:
        for parent in started:
            mark_killed(client, parent)
        raise


def mark_killed(client, parent) -> None:
    """An interrupted parent run and its children end KILLED (MLflow's context manager had
    ended them FAILED, which says something else)."""
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    for run in [parent, *children]:
        client.set_terminated(run.info.run_id, "KILLED")
