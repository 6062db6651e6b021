"""Tuning: real Optuna studies in real SQLite files, real processes killed and resumed, and the
pipeline end to end on data with no labels at all. No mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from support import REPO
from support.servers import free_port, prefect_server, serving
from support.tuning import IFOREST_SPACE, LABEL_FREE, LSTM_FIXED, LSTM_SPACE, Prepared, study, trials
from support.workspace import SMALL, full, make_workspace, mlflow_client, vigil_run

from components.tuning import correlation_groups, objective_value, planted_tail, tuning_set
from tasks.fit import fit_params
from tasks.tune import in_space, open_storage
from vigil.config import ConfigError, parse_config

# --- the objectives -------------------------------------------------------------------------


def test_planted_tail_is_seeded_labelled_and_leaves_flat_metrics_alone():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(2000, 5)).astype(np.float32)
    train[:, 3] = 0.25  # a metric that never moves: nothing is planted there
    head, tail, labels, causes = planted_tail(train, holdout_fraction=0.2, n_anomalies=10, seed=3, min_steps=20)
    assert head.shape == (1600, 5) and tail.shape == (400, 5)
    assert len(causes) == 10 and labels.sum() == sum(a.end - a.start for a in causes)
    changed = np.flatnonzero(np.any(tail != train[-400:], axis=0))
    assert 3 not in changed and len(changed) >= 2
    assert np.array_equal(tail[labels == 0], train[-400:][labels == 0])  # only labelled steps moved
    again = planted_tail(train, holdout_fraction=0.2, n_anomalies=10, seed=3, min_steps=20)
    assert np.array_equal(again[1], tail)
    assert correlation_groups(train)[3] is None


def test_labelled_objective_without_validation_anomalies_falls_back_to_label_free():
    data = Prepared(labelled_validation=False)
    t = tuning_set(
        data["train"],
        data["validation"],
        data["validation_labels"],
        objective="best_f1",
        holdout_fraction=0.2,
        n_anomalies=5,
        seed=0,
        min_steps=20,
    )
    assert (t.objective, t.used) == ("best_f1", "label_free")
    assert "no labelled anomaly in the validation split" in t.why
    assert t.labels.any() and len(t.fit) + len(t.x) == len(data["train"])
    labelled = tuning_set(
        *(Prepared()[k] for k in ("train", "validation", "validation_labels")),
        objective="best_f1",
        holdout_fraction=0.2,
        n_anomalies=5,
        seed=0,
        min_steps=20,
    )
    assert labelled.used == "best_f1" and not labelled.why
    perfect = objective_value("best_f1", labelled.labels, labelled.labels.astype(float), 10)
    assert perfect == 1.0


def test_search_space_errors_name_the_key():
    raw = full(SMALL)
    raw["tuning"]["spaces"] = {
        "iforest": {"max_featurs": {"type": "float", "low": 0.1, "high": 1.0}},
        "pca": {"n_components": {"type": "float", "low": 0.0, "high": 0.9}},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "params.yaml")
    assert "tuning.spaces.iforest.max_featurs: unknown parameter of iforest" in str(err.value)
    assert "tuning.spaces.pca.n_components: 0.0 is not allowed" in str(err.value)
    raw["tuning"]["spaces"] = {"lstm_ae": {"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}}
    with pytest.raises(ConfigError, match=r"tuning.spaces.lstm_ae.lr: .*log: needs low > 0"):
        parse_config(raw, "params.yaml")
    raw["tuning"]["spaces"] = {}
    raw["tuning"].update(n_trials=None, timeout=None)
    with pytest.raises(ConfigError, match="a study needs a budget"):
        parse_config(raw, "params.yaml")
    # the repository's own spaces hold the configured parameters, so the search starts there
    cfg = parse_config(yaml.safe_load((REPO / "params.yaml").read_text()))
    from components.detectors import get_detector

    for name, space in cfg.tuning.spaces.items():
        configured = {**get_detector(name).get_params(), **cfg.detectors[name]}
        outside = [p for p, r in space.items() if not in_space(configured[p], r.spec())]
        assert outside in ([], ["max_samples"]), name  # iforest's "auto" is not a number to search around


# --- studies ---------------------------------------------------------------------------------


def test_study_never_reads_the_test_tail_and_a_fixed_seed_repeats_its_trials(tmp_path):
    data = Prepared()
    first = study("iforest", {}, IFOREST_SPACE, data, f"sqlite:///{tmp_path}/a.db")
    assert set(data.read) <= {"train", "validation", "validation_labels"}
    again = study("iforest", {}, IFOREST_SPACE, Prepared(), f"sqlite:///{tmp_path}/b.db")
    params = lambda path, s: [t.params for t in trials(f"sqlite:///{tmp_path}/{path}", s["study"])]  # noqa: E731
    assert params("a.db", first) == params("b.db", again)
    assert first["best_value"] >= first["default_value"]
    assert first["trials"]["complete"] == 6
    assert first["study"].startswith("vigil.synthetic/seed0.iforest.md5-of-see")


def test_the_task_reads_no_test_array_from_disk(tmp_path, monkeypatch, capsys):
    """The prepared folder, written without the test tail's arrays at all: the task still tunes,
    saying how far it got as log lines (at most every `PROGRESS_SECONDS`: 0 here, every trial)."""
    import tasks.tune
    from tasks.tune import tune_detector

    monkeypatch.setattr(tasks.tune, "PROGRESS_SECONDS", 0.0)
    data = Prepared()
    folder = tmp_path / "processed"
    folder.mkdir()
    np.savez(folder / "arrays.npz", **data.arrays)
    (folder / "meta.json").write_text(json.dumps(data.meta))
    out = tune_detector.fn(
        "zscore",
        {},
        {"aggregate": {"type": "categorical", "choices": ["max", "mean"]}},
        folder,
        objective="auc_pr",
        n_trials=3,
        timeout=None,
        pruner="none",
        seed=0,
        storage=f"sqlite:///{tmp_path}/s.db",
        label_free=LABEL_FREE,
        vus_window=10,
    )
    assert out["objective_used"] == "auc_pr" and out["trials"]["complete"] == 3
    trials = [ln for ln in capsys.readouterr().err.splitlines() if "] trial " in ln]
    assert [ln.split(":")[0] for ln in trials] == [f"[zscore] trial {k}" for k in range(3)]
    assert all("; best " in ln for ln in trials)


@pytest.mark.slow
def test_median_pruner_stops_hopeless_torch_trials(tmp_path):
    out = study("lstm_ae", LSTM_FIXED, LSTM_SPACE, Prepared(), f"sqlite:///{tmp_path}/p.db", n_trials=10)
    t = out["trials"]
    assert t["pruned"] >= 1, out
    assert t["complete"] + t["pruned"] == 10
    pruned = [x for x in trials(f"sqlite:///{tmp_path}/p.db", out["study"]) if x.state.name == "PRUNED"]
    assert all(x.user_attrs["epochs_run"] < x.user_attrs["epochs_planned"] for x in pruned)
    assert out["pruning_saved_seconds"] > 0
    assert out["devices"] == ["cpu"]


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    sys.path[:0] = [{repo!r}, {tests!r}]
    from support.tuning import Prepared, study, LSTM_FIXED, LSTM_SPACE, IFOREST_SPACE
    go = Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.05)
    name = sys.argv[3]
    fixed, space = (LSTM_FIXED, LSTM_SPACE) if name == "lstm_ae" else ({{}}, IFOREST_SPACE)
    out = study(name, fixed, space, Prepared(), sys.argv[1], n_trials=int(sys.argv[4]), pruner="none")
    print(json.dumps(out["trials"]))
    """
)


