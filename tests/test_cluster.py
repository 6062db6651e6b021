"""Past one process, for real: a `dask scheduler` and two `dask worker` processes started on
loopback, as an operator starts them, and Vigil's commands pointed at them with
``--scheduler``. Each test runs the same work in one process too and checks that the cluster's
figures are the same: the benchmark's cells, a tuning study two workers share, and 200 series
scored into the alerts store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from support import REPO
from support.servers import dask_cluster
from support.workspace import BENCH, SMALL, VIGIL, drop, make_workspace, sh, table, vigil_env, write_series_csv

pytestmark = pytest.mark.slow
COSTS = ("fit_seconds", "score_steps_per_second", "peak_memory_mb")  # measured, not computed: they differ


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("dask"), workers=2) as address:
        yield address


def _figures(report: dict) -> dict:
    """Every cell's computed figures and alert rule, by cell."""
    out = {}
    for r in report["rows"]:
        figures = {k: v for k, v in (r.get("figures") or {}).items() if k not in COSTS}
        out[r["kind"], r["series"], r["detector"]] = (r["status"], r["key"], r.get("threshold"), figures)
    return out


def test_benchmark_cells_on_the_cluster_are_the_cells_of_one_process(scheduler, tmp_path):
    params = {**BENCH, "detectors": {"zscore": {}, "pca": {"n_components": 2}, "knn": {"n_neighbors": 3}}}
    ws = make_workspace(tmp_path, params)
    write_series_csv(ws / "bench/ops/web-1.csv", seed=1)
    write_series_csv(ws / "bench/grid/storage-7.csv", seed=2)
    (ws / "bench/empty").mkdir(parents=True)
    bench = [str(REPO / ".venv/bin/python"), "-m", "vigil", "stage", "benchmark"]
    env = vigil_env(ws)
    here = sh(*bench, cwd=ws, env=env)
    assert "10 cell(s) computed" in here.stdout and "cells run in this process" in here.stderr
    first = json.loads((ws / "reports/benchmark.json").read_text())
    sh("rm", "-rf", "benchmark/cells", cwd=ws)
    there = sh(*bench, "--scheduler", scheduler, cwd=ws, env=env)
    assert "10 cell(s) computed" in there.stdout, there.stdout + there.stderr
    assert f"cells run on the Dask cluster at {scheduler}" in there.stderr
    again = json.loads((ws / "reports/benchmark.json").read_text())
    assert _figures(again) == _figures(first)
    assert [(r["series"], r["detector"]) for r in again["rows"]] == [
        (r["series"], r["detector"]) for r in first["rows"]
    ]
    cells = sorted((ws / "benchmark/cells").rglob("*.json"))
    assert len(cells) == 10  # one file a cell, each written once by the worker that ran it
    # a rerun on the cluster finds them all: nothing computed twice
    assert "0 cell(s) computed, 10 reused" in sh(*bench, "--scheduler", scheduler, cwd=ws, env=env).stdout


TRIALS = 12
TUNED = {  # trials of a fraction of a second each, so that both tasks are drawing while the study runs
    **SMALL,
    "detectors": {"iforest": {"n_estimators": 100}},
    "tuning": {
        "enabled": True,
        "n_trials": TRIALS,
        "spaces": {"iforest": {"n_estimators": {"type": "int", "low": 50, "high": 300}}},
        "storage": "sqlite:///.vigil/optuna.db",
    },
}


@pytest.fixture(scope="module")
def tuned_on_cluster(scheduler, tmp_path_factory):
    """`vigil run` with its tuning on the cluster: two tasks share the detector's study."""
    ws = make_workspace(tmp_path_factory.mktemp("tuned"), TUNED)
    out = sh(VIGIL, "run", "--new-data-version", "--scheduler", scheduler, cwd=ws, env=vigil_env(ws))
    return ws, out


def test_two_workers_share_one_tuning_study(tuned_on_cluster):
    import optuna
    from optuna.trial import TrialState

    ws, out = tuned_on_cluster
    [name] = optuna.get_all_study_names(f"sqlite:///{ws}/.vigil/optuna.db")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{ws}/.vigil/optuna.db")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    # both tasks stop once the study holds n_trials finished ones (one more may be in flight each)
    assert TRIALS <= len(complete) <= TRIALS + 1
    assert len({t.user_attrs["vigil.pid"] for t in study.trials}) == 2  # two worker processes drew trials
    tuned = json.loads((ws / "tuned/params.json").read_text())["detectors"]["iforest"]
    assert tuned["best_value"] == max(t.value for t in complete)  # the summary is the whole study's
    assert tuned["study"] == name
    assert "champion" in out.stdout


