"""SLO prediction's data and models: recorded runs on disk, fitting, MLflow registration, loading,
and the champion's predictions in the alerts store (`PredictionStore`).

A recorded run is one simulated workload aggregated per second, as the live aggregator
aggregates it: ``<folder>/<run>.csv`` (one row per second) beside ``<folder>/runs.json`` (each
run's role, seed and injections). DVC tracks the folder (stage ``slo_record``); the predictors
learn from the ``train`` and ``normal`` runs and take their thresholds from ``validation``.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
from prefect import task

from components.slo.aggregation import RECORD_FIELDS, aggregate_messages
from components.slo.evaluation import evaluate_predictions
from components.slo.predictors import PREDICTORS, SIGNALS, SLOPredictor, best_threshold, frame_signals
from components.slo.simulator import MEMORY_LEAK, interleave, simulate_workload

from .registry import CHAMPION, REPO, find_champion, load_logged_model, log_code_model, process_tags, setup_mlflow

if TYPE_CHECKING:
    from .remedies import RemedySettings

log = logging.getLogger("vigil.stream")

MODEL_CODE = REPO / "tasks" / "slo_model.py"
VALIDATION_REPORT = Path("reports/slo_validation.json")  # relative to the checkout: `slo-train` writes it
DEMO_REPORT = Path("reports/slo_demo.json")  # `vigil stream demo` writes it


@dataclass
class RecordedRun:
    name: str
    role: str  # train | normal | validation | demo
    seed: int
    records: pd.DataFrame  # RECORD_FIELDS, one row per second
    injections: list[dict]

    @cached_property
    def signals(self) -> np.ndarray:
        return frame_signals(self.records)

    @property
    def violation(self) -> np.ndarray:
        return self.records["violation"].to_numpy(dtype=bool)

    def leak_windows(self) -> list[tuple[int, int]]:
        """[start, end) of each memory leak, as row positions of ``records``."""
        s0 = int(self.records["second"].iloc[0])
        return [(i["start"] - s0, i["end"] - s0) for i in self.injections if i["kind"] == MEMORY_LEAK]


def simulate_run(name: str, role: str, seed: int, sim: dict, rt_limit: float, grace: float) -> RecordedRun:
    """One simulated workload, aggregated by the same code the live aggregator runs."""
    w = simulate_workload(seed, **sim)
    records = pd.DataFrame(aggregate_messages(interleave(w), rt_limit, grace), columns=list(RECORD_FIELDS))
    return RecordedRun(name, role, seed, records, [asdict(i) for i in w.injections])


@task(name="record-slo-runs")
def record_runs(folder: Path, stream) -> list[RecordedRun]:
    """Simulate and aggregate the train, normal and validation runs into ``folder``."""
    sim = stream.simulator.model_dump()
    d = stream.data
    plan = [(f"train-{s}", "train", s, sim) for s in d.train_seeds]
    plan.append((f"normal-{d.normal_seed}", "normal", d.normal_seed, {**sim, "n_cpu_hogs": 0, "n_memory_leaks": 0}))
    plan.append((f"validation-{d.validation_seed}", "validation", d.validation_seed, sim))
    runs = [simulate_run(n, role, seed, s, stream.rt_limit, stream.grace) for n, role, seed, s in plan]
    folder.mkdir(parents=True, exist_ok=True)
    for r in runs:
        r.records.to_csv(folder / f"{r.name}.csv", index=False)
    index = {
        r.name: {"role": r.role, "seed": r.seed, "seconds": len(r.records), "injections": r.injections} for r in runs
    }
    (folder / "runs.json").write_text(json.dumps(index, indent=1) + "\n")
    return runs


def load_runs(folder: Path) -> list[RecordedRun]:
    """The recorded runs of ``folder``, checked: a missing file, column or a bad value is named
    with its file, field and rows."""
    index_path = Path(folder) / "runs.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path}: no recorded runs (`vigil stream record` or `dvc repro slo_record`)")
    index = json.loads(index_path.read_text())
    runs = []
    for name, info in index.items():
        path = Path(folder) / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {index_path} but missing")
        df = pd.read_csv(path)
        missing = [c for c in RECORD_FIELDS if c not in df.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        seconds = df["second"].to_numpy()
        gaps = np.flatnonzero(np.diff(seconds) != 1)
        if len(gaps):
            raise ValueError(
                f"{path}: field 'second' must rise by 1 each row; it does not at rows {(gaps + 1)[:5].tolist()}"
            )
        for col in SIGNALS:
            bad = np.flatnonzero(~np.isfinite(df[col].to_numpy(dtype=float)) & df[col].notna().to_numpy())
            if len(bad):
                raise ValueError(f"{path}: field {col!r} holds infinite values at rows {bad[:5].tolist()}")
        runs.append(RecordedRun(name, info["role"], int(info["seed"]), df, info.get("injections", [])))
    roles = {r.role for r in runs}
    for need in ("train", "normal", "validation"):
        if need not in roles:
            raise ValueError(f"{index_path}: no run of role {need!r} (roles present: {sorted(roles)})")
    return runs


@dataclass
class FittedPredictor:
    name: str
    predictor: SLOPredictor
    threshold: float
    validation: dict  # evaluate_predictions on the validation run, at the threshold


def score_run(predictor: SLOPredictor, threshold: float, run: RecordedRun, lead: int, early: int) -> dict:
    pred = predictor.score(run.signals) >= threshold
    return evaluate_predictions(pred, run.violation, lead, early, run.leak_windows())


@task(name="fit-slo-predictors")
def fit_predictors(runs: list[RecordedRun], predictors: dict, lead: int, early: int) -> list[FittedPredictor]:
    """Each predictor fitted on the train (and normal) runs, its threshold the one with the best
    lead-window F1 on the validation run, and its figures on that run."""
    train = [(r.signals, r.violation) for r in runs if r.role == "train"]
    normal = np.concatenate([r.signals for r in runs if r.role == "normal"])
    (val,) = [r for r in runs if r.role == "validation"]
    out = []
    for name, params in predictors.items():
        p = PREDICTORS[name](**params).fit(train, normal, lead)
        threshold, _ = best_threshold(p.score(val.signals), val.violation, lead)
        out.append(FittedPredictor(name, p, threshold, score_run(p, threshold, val, lead, early)))
    return out


def champion_of(fitted: list[FittedPredictor]) -> FittedPredictor:
    """The best on the validation run: F1 under the lead window, then the mean lead time."""
    return max(fitted, key=lambda f: (f.validation["f1"], f.validation["lead_mean"] or 0.0))


def _signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("double", s, required=False) for s in SIGNALS])
    outputs = Schema([ColSpec("double", "score"), ColSpec("integer", "predicted"), ColSpec("string", "top_signals")])
    return ModelSignature(inputs=inputs, outputs=outputs)


@task(name="register-slo-predictors")
def register_predictors(
    fitted: list[FittedPredictor],
    runs: list[RecordedRun],
    stream,
    tracking_uri: str,
    artifact_root: Path,
    data_md5: str,
) -> dict:
    """A run per predictor in MLflow (parameters, validation figures, the pyfunc model), each
    registered as a version of ``stream.model_name`` with its name as alias; the best on the
    validation run also gets ``@champion``. Returns name -> version, and the champion."""
    mlflow = setup_mlflow(tracking_uri, stream.experiment, artifact_root)
    client = mlflow.MlflowClient()
    (val,) = [r for r in runs if r.role == "validation"]
    example = val.records[list(SIGNALS)].head(64).astype(float)
    versions = {}
    for f in fitted:
        tags = {
            **process_tags(),
            "predictor": f.name,
            "vigil.data_md5": data_md5,
            "mlflow.note.content": (
                f"SLO-violation predictor {f.name}: fitted on the train runs, threshold and val_* figures on "
                f"validation run {val.name} (lead window {stream.lead} s)."
            ),
        }
        with mlflow.start_run(run_name=f"slo-{f.name}", tags=tags):
            mlflow.log_params({"predictor": f.name, "threshold": f.threshold, "lead": stream.lead})
            mlflow.log_params({f"predictor.{k}": v for k, v in f.predictor.get_params().items()})
            mlflow.log_metrics({f"val_{k}": float(v) for k, v in f.validation.items() if isinstance(v, int | float)})
            with tempfile.TemporaryDirectory() as tmp:
                bundle = Path(tmp) / "bundle"
                bundle.mkdir()
                f.predictor.save(bundle / "predictor.npz")
                meta = {"predictor": f.name, "threshold": f.threshold, "lead": stream.lead, "signals": list(SIGNALS)}
                (bundle / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
                logged = log_code_model(MODEL_CODE, bundle, example, _signature())
        mv = mlflow.register_model(logged.model_uri, stream.model_name, tags={"predictor": f.name})
        client.set_registered_model_alias(stream.model_name, f.name, mv.version)
        versions[f.name] = int(mv.version)
    best = champion_of(fitted)
    before = _current_champion(tracking_uri, stream.model_name, val, stream.lead, stream.early)
    promoted = before is None or best.validation["f1"] >= before["f1"]
    if promoted:
        client.set_registered_model_alias(stream.model_name, CHAMPION, versions[best.name])
    return {"versions": versions, "champion": best.name, "promoted": promoted, "champion_before": before}


def _current_champion(tracking_uri: str, name: str, val: RecordedRun, lead: int, early: int) -> dict | None:
    """The current @champion scored on this validation run with its own threshold (None where
    there is no champion yet), so a new one is promoted only if it does at least as well on the
    same data. Any error reading the registry propagates: the champion is then left as it is."""
    mv = find_champion(_client(tracking_uri), name)
    if mv is None:
        return None
    model = load_logged_model(tracking_uri, mv.source)
    r = score_run(model.predictor, model.threshold, val, lead, early)
    return {"version": int(mv.version), "predictor": mv.tags.get("predictor"), "f1": r["f1"]}


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


class RegisteredPredictor(NamedTuple):
    """One registered SLO predictor as the live loop runs it: a prediction is
    ``score >= threshold``, the threshold chosen on the validation run."""

    alias: str  # the predictor's name, the alias its registered version carries
    version: str
    predictor: SLOPredictor
    threshold: float


def load_models(tracking_uri: str, name: str, aliases: list[str]) -> list[RegisteredPredictor]:
    """``models:/<name>@<alias>`` for each alias, each pinned to the version its alias names now."""
    client = _client(tracking_uri)
    out = []
    for alias in aliases:
        mv = client.get_model_version_by_alias(name, alias)
        model = load_logged_model(tracking_uri, mv.source)
        out.append(RegisteredPredictor(alias, str(mv.version), model.predictor, model.threshold))
    return out


def champion_predictor(tracking_uri: str, name: str) -> str | None:
    """The predictor ``models:/<name>@champion`` is (None: no champion yet)."""
    mv = find_champion(_client(tracking_uri), name)
    return None if mv is None else mv.tags["predictor"]


def leak_only_check(models: list[RegisteredPredictor], st) -> dict:
    """The negative case alone: a run of the same length with memory leaks and no CPU hog
    (so no violation), scored offline by the registered predictors with the services' code.
    Every prediction on it is a false alarm. ``st``: params.yaml's ``stream`` section."""
    sim = {**st.simulator.model_dump(), "n_cpu_hogs": 0}
    run = simulate_run("leaks-only", "demo", st.demo_seed, sim, st.rt_limit, st.grace)
    rows = {}
    for name, version, predictor, threshold in models:
        predicted = predictor.score(run.signals) >= threshold
        r = evaluate_predictions(predicted, run.violation, st.lead, st.early, run.leak_windows())
        rows[name] = {
            "version": version,
            "leaks": r["leaks"],
            "leaks_with_any_prediction": r["leaks_with_any_prediction"],
            "predicted_seconds": int(predicted.sum()),
            "false_alarms_per_hour": r["false_alarms_per_hour"],
        }
    return {
        "run": (
            f"memory leaks alone ({st.simulator.n_memory_leaks} leaks, no CPU hog, seed {st.demo_seed}, "
            f"{len(run.records)} s, offline with the services' code)"
        ),
        "violating_seconds": int(run.violation.sum()),
        "predictors": rows,
    }