def _worker(tmp_path: Path, storage: str, detector: str, n_trials: int) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(repo=str(REPO), tests=str(REPO / "tests")))
    go = tmp_path / "go"
    return subprocess.Popen(
        [sys.executable, str(script), storage, str(go), detector, str(n_trials)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path, backend, request):
    """Two worker processes on one study: SQLite under the checkout, or a PostgreSQL server as
    many hosts would share."""
    storage = f"sqlite:///{tmp_path}/shared.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    workers = [_worker(tmp_path, storage, "iforest", 16) for _ in range(2)]
    time.sleep(3)  # both imported and waiting
    (tmp_path / "go").touch()
    outs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[1][-2000:] for o in outs]
    name = json.loads(outs[0][0].splitlines()[-1])
    import optuna

    (summary,) = optuna.get_all_study_summaries(storage)
    finished = [t for t in trials(storage, summary.study_name) if t.state.name in ("COMPLETE", "PRUNED")]
    pids = {int(t.user_attrs["vigil.pid"]) for t in finished}
    assert pids == {w.pid for w in workers}, name
    assert 16 <= len(finished) <= 17  # the shared budget; a trial in flight when it was reached finishes


@pytest.mark.slow
def test_a_killed_tuning_resumes_without_repeating_finished_trials(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path}/resume.db"
    worker = _worker(tmp_path, storage, "lstm_ae", 12)
    (tmp_path / "go").touch()
    deadline = time.monotonic() + 240
    finished_before: list = []
    while time.monotonic() < deadline:
        time.sleep(0.5)
        # through Vigil's own opening, which waits while the worker is still creating the tables
        summaries = optuna.get_all_study_summaries(open_storage(storage)) if (tmp_path / "resume.db").exists() else []
        if summaries:
            ts = trials(storage, summaries[0].study_name)
            finished_before = [t for t in ts if t.state.name == "COMPLETE"]
            if len(finished_before) >= 3 and any(t.state.name == "RUNNING" for t in ts):
                break
    os.kill(worker.pid, signal.SIGKILL)  # midway, a trial running
    worker.wait(timeout=30)
    assert 3 <= len(finished_before) < 12
    name = optuna.get_all_study_summaries(storage)[0].study_name
    finished_before = [(t.number, t.params) for t in trials(storage, name) if t.state.name in ("COMPLETE", "PRUNED")]

    out = study("lstm_ae", LSTM_FIXED, LSTM_SPACE, Prepared(), storage, n_trials=12, pruner="none")
    after = trials(storage, name)
    finished = [(t.number, t.params) for t in after if t.state.name in ("COMPLETE", "PRUNED")]
    assert finished[: len(finished_before)] == finished_before  # kept as they were
    assert len(finished) == 12 and out["trials"]["this_run"] == 12 - len(finished_before)
    killed = [t for t in after if t.state.name == "FAIL"]
    assert len(killed) == 1 and "was gone" in killed[0].user_attrs["vigil.ended_by"]
    params = [json.dumps(p, sort_keys=True) for _, p in finished]
    assert len(set(params)) == len(params)  # the resumed sampler did not draw the first trials again
    assert not any(t.state.name == "RUNNING" for t in after)