def test_200_series_scored_on_the_cluster_store_what_one_process_stores(scheduler, tuned_on_cluster, tmp_path):
    """200 series, each its own landing folder: scored by `vigil score` in one process and on
    the cluster (a task per 25 series): the same points, flags and incidents."""
    ws, _ = tuned_on_cluster
    frame = pd.read_csv(ws / "data/raw/synthetic/test.csv").drop(columns=["label"])
    rng = np.random.default_rng(0)
    places = {}
    for where in ("here", "cluster"):
        params = yaml.safe_load((ws / "params.yaml").read_text())
        params["scoring"].update(
            landing=str(tmp_path / where / "landing"), store=f"sqlite:///{tmp_path / where / 'alerts.db'}"
        )
        params["scoring"]["settle_seconds"] = 0
        path = tmp_path / where / "params.yaml"
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(params))
        places[where] = path
    for i in range(200):
        start = int(rng.integers(0, len(frame) - 60))
        part = frame.iloc[start : start + 60]
        for where in places:
            drop(part, tmp_path / where / "landing", f"node-{i:03d}", "part-0")
    here = sh(VIGIL, "score", "--params", str(places["here"]), cwd=ws, env=vigil_env(ws))
    there = sh(VIGIL, "score", "--params", str(places["cluster"]), "--scheduler", scheduler, cwd=ws, env=vigil_env(ws))
    for out in (here, there):
        assert "200 file(s), 12000 steps in, 12000 scored" in out.stdout, out.stdout + out.stderr
    cols = ["source", "ts", "score", "threshold", "flag", "version", "metrics"]
    points = {w: table(f"sqlite:///{tmp_path / w / 'alerts.db'}", "points")[cols] for w in places}
    order = ["source", "ts"]
    pd.testing.assert_frame_equal(
        points["here"].sort_values(order).reset_index(drop=True),
        points["cluster"].sort_values(order).reset_index(drop=True),
    )
    keep = ["source", "start", "end", "steps", "peak_score", "threshold", "top_metrics", "raised"]
    incidents = {w: table(f"sqlite:///{tmp_path / w / 'alerts.db'}", "incidents")[keep] for w in places}
    pd.testing.assert_frame_equal(
        incidents["here"].sort_values(["source", "start"]).reset_index(drop=True),
        incidents["cluster"].sort_values(["source", "start"]).reset_index(drop=True),
    )
    assert len(incidents["here"]) > 0
    assert not list((tmp_path / "cluster" / "landing").glob("node-*/*.csv"))  # every file moved out once scored


def test_a_fan_out_past_what_the_prefect_api_takes_as_a_flow_runs_parameters(tmp_path):
    """The API refuses a flow run's parameters past 512 KB, and Prefect copies them into every
    task the flow submits: the full benchmark's 1,940 cells (4.7 MB) were refused so, then held
    7.8 GB as a closure. Here 0.7 MB of inputs runs on a LocalCluster, every result once, and
    each task run is sent parameters of a few hundred bytes."""
    script = (
        "from flows.cluster import fan_out\n"
        "from tasks.cluster import handed_over, task_runner\n"
        "from vigil.config import ClusterConfig\n"
        "from support.fan import length_of\n"
        "inputs = [{'i': i, 'payload': 'x' * 12000} for i in range(60)]\n"
        "got = []\n"
        "with handed_over(length_of, inputs, got.append) as work:\n"
        "    fan_out.with_options(task_runner=task_runner(ClusterConfig(workers=1)))('test: 60 inputs', work)\n"
        "assert sorted(g[:2] for g in got) == [(i, 12000) for i in range(60)], got[:3]\n"
        "print('fanned out', len(got), 'parameters', max(g[2] for g in got), 'bytes')\n"
    )
    env = {**vigil_env(make_workspace(tmp_path, SMALL)), "PYTHONPATH": f"{REPO / 'tests'}:{REPO}"}
    out = sh(str(REPO / ".venv/bin/python"), "-c", script, cwd=tmp_path, env=env)
    assert "fanned out 60" in out.stdout
    assert int(out.stdout.split("parameters ")[1].split()[0]) < 1000, out.stdout
