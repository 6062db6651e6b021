"""The real flow end to end: Prefect without a server, MLflow on a temporary SQLite store,
DVC and git on a temporary repository. No mocks."""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from support import REPO
from support.workspace import (
    DVC,
    SMALL,
    full,
    lock_md5,
    make_workspace,
    mlflow_client,
    sh,
    tree_digest,
    vigil_env,
    vigil_run,
)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """`vigil run` in a fresh workspace, through the command tree as the `vigil` script calls it,
    counting how often params.yaml is parsed (one run more would cost some 12 s of CPU)."""
    ws = make_workspace(tmp_path_factory.mktemp("pipeline"), SMALL)
    out = sh(sys.executable, "-c", COUNT_PARSES, "--new-data-version", cwd=ws, env=vigil_env(ws))
    return ws, out


# `vigil run` itself (vigil.cli.main, what the console script calls), counting every parse of
# a params file: the command tree parses it once and hands the parsed config to every flow
COUNT_PARSES = """
import sys
import vigil.config
from vigil.cli import main

parse, parsed = vigil.config.parse_config, []
vigil.config.parse_config = lambda *a, **k: parsed.append(1) or parse(*a, **k)
rc = main(["run", *sys.argv[1:]])
print(f"params parsed {len(parsed)} time(s)")
sys.exit(rc)
"""


@pytest.mark.slow
def test_run_registers_a_loadable_champion_with_the_data_version(first_run):
    ws, out = first_run
    assert "made it @champion" in out.stdout
    mlflow, client = mlflow_client(ws)
    experiment = client.get_experiment_by_name("vigil")  # the training runs' page, to open in `vigil ui`
    assert (f"`vigil ui`, then http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?"
            "workflowType=machine_learning&orderByKey=metrics.%60val_vus_pr%60") in out.stdout  # fmt: skip
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    name = "vigil-synthetic-seed0"
    champion = client.get_model_version_by_alias(name, "champion")
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    processed = ws / "data" / "processed"
    meta = json.loads((processed / "meta.json").read_text())
    import numpy as np
    import pandas as pd

    with np.load(processed / "arrays.npz") as z:
        frame = pd.DataFrame(z["raw_test"], columns=meta["features"])
    pred = model.predict(frame)
    assert list(pred.columns) == ["score", "alert_score", "flag", "incident", "top_metrics"]
    assert len(pred) == len(frame)
    assert set(pred["flag"].unique()) <= {0, 1}
    # the served model applies the alert rule evaluation measured: smoothing, threshold, incidents
    from components.alerting import AlertRule

    report = json.loads((ws / "reports" / "metrics.json").read_text())
    rule = AlertRule.from_dict(report[champion.tags["vigil.detector"]]["alert_rule"])
    np.testing.assert_allclose(pred["alert_score"], rule.smoothed(pred["score"].to_numpy()))
    assert (pred["flag"] == rule.flags(pred["score"].to_numpy())).all()
    raised = [i for i in rule.incidents(pred["score"].to_numpy()) if i.raised]
    assert pred["incident"].max() == len(raised)
    assert pred["top_metrics"].str.count(",").eq(2).all()
    # the served model names what is wrong with its input: missing columns first, NaN and inf alike
    with pytest.raises(ValueError, match=r"^input lacks the metrics \['mem_used'\]"):
        model.predict(frame.drop(columns=["mem_used"]))
    for bad in (np.inf, np.nan):
        with pytest.raises(ValueError, match=r"NaN or infinite values in column\(s\) \['cpu_user'\], at rows \[7\]"):
            model.predict(frame.assign(cpu_user=frame["cpu_user"].where(frame.index != 7, bad)))
    # the run behind the champion carries commit, data and params hashes equal to what DVC and git record
    run = client.get_run(champion.run_id)
    tags = run.data.tags
    head = sh("git", "rev-parse", "HEAD", cwd=ws).stdout.strip()
    assert tags["vigil.git_commit"] == head
    assert tags["vigil.raw_md5"] == lock_md5(ws, "prepare", "deps", "data/raw/synthetic")
    assert tags["vigil.processed_md5"] == lock_md5(ws, "prepare", "outs", "data/processed")
    from vigil.config import load_config, params_hash

    assert tags["vigil.params_hash"] == params_hash(load_config(ws / "params.yaml"))
    assert "val_vus_pr" in run.data.metrics
    assert "test_point_f1" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert any(p.endswith(".png") for p in artifacts)
    assert any(p.endswith(".html") for p in artifacts)


