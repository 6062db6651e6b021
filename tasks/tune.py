"""Optuna tuning of one detector: a study per (data version, series, detector) in an RDB, its
trials as MLflow child runs, pruning on the torch detectors' validation loss per epoch.

The study reads train and the validation head only (`components.tuning.tuning_set` takes no
test tail). Several processes, on one machine or many, may run the same study at once: the
budget (``n_trials`` finished trials) is shared through the storage, and a study that was
interrupted resumes where it stopped (``load_if_exists``).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prefect import task

from components.detectors import TrainingStopped, get_detector
from components.detectors.base import check_stop
from components.tuning import TuningSet, objective_value, tuning_set
from vigil.plumbing import owner_gone, owner_marks

from . import every, progress
from .data import feedback_arrays
from .urls import shown_url

DEFAULT_ATTR = "vigil.default"  # the trial that ran the configured parameters
DIRECTION = "maximize"  # every objective: higher is better
CAUGHT = (ValueError, ArithmeticError)  # a trial's parameters that cannot work here: the trial fails, the study goes on


# --- storage and names --------------------------------------------------------------------


def check_storage(url: str, root: Path, timeout_s: int = 5) -> None:
    """Refuse, before any work, a ``tuning.storage`` that cannot be used: a URL that does not
    parse, a driver that is not installed, a server that does not answer within ``timeout_s``
    or refuses the login, a SQLite folder that cannot be written. One paragraph naming it.
    ``url`` as params.yaml gives it (a relative SQLite path is taken from ``root``)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from components.datasets import DataError
    from components.text import first_line

    from .urls import shown_url, storage_url

    def refuse(why: str) -> DataError:
        return DataError(
            f"tuning.storage {shown_url(url) if '://' in url else url!r}: {why}; give a reachable SQLAlchemy URL "
            "(sqlite:///.vigil/optuna.db, postgresql+psycopg2://user:pass@host/db) or set tuning.enabled: false"
        )

    try:
        parsed = make_url(storage_url(url, root))
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise refuse(f"not a database URL ({exc})") from None
    except OSError as exc:  # a SQLite file's folder that cannot be made
        raise refuse(f"cannot be reached or used: {exc}") from None
    sqlite = parsed.drivername.startswith("sqlite")
    args = {"connect_timeout": timeout_s} if parsed.drivername.startswith("postgresql") else {}
    try:
        engine = sa.create_engine(parsed, connect_args=args)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise refuse(f"its driver is not installed ({exc})") from None
    except sa.exc.ArgumentError as exc:
        raise refuse(str(exc)) from None
    try:
        with engine.connect() as conn:
            if sqlite:
                conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS vigil_storage_check (x INTEGER)")
                conn.exec_driver_sql("DROP TABLE vigil_storage_check")
    except sa.exc.DBAPIError as exc:
        raise refuse(f"cannot be reached or used: {first_line(exc)}") from None
    finally:
        engine.dispose()