# --- in the pipeline ---------------------------------------------------------------------------


def test_train_refuses_parameters_tuned_for_other_settings(tmp_path):
    cfg = parse_config(
        {**full(SMALL), "tuning": {"enabled": True, "spaces": {"zscore": {"aggregate": {"choices": ["max", "mean"]}}}}}
    )
    with pytest.raises(ConfigError, match=r"holds no tuned parameters; run `vigil tune`"):
        fit_params(cfg.detectors, cfg.tuning.enabled, tmp_path)
    entry = {"best_params": {"aggregate": "mean"}, "params": {"aggregate": "mean", "min_scale": 0.5}}
    tuned = {"enabled": True, "untuned": ["pca"], "detectors": {"zscore": entry}}
    (tmp_path / "params.json").write_text(json.dumps(tuned))
    cfg_new = parse_config({**cfg.model_dump(mode="json"), "detectors": {"zscore": {"min_scale": 0.1}, "pca": {}}})
    with pytest.raises(ConfigError, match=r"zscore was tuned with other detectors.zscore settings \(\['min_scale'\]\)"):
        fit_params(cfg_new.detectors, cfg_new.tuning.enabled, tmp_path)
    ok = parse_config({**cfg.model_dump(mode="json"), "detectors": {"zscore": {"min_scale": 0.5}, "pca": {}}})
    chosen = fit_params(ok.detectors, ok.tuning.enabled, tmp_path)
    assert chosen["zscore"][0] == {"aggregate": "mean", "min_scale": 0.5}
    assert chosen["pca"] == ({}, None)