# The champion's predictions in the alerts store: what the predictor service (`vigil.services`)
# writes through, as scoring writes scored steps (`tasks.alerts.write_steps`).
SLO_KIND = "slo"  # the source kind of predicted SLO violations, as remedies.catalogue's kinds name it
ADVISOR_REFRESH_S = 60.0  # how stale the remedy ranker of a running predictor may get
DELIVER_EVERY_S = 10.0  # how often a running predictor sends its incidents to the notifiers


class PredictionStore:
    """One predictor's predictions in the alerts store of the scoring service (`tasks.alerts`),
    stored as scored steps are: a point per second (score, threshold, the signals' values), an
    alert per predicted second, incidents for runs of them with their remedies ranked; source
    ``slo/<aggregate topic>``."""

    def __init__(
        self,
        url: str,
        source: str,
        model: str,
        version: str,
        predictor: str,
        threshold: float,
        remedies=None,
        tracking_uri: str | None = None,
        artifact_root: Path | None = None,
        notify=None,
    ):
        from components.alerting import AlertRule

        from .alerts import Scorer, open_store

        self.engine = open_store(url)
        self.source = source
        # a predictor's probability against its threshold, each second over it an alert and a
        # run of them one incident: its threshold is all the rule it was measured with
        self.scorer = Scorer(model, version, predictor, AlertRule(float(threshold)), list(SIGNALS))
        # remedies (`tasks.remedies.RemedySettings`): each new incident gets its remedies ranked,
        # as the scoring service ranks those of scored files, its source being of kind SLO_KIND
        self.remedies, self.tracking_uri, self.artifact_root = remedies, tracking_uri, artifact_root
        self._advisor, self._advisor_at = None, -math.inf
        # notify (`tasks.notify.Notifiers`): each new incident queued in the transaction that
        # raised it, and what is owed delivered at most every DELIVER_EVERY_S, as scoring runs do
        self.notify, self._delivered_at = notify, -math.inf

    def advisor(self):
        """The remedy ranker of the feedback in force, looked up again at most every
        ADVISOR_REFRESH_S: a predictor runs for days while operators report outcomes."""
        if self.remedies is None:
            return None
        if time.monotonic() - self._advisor_at >= ADVISOR_REFRESH_S:
            from .remedies import current_advisor

            try:
                self._advisor = current_advisor(
                    self.engine, self.tracking_uri, self.artifact_root, self.remedies, SLO_KIND
                )
            except Exception as exc:  # MLflow or the store unreachable a moment: predictions go on
                if self._advisor is None:
                    raise
                log.warning(
                    "remedy ranker: looking it up again failed (%s); version %s ranks", exc, self._advisor.version
                )
            self._advisor_at = time.monotonic()
        return self._advisor

    def last_second(self) -> int | None:
        """The last second stored for the source (None: none yet)."""
        from .alerts import read_source
        from .scoring import TIME_FORMAT

        with self.engine.connect() as conn:
            src = read_source(conn, self.source)
        if not src or not src["watermark"]:
            return None
        return int(datetime.strptime(src["watermark"], TIME_FORMAT).replace(tzinfo=UTC).timestamp())

    def write(self, seconds: list[int], scores: np.ndarray, contributions: np.ndarray, values: np.ndarray) -> None:
        """These seconds in one transaction, with the source's row (watermark, open incident)."""
        from .alerts import dumps, now, read_source, write_source, write_steps
        from .scoring import TIME_FORMAT

        times = [datetime.fromtimestamp(s, UTC).strftime(TIME_FORMAT) for s in seconds]
        advisor = self.advisor()  # outside the transaction: it may register a version in MLflow
        with self.engine.begin() as conn:
            src = read_source(conn, self.source)
            open_incident = src["open_incident"] if src and src["version"] == self.scorer.version else None
            carried = json.loads(src["state"]).get("alerting") if open_incident is not None else None
            open_incident, carried, incidents, _ = write_steps(
                conn, self.source, self.scorer, times, scores, contributions, values, open_incident, carried
            )
            for sink in self._sinks(advisor):  # tasks.alerts.Sink: in this transaction
                sink.incidents_raised(conn, incidents, SLO_KIND)
            row = {
                "watermark": times[-1],
                "steps": (src["steps"] if src else 0) + len(seconds),
                "state": dumps({"features": list(SIGNALS), "stream": {}, "times": [], "alerting": carried}),
                "model": self.scorer.model,
                "version": self.scorer.version,
                "open_incident": open_incident,
                "updated": now(),
            }
            write_source(conn, self.source, row, exists=src is not None)
        self.deliver()

    def _sinks(self, advisor) -> list:
        from .notify import Outbox

        return [s for s in (advisor, Outbox(self.notify) if self.notify else None) if s is not None]

    def deliver(self) -> None:
        """What is owed to the notifiers sent, at most every DELIVER_EVERY_S; a failure waits
        for the next time, as scoring's does (`tasks.notify.deliver`)."""
        if self.notify is None or time.monotonic() - self._delivered_at < DELIVER_EVERY_S:
            return
        from .notify import deliver

        self._delivered_at = time.monotonic()
        deliver(self.engine, self.notify)


def prediction_store(
    models: list,
    stream,
    tracking_uri: str,
    store_url: str,
    remedies: RemedySettings,
    artifact_root: Path,
    notify=None,
) -> tuple[PredictionStore | None, str | None]:
    """The champion's predictions into the alerts store at ``store_url`` as source
    ``slo/<aggregate topic>``, the remedies of each new incident ranked: the store and the
    champion's alias; (None, None) where the champion of ``stream.model_name`` is not among
    ``models``. ``stream``: params.yaml's ``stream`` section."""
    champion = champion_predictor(tracking_uri, stream.model_name)
    for name, version, _, threshold in models:
        if name == champion:
            store = PredictionStore(
                store_url,
                f"slo/{stream.topics.aggregate}",
                stream.model_name,
                version,
                name,
                threshold,
                remedies=remedies,
                tracking_uri=tracking_uri,
                artifact_root=artifact_root,
                notify=notify,
            )
            return store, name
    return None, None