def open_storage(url: str):
    """RDB storage; on SQLite, writers wait for each other (up to a minute) instead of failing.
    Heartbeats let a study tell a trial of a dead worker on another host from a slow one.

    Two processes opening a new database at once would both create its tables (alembic's
    version row twice: seen in a test), so local processes take turns through a lock file
    beside the SQLite file, and a server database's creation race is retried."""
    import fcntl

    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    parsed = make_url(url)
    sqlite_file = parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:")
    kwargs = {"connect_args": {"timeout": 60}} if sqlite_file else {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            with contextlib.ExitStack() as stack:
                if sqlite_file:
                    lock = stack.enter_context(open(f"{parsed.database}.lock", "a"))
                    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                with warnings.catch_warnings():  # heartbeats are marked experimental; they are what workers need
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        url, engine_kwargs=kwargs, heartbeat_interval=60, grace_period=180
                    )
        except SQLAlchemyError:  # another worker creating the same tables on a server database
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def study_name(series: str, detector: str, raw_md5: str, setup: dict) -> str:
    """``vigil.<series>.<detector>.<data md5>-<setup>``: one study per data version, series and
    detector. ``setup`` holds what else changes the question (objective, preprocessing, fixed
    parameters, search space): a change there starts a new study rather than mixing answers."""
    digest = hashlib.sha256(json.dumps(setup, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"vigil.{series}.{detector}.{raw_md5[:10]}-{digest}"


# --- one trial ----------------------------------------------------------------------------


def suggest(trial, space: dict[str, dict]) -> dict:
    """Draw every parameter of ``space`` (plain specs from the typed config)."""
    out = {}
    for param, s in space.items():
        if s["type"] == "categorical":
            out[param] = trial.suggest_categorical(param, s["choices"])
        elif s["type"] == "int":
            out[param] = trial.suggest_int(param, s["low"], s["high"], step=s["step"] or 1, log=s["log"])
        else:
            out[param] = trial.suggest_float(param, s["low"], s["high"], step=s["step"], log=s["log"])
    return out


def in_space(value, s: dict) -> bool:
    if s["type"] == "categorical":
        return value in s["choices"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if s["type"] == "int" and value != int(value):
        return False
    if not s["low"] <= value <= s["high"]:
        return False
    return s["step"] is None or math.isclose((value - s["low"]) / s["step"], round((value - s["low"]) / s["step"]))


def max_window(name: str, fixed: dict, space: dict[str, dict]) -> int:
    """The longest window a trial may draw (1 for point-wise detectors), with the forecaster's
    extra target step."""
    det = get_detector(name, **fixed)
    if "window" not in det.get_params():
        return 1
    s = space.get("window")
    if s is None:
        w = det.window
    elif s["type"] == "categorical":
        w = max(s["choices"])
    else:
        w = s["high"]
    return int(w) + getattr(det, "span_extra", 0)


def _pruning_callback(trial, started: float):
    """Report the torch detectors' validation loss per epoch, negated (the study maximises),
    and stop a trial the pruner finds hopeless."""
    import optuna

    def report(epoch: int, loss: float) -> None:
        trial.set_user_attr("epochs_run", epoch + 1)
        trial.set_user_attr("seconds_per_epoch", (time.perf_counter() - started) / (epoch + 1))
        if not math.isfinite(loss):
            raise optuna.TrialPruned(f"validation loss is {loss} at epoch {epoch + 1}")
        trial.report(-loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"validation loss {loss:.4g} at epoch {epoch + 1}")

    return report


def make_objective(name: str, fixed: dict, space: dict[str, dict], data: TuningSet, vus_window: int) -> Callable:
    def objective(trial) -> float:
        check_stop()  # Ctrl-C: no new trial (a torch fit also stops within a batch)
        for key, value in owner_marks().items():
            trial.set_user_attr(key, value)
        params = {**fixed, **suggest(trial, space)}
        started = time.perf_counter()
        try:
            det = get_detector(name, **params)
            det.validate_params()
            kwargs = {"verbose": False}
            if "epoch_callback" in inspect.signature(det.fit).parameters:
                trial.set_user_attr("epochs_planned", int(params.get("epochs", det.epochs)))
                kwargs["epoch_callback"] = _pruning_callback(trial, started)
            det.fit(data.fit, **kwargs)
            trial.set_user_attr("device", str(getattr(det, "device_", "cpu")))
            fit_seconds = time.perf_counter() - started
            t0 = time.perf_counter()
            scores, labels = data.score(det)
            value = objective_value(data.used, labels, scores, vus_window)
        except CAUGHT as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise
        trial.set_user_attr("fit_seconds", fit_seconds)
        trial.set_user_attr("score_seconds", time.perf_counter() - t0)
        if hasattr(det, "history_"):
            trial.set_user_attr("epochs_run", det.history_.epochs_run)
            trial.set_user_attr("seconds_per_epoch", det.history_.seconds_per_epoch)
        return value

    return objective


def fail_trials_of_dead_processes(study, storage) -> int:
    """Trials left RUNNING by a process on this machine that is gone (SIGKILL, power) end
    FAILED, so that they do not hang in the study; other hosts' are left to the heartbeat.
    ``storage``: the study's (`open_storage`), through which another process's trial is ended."""
    from optuna.trial import TrialState

    n, study_id = 0, storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = owner_gone(t.user_attrs)
        if pid is None:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "vigil.ended_by", f"a later run: process {pid} was gone")
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        n += 1
    return n


def make_pruner(kind: str, max_epochs: int):
    import optuna

    if kind == "median":
        # After 5 finished trials, from the 3rd epoch on: validation loss is a proxy for the
        # objective, and a stricter start (3 trials, 2nd epoch) pruned 10-12 of 15 torch trials
        # on NAB and MSL C-1 while the few that finished seldom beat the configured parameters.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 2), reduction_factor=3)
    return optuna.pruners.NopPruner()


def _max_epochs(name: str, fixed: dict, space: dict[str, dict]) -> int:
    det = get_detector(name, **fixed)
    if "epochs" not in det.get_params():
        return 1
    s = space.get("epochs")
    if s is None:
        return int(det.epochs)
    return int(max(s["choices"]) if s["type"] == "categorical" else s["high"])


# --- the study ----------------------------------------------------------------------------


PROGRESS_SECONDS = 5.0  # a study longer than this says how far it got, at most this often


def trial_lines(name: str, t0: float):
    """An Optuna callback that logs a line per finished trial (its number and state, value,
    the best so far, time so far), at most every `PROGRESS_SECONDS`: a study runs for minutes
    with no terminal to draw a bar on."""
    due = every(PROGRESS_SECONDS, t0)

    def said(study, trial) -> None:
        if (elapsed := due()) is None:
            return
        value = f"{trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:  # no trial completed yet
            best = "none yet"
        progress(f"[{name}] trial {trial.number}: {value}; best {best} ({elapsed:.0f} s)")

    return said


def run_study(
    name: str,
    fixed: dict,
    space: dict[str, dict],
    data,
    *,
    objective: str,
    n_trials: int | None,
    timeout: float | None,
    pruner: str,
    seed: int,
    storage: str,
    label_free: dict,
    vus_window: int,
    tracking=None,
) -> dict:
    """Tune ``name`` (fixed parameters ``fixed``, search ``space``) on ``data``, the prepared
    data (a `Processed`: only ``train``, ``validation``, ``validation_labels`` and the metadata
    are read). Returns the study's summary: best and configured parameters with their
    objective values, trials run and pruned, and where it all lives. ``tracking``: a
    `TrialTracker` (MLflow), or None."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    meta = data.meta
    window = max_window(name, fixed, space)
    tset = tuning_set(
        data["train"],
        data["validation"],
        data["validation_labels"],
        objective=objective,
        holdout_fraction=label_free["holdout_fraction"],
        n_anomalies=label_free["n_anomalies"],
        seed=label_free["seed"],
        min_steps=2 * (window + 1),
        feedback=feedback_arrays(data),
    )
    if tset.why:
        progress(f"[{name}] {tset.why}")
    setup = {
        "objective": tset.used,
        "label_free": label_free if tset.used == "label_free" else None,
        "vus_window": vus_window,
        "fixed": {k: v for k, v in fixed.items() if k != "device"},  # CPU and GPU workers share a study
        "space": space,
        "scaler": meta.get("scaler"),
        "validation_fraction": meta.get("validation_fraction"),
    }
    if tset.feedback:  # new verdicts: a new study (without any, the name stays what it was)
        setup["feedback"] = (meta.get("feedback") or {}).get("md5")
    sname = study_name(meta["dataset"], name, meta.get("raw_md5", "unversioned"), setup)
    store = open_storage(storage)
    study = optuna.create_study(study_name=sname, storage=store, direction=DIRECTION, load_if_exists=True)
    for key, value in (("detector", name), ("objective", tset.used), ("asked_objective", objective)):
        study.set_user_attr(key, value)
    stale = fail_trials_of_dead_processes(study, store)
    if stale:
        progress(f"[{name}] {stale} trial(s) of a killed run marked failed")
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    before = study.get_trials(deepcopy=False)
    # Seeded from the trials already there: a fresh study repeats its trials exactly; a resumed
    # one (or a second worker) does not draw the first trials' parameters again.
    others_running = any(t.state == TrialState.RUNNING for t in before)
    worker_seed = seed + len(before) + (os.getpid() if others_running else 0)
    n_startup = min(10, max(3, (n_trials or 30) // 3))
    study.sampler = optuna.samplers.TPESampler(seed=worker_seed % 2**32, n_startup_trials=n_startup)
    study.pruner = make_pruner(pruner, _max_epochs(name, fixed, space))

    configured = {**get_detector(name).get_params(), **fixed}
    start_point = {p: configured[p] for p in space if in_space(configured[p], space[p])}
    if len(start_point) == len(space) and not before:  # the search starts from the configured parameters
        study.enqueue_trial(start_point, user_attrs={DEFAULT_ATTR: True}, skip_if_exists=True)

    finished = sum(t.state in done for t in before)
    todo = None if n_trials is None else n_trials - finished
    parent = tracking.start(name, sname, tset) if tracking else None
    t0 = time.perf_counter()
    ran_before = {t.number for t in before}
    try:
        if todo is None or todo > 0:
            callbacks = [MaxTrialsCallback(n_trials, states=done)] if n_trials else []
            callbacks.append(trial_lines(name, t0))
            if tracking:
                callbacks.append(lambda s, t: tracking.log_trial(parent, name, t))
            progress(
                f"[{name}] study {sname}: {finished} trial(s) finished before; "
                f"running {'up to ' + str(todo) if todo else 'until the timeout'}"
                + (f" within {timeout:g} s" if timeout else "")
            )
            study.optimize(
                make_objective(name, fixed, space, tset, vus_window),
                n_trials=todo,
                timeout=timeout,
                callbacks=callbacks,
                catch=CAUGHT,
                gc_after_trial=True,
            )
        else:
            progress(f"[{name}] study {sname} already has {finished} finished trial(s) of {n_trials}; nothing to run")
        default_value = _default_value(study, name, fixed, tset, vus_window)
        summary = summarise(study, name, fixed, default_value, ran_before, time.perf_counter() - t0)
    except BaseException as exc:
        if tracking:
            tracking.end(parent, "KILLED" if isinstance(exc, KeyboardInterrupt | TrainingStopped) else "FAILED")
        raise
    summary.update(
        study=sname,
        storage=shown_url(storage),
        objective=objective,
        objective_used=tset.used,
        objective_note=tset.why,
        planted=[{"start": a.start, "end": a.end, "metrics": list(a.metrics)} for a in tset.planted],
    )
    if tracking:
        summary["mlflow_run_id"] = parent
        tracking.finish(parent, study, summary)
    return summary


def _default_value(study, name: str, fixed: dict, tset: TuningSet, vus_window: int) -> float:
    """The configured parameters' objective value: from the trial that ran them where the
    search started there, else fitted once here and kept in the study (a resumed study does
    not fit it again)."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get(DEFAULT_ATTR):
            return float(t.value)
    if "default_value" in study.user_attrs:
        return float(study.user_attrs["default_value"])
    det = get_detector(name, **fixed).fit(tset.fit)
    scores, labels = tset.score(det)
    value = objective_value(tset.used, labels, scores, vus_window)
    study.set_user_attr("default_value", value)
    return value


def summarise(study, name: str, fixed: dict, default_value: float, ran_before: set[int], seconds: float) -> dict:
    """The best parameters, or the configured ones where no trial beat them (ties keep the
    configured), with the counts and the time pruning saved (epochs not run, at the pruned
    trial's own pace, plus the scoring it skipped)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    by_state = {s: [t for t in trials if t.state == s] for s in (TrialState.COMPLETE, TrialState.PRUNED)}
    complete, pruned = by_state[TrialState.COMPLETE], by_state[TrialState.PRUNED]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if not complete:
        errors = sorted({t.user_attrs.get("error", "no reason recorded") for t in failed})
        raise RuntimeError(f"{name}: no trial of study {study.study_name} finished; failures: {errors[:3]}")
    best = study.best_trial
    tuned = best.value > default_value
    score_s = float(np.mean([t.user_attrs.get("score_seconds", 0.0) for t in complete]))
    saved = sum(
        (t.user_attrs.get("epochs_planned", 0) - t.user_attrs.get("epochs_run", 0))
        * t.user_attrs.get("seconds_per_epoch", 0.0)
        + score_s
        for t in pruned
    )
    mine = [t for t in trials if t.number not in ran_before and t.state != TrialState.RUNNING]
    devices = sorted({t.user_attrs["device"] for t in complete if "device" in t.user_attrs})
    return {
        "detector": name,
        "params": {**fixed, **best.params} if tuned else dict(fixed),
        "chosen": "tuned" if tuned else "configured",
        "best_params": best.params,
        "best_value": float(best.value),
        "best_trial": best.number,
        "default_value": float(default_value),
        "trials": {
            "complete": len(complete),
            "pruned": len(pruned),
            "failed": len(failed),
            "this_run": len(mine),
            "this_run_pruned": sum(t.state == TrialState.PRUNED for t in mine),
        },
        "pruning_saved_seconds": saved,
        "seconds": seconds,
        "devices": devices,
    }


# --- MLflow -------------------------------------------------------------------------------


class TrialTracker:
    """A parent MLflow run per tuned detector, and a child run per trial under it (parameters,
    objective value, duration, device, state). Uses the client, not the fluent API, so that
    detectors tuned in parallel threads do not share an active run."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path):
        from .registry import setup_mlflow

        mlflow = setup_mlflow(tracking_uri, experiment, artifact_root)
        self.client = mlflow.MlflowClient()
        self.experiment_id = mlflow.get_experiment_by_name(experiment).experiment_id

    def _tags(self, **tags) -> dict:
        from .registry import process_tags

        return {**process_tags(), **{k: str(v) for k, v in tags.items()}}

    def start(self, name: str, study: str, tset: TuningSet) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"tune {name}",
            tags=self._tags(
                **{
                    "vigil.kind": "tuning",
                    "vigil.detector": name,
                    "vigil.study": study,
                    "vigil.objective": tset.used,
                    "vigil.objective_note": tset.why or "-",
                }
            ),
        )
        return run.info.run_id

    def log_trial(self, parent: str, name: str, trial) -> None:
        from mlflow.entities import Metric, Param
        from optuna.trial import TrialState

        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{name} trial {trial.number}",
            tags=self._tags(
                **{
                    "mlflow.parentRunId": parent,
                    "vigil.kind": "trial",
                    "vigil.trial": trial.number,
                    "vigil.state": trial.state.name,
                    "vigil.device": trial.user_attrs.get("device", "-"),
                    "vigil.pruned": trial.state == TrialState.PRUNED,
                    "vigil.trial_pid": trial.user_attrs.get("vigil.pid", "-"),
                    **({"vigil.error": trial.user_attrs["error"]} if "error" in trial.user_attrs else {}),
                }
            ),
        )
        now = int(time.time() * 1000)
        metrics = {"duration_seconds": trial.duration.total_seconds() if trial.duration else math.nan}
        if trial.value is not None:
            metrics["objective"] = trial.value
        for key in ("epochs_run", "seconds_per_epoch", "fit_seconds", "score_seconds"):
            if key in trial.user_attrs:
                metrics[key] = float(trial.user_attrs[key])
        self.client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(v)],
            params=[Param(k, str(v)) for k, v in trial.params.items()],
        )
        self.client.set_terminated(run.info.run_id, "FAILED" if trial.state == TrialState.FAIL else "FINISHED")

    def finish(self, parent: str, study, summary: dict) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        t = summary["trials"]
        metrics = {
            "best_objective": summary["best_value"],
            "default_objective": summary["default_value"],
            "trials_complete": t["complete"],
            "trials_pruned": t["pruned"],
            "trials_failed": t["failed"],
            "pruning_saved_seconds": summary["pruning_saved_seconds"],
            "tuning_seconds": summary["seconds"],
        }
        self.client.log_batch(
            parent,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(f"best.{k}", str(v)) for k, v in summary["best_params"].items()],
        )
        self.client.set_tag(parent, "vigil.chosen", summary["chosen"])
        with tempfile.TemporaryDirectory() as tmp:
            for path in study_plots(study, Path(tmp)):
                self.client.log_artifact(parent, str(path), "optuna")
        self.client.set_terminated(parent, "FINISHED")

    def end(self, parent: str, status: str) -> None:
        self.client.set_terminated(parent, status)