@pytest.mark.slow
def test_unlabelled_data_gets_a_tuned_registered_model(tmp_path):
    """No label column anywhere: the label-free objective tunes, train fits the best trial, the
    registry registers it, and MLflow holds a child run per trial under the tuning run."""
    rng = np.random.default_rng(7)
    n = 1600
    t = np.arange(n)
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-05-01", periods=n, freq="min").astype(str),
            "cpu": 40 + 10 * np.sin(2 * np.pi * t / 120) + rng.normal(0, 1, n),
            "mem": 60 + 5 * np.sin(2 * np.pi * t / 120 + 1) + rng.normal(0, 0.5, n),
            "io": 30 + 8 * np.sin(2 * np.pi * t / 120 + 0.5) + rng.normal(0, 1, n),
        }
    )
    raw = tmp_path / "ops"
    raw.mkdir()
    frame.to_csv(raw / "node3.csv", index=False)
    params = {
        "dataset": {"kind": "csv", "root": str(raw), "name": "node3.csv"},
        "detectors": {"zscore": {}, "iforest": {}},
        "tuning": {
            "enabled": True,
            "objective": "label_free",
            "n_trials": 5,
            "spaces": {"zscore": {"aggregate": {"choices": ["max", "mean"]}}, "iforest": IFOREST_SPACE},
        },
    }
    ws = make_workspace(tmp_path, params)
    out = vigil_run(ws, "--new-data-version")
    tuned = json.loads((ws / "tuned" / "params.json").read_text())
    assert set(tuned["detectors"]) == {"zscore", "iforest"}
    for name, s in tuned["detectors"].items():
        assert s["objective_used"] == "label_free" and s["trials"]["complete"] == 5, name
        assert len(s["planted"]) >= 5
    assert "label_free configured" in out.stdout and "made it @champion" in out.stdout
    fitted = json.loads((ws / "models" / "iforest.json").read_text())
    assert fitted["params"]["n_estimators"] == tuned["detectors"]["iforest"]["params"].get("n_estimators", 100)
    assert fitted["tuning"]["study"] == tuned["detectors"]["iforest"]["study"]

    mlflow, client = mlflow_client(ws)
    model = next(m for m in client.search_registered_models())
    champion = client.get_model_version_by_alias(model.name, "champion")
    run = client.get_run(champion.run_id)
    study_name = run.data.tags["vigil.tuning.study"]
    parent = client.get_run(run.data.tags["vigil.tuning.mlflow_run_id"])
    assert parent.data.tags["vigil.study"] == study_name and parent.info.status == "FINISHED"
    kids = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(kids) == 5
    assert all(k.data.tags["vigil.device"] == "cpu" and "objective" in k.data.metrics for k in kids)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert "optuna/optimization_history.html" in artifacts


@pytest.mark.slow
def test_tune_deployment_runs_on_a_gpu_pool_worker(tmp_path):
    """A real Prefect server on loopback: `vigil tune --deploy` registers tune/vigil-tune on the
    work pool gpu, and a process worker started with `prefect worker start --pool gpu` runs it."""
    import urllib.request

    from support.workspace import VIGIL, sh

    params = {
        **SMALL,
        "tuning": {"enabled": True, "n_trials": 3, "spaces": {"zscore": {"aggregate": {"choices": ["max", "mean"]}}}},
    }
    ws = make_workspace(tmp_path, params)
    vigil_run(ws, "--step", "prepare", "--new-data-version")
    with prefect_server(tmp_path / "prefect-server-home") as (prefect, env):
        deployed = sh(VIGIL, "tune", "--deploy", cwd=ws, env=env)
        assert "deployed tune/vigil-tune" in deployed.stdout and "work pool 'gpu'" in deployed.stdout
        sh(prefect, "deployment", "run", "tune/vigil-tune", cwd=ws, env=env)
        worker = sh(prefect, "worker", "start", "--pool", "gpu", "--run-once", cwd=tmp_path, env=env)
        tuned = json.loads((ws / "tuned" / "params.json").read_text())
        assert tuned["enabled"] and tuned["detectors"]["zscore"]["trials"]["complete"] == 3, worker.stdout[-2000:]
        request = urllib.request.Request(
            env["PREFECT_API_URL"] + "/flow_runs/filter",
            data=b"{}",
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        runs = json.loads(urllib.request.urlopen(request, timeout=30).read())
        on_pool = [r for r in runs if r["deployment_id"]]
        assert len(on_pool) == 1, runs
        assert on_pool[0]["state_type"] == "COMPLETED" and on_pool[0]["work_pool_name"] == "gpu"


def test_optuna_dashboard_shows_the_studies(tmp_path):
    """The documented command, `optuna-dashboard <tuning.storage>`, serves the study on loopback."""
    import urllib.request

    storage = f"sqlite:///{tmp_path}/o.db"
    out = study("zscore", {}, {"aggregate": {"type": "categorical", "choices": ["max", "mean"]}}, Prepared(), storage)
    port = free_port()
    dashboard = [
        str(Path(sys.executable).parent / "optuna-dashboard"),
        storage,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with serving(dashboard, f"http://127.0.0.1:{port}/api/studies", timeout=60):
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10).read()
    names = [s["study_name"] for s in json.loads(body)["study_summaries"]]
    assert names == [out["study"]]


def test_vigil_tune_says_when_tuning_is_off(tmp_path):
    from support.workspace import VIGIL, sh

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(full(SMALL)))
    out = sh(VIGIL, "tune", "--params", "p.yaml", cwd=tmp_path, check=False)
    assert out.returncode == 2
    assert "tuning.enabled is false; set it to true to tune" in out.stderr