@pytest.mark.slow
def test_one_vigil_run_parses_params_once(first_run):
    _, out = first_run
    assert "made it @champion" in out.stdout, out.stdout[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "params parsed 1 time(s)"


@pytest.mark.slow
def test_flow_runs_are_named_after_the_dataset_and_series(first_run):
    """In the Prefect UI a run says what it ran on, not an adjective-animal."""
    import urllib.request

    ws, _ = first_run
    dataset = yaml.safe_load((ws / "params.yaml").read_text())["dataset"]
    series = f"{dataset.get('kind', 'synthetic')}:{dataset['name']}"
    request = urllib.request.Request(
        vigil_env(ws)["PREFECT_API_URL"] + "/flow_runs/filter",
        data=json.dumps({"flow_runs": {"name": {"like_": series}}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    names = {r["name"] for r in json.loads(urllib.request.urlopen(request, timeout=30).read())}
    assert {f"{flow} {series}" for flow in ("pipeline", "prepare", "train", "evaluate")} <= names, names


@pytest.mark.slow
def test_a_worse_model_does_not_move_the_champion(first_run):
    ws, _ = first_run
    _, client = mlflow_client(ws)
    name = "vigil-synthetic-seed0"
    before = client.get_model_version_by_alias(name, "champion").version
    registered = len(client.search_model_versions(f"name='{name}'"))
    worse = {**SMALL, "detectors": {"zscore": {"aggregate": "mean"}}}
    (ws / "params.yaml").write_text(yaml.safe_dump(full(worse)))
    try:
        out = vigil_run(ws)
    finally:
        (ws / "params.yaml").write_text(yaml.safe_dump(full(SMALL)))
    assert "champion stays version" in out.stdout
    versions = client.search_model_versions(f"name='{name}'")
    assert len(versions) == registered + 1  # registered, never deleted
    assert client.get_model_version_by_alias(name, "champion").version == before


@pytest.mark.parametrize(
    "corruption, message",
    [
        ("nan_column", r"test.csv: expect_column_values_to_not_be_null, column 'cpu_user'"),
        ("missing_column", r"test.csv: expect_table_columns_to_match_ordered_list"),
        ("label_2", r"test.csv: expect_column_values_to_be_in_set, column 'label', lines \[9\]"),
    ],
)
@pytest.mark.slow
def test_bad_raw_data_stops_at_validation_and_changes_nothing(first_run, corruption, message):
    import re

    ws, _ = first_run
    raw = ws / "data" / "raw" / "synthetic" / "test.csv"
    original = raw.read_bytes()
    before = {p: tree_digest(ws / p) for p in ("data/processed", "mlflow", "models", "reports")}
    lock_before = (ws / "dvc.lock").read_bytes()
    import pandas as pd

    frame = pd.read_csv(raw)
    if corruption == "nan_column":
        frame["cpu_user"] = float("nan")
    elif corruption == "missing_column":
        frame = frame.drop(columns=["mem_used"])
    else:
        frame.loc[7, "label"] = 2
    frame.to_csv(raw, index=False)
    try:
        refused = vigil_run(ws, check=False)  # without the flag: the data version check refuses
        assert refused.returncode == 3
        assert "dvc.lock records" in refused.stderr
        out = vigil_run(ws, "--new-data-version", check=False)
    finally:
        raw.write_bytes(original)
    assert out.returncode == 3, out.stdout[-2000:]
    assert "raw data failed validation" in out.stderr, out.stderr
    assert re.search(message, out.stderr), out.stderr
    for p, digest in before.items():
        assert tree_digest(ws / p) == digest, f"{p} changed"
    assert (ws / "dvc.lock").read_bytes() == lock_before


@pytest.mark.parametrize(
    "step, broken",
    [
        ("train", {"detectors": {"zscore": {}, "lstm_ae": {"val_fraction": 0.99, "device": "cpu"}}}),  # no window left
        ("evaluate", {"threshold": {"method": "pot_validation", "pot_level": 0.9999}}),  # too few peaks for POT
    ],
)
@pytest.mark.slow
def test_a_failure_in_a_later_step_changes_nothing(first_run, step, broken):
    ws, _ = first_run
    before = {p: tree_digest(ws / p) for p in ("data/processed", "mlflow", "models", "reports")}
    lock_before = (ws / "dvc.lock").read_bytes()
    runs_before = set((ws / ".vigil" / "runs").glob("*")) if (ws / ".vigil" / "runs").exists() else set()
    (ws / "params.yaml").write_text(yaml.safe_dump(full({**SMALL, **broken})))
    try:
        out = vigil_run(ws, check=False)
    finally:
        (ws / "params.yaml").write_text(yaml.safe_dump(full(SMALL)))
    assert out.returncode != 0, out.stdout[-2000:]
    if step == "train":
        assert "leaves no window after holding out 99%" in out.stderr
    else:
        assert "POT needs at least 10" in out.stderr
    for p, digest in before.items():
        assert tree_digest(ws / p) == digest, f"{p} changed after a failure in {step}"
    assert (ws / "dvc.lock").read_bytes() == lock_before
    kept = set((ws / ".vigil" / "runs").glob("*")) - runs_before
    assert len(kept) == 1  # the failed run's own folder stays, for a look


def test_dvc_repro_dry_on_a_fresh_clone_lists_the_operators_pipeline_only(tmp_path):
    """Plain `dvc repro` is the operator's pipeline; the benchmark and the log formats' reference
    analyses are reports/dvc.yaml's, their own targets. On a fresh clone (no stage's output
    made yet) a dry run lists what would run instead of stopping at the first missing output
    (DVC's run cache hashed it: treeverse/dvc#9818; the Makefile mends this environment's DVC)."""
    ws = make_workspace(tmp_path, yaml.safe_load((REPO / "params.yaml").read_text()))  # the benchmark's roots too

    def would_run(*target: str) -> list[str]:
        out = sh(DVC, "repro", "--dry", *target, cwd=ws)
        return [line.split("'")[1] for line in out.stdout.splitlines() if line.startswith("Running stage")]

    operators = would_run()
    assert operators[:2] == ["generate", "logs_generate"] and "evaluate" in operators
    assert not [s for s in operators if "benchmark" in s or "logs_reference" in s]
    reports = would_run("reports/dvc.yaml")
    assert {"reports/dvc.yaml:benchmark", "reports/dvc.yaml:logs_reference"} <= set(reports)
    assert "evaluate" not in reports