def study_plots(study, folder: Path) -> list[Path]:
    """Optuna's optimisation history and parameter importances, as HTML; a plot that cannot be
    drawn (importances need two finished trials that differ) is replaced by a note saying why."""
    from optuna import visualization as vis

    out = []
    for fname, draw in (("optimization_history", vis.plot_optimization_history), ("param_importances", None)):
        path = folder / f"{fname}.html"
        try:
            fig = draw(study) if draw else vis.plot_param_importances(study)
            fig.write_html(path, include_plotlyjs="cdn")
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            path = folder / f"{fname}.txt"
            path.write_text(f"not drawn: {exc}\n")
        out.append(path)
    return out


# --- the Prefect task ---------------------------------------------------------------------


@task(name="tune detector", task_run_name="tune {name}")
def tune_detector(
    name: str,
    fixed: dict,
    space: dict[str, dict],
    processed_dir: Path,
    *,
    objective: str,
    n_trials: int | None,
    timeout: float | None,
    pruner: str,
    seed: int,
    storage: str,
    label_free: dict,
    vus_window: int,
    tracking: dict | None = None,
) -> dict:
    """`run_study` on the prepared data in ``processed_dir``; ``tracking``: the MLflow
    ``tracking_uri``, ``experiment`` and ``artifact_root``, or None for no MLflow runs."""
    from .data import Processed

    tracker = TrialTracker(**tracking) if tracking else None
    summary = run_study(
        name,
        fixed,
        space,
        Processed(processed_dir),
        objective=objective,
        n_trials=n_trials,
        timeout=timeout,
        pruner=pruner,
        seed=seed,
        storage=storage,
        label_free=label_free,
        vus_window=vus_window,
        tracking=tracker,
    )
    t = summary["trials"]
    progress(
        f"[{name}] {summary['objective_used']} {summary['default_value']:.4f} configured -> "
        f"{summary['best_value']:.4f} best ({summary['chosen']}); {t['this_run']} trial(s) this run, "
        f"{t['this_run_pruned']} pruned; {summary['seconds']:.0f} s"
    )
    return summary
