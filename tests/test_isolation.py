"""Runs in one checkout never corrupt each other: a second run waits for the first (or refuses,
naming it, with --no-wait), so each registered version carries the lineage of its own data."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from support.servers import prefect_env
from support.workspace import SMALL, VIGIL, full, make_workspace, mlflow_client


def _labelled_csv(folder):
    rng = np.random.default_rng(2)
    n = 1500
    t = np.arange(n)
    label = np.zeros(n, dtype=int)
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-02-01", periods=n, freq="min").astype(str),
            "cpu": 40 + 10 * np.sin(2 * np.pi * t / 90) + rng.normal(0, 1, n),
            "disk": 20 + 5 * np.sin(2 * np.pi * t / 45) + rng.normal(0, 0.5, n),
        }
    )
    for s in (900, 1100, 1300):  # labelled incidents in the validation head and the test tail
        frame.loc[s : s + 8, "cpu"] += 30
        label[s : s + 9] = 1
    frame["label"] = label
    folder.mkdir()
    frame.to_csv(folder / "node3.csv", index=False)


def _start(ws, *args):
    env = prefect_env(ws.parent)
    return subprocess.Popen(
        [VIGIL, "run", *args], cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_two_runs_at_once_on_different_data_keep_their_own_lineage(tmp_path):
    from tasks.versioning import dvc_hash

    ws = make_workspace(tmp_path, SMALL)
    _labelled_csv(tmp_path / "ops")
    other = {**SMALL, "dataset": {"kind": "csv", "root": str(tmp_path / "ops"), "name": "node3.csv"}}
    (ws / "ops.yaml").write_text(yaml.safe_dump(full(other)))
    first = _start(ws, "--new-data-version")
    time.sleep(1)
    second = _start(ws, "--params", "ops.yaml", "--new-data-version")
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0, outs[0][1][-2000:]
    assert second.returncode == 0, outs[1][1][-2000:]
    assert any("vigil: waiting for the run holding" in err for _, err in outs)
    _, client = mlflow_client(ws)
    expected = {
        "vigil-synthetic-seed0": ("data/raw/synthetic", dvc_hash(ws, ws / "data/raw/synthetic")),
        "vigil-csv-node3.csv": (str(tmp_path / "ops"), dvc_hash(ws, tmp_path / "ops")),
    }
    seen = set()
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name='{model.name}'"):
            raw_path, md5 = expected[model.name]
            assert version.tags["vigil.raw_path"] == raw_path, model.name
            assert version.tags["vigil.raw_md5"] == md5, model.name
            seen.add(model.name)
    assert seen == set(expected)


def test_no_wait_refuses_naming_the_run_that_holds_the_checkout(tmp_path):
    from vigil.run_lock import checkout_lock

    ws = make_workspace(tmp_path, SMALL)
    with checkout_lock(ws):
        refused = _start(ws, "--no-wait", "--new-data-version")
        _, err = refused.communicate(timeout=300)
    assert refused.returncode == 3
    assert f"another Vigil run holds this checkout (pid {os.getpid()}" in err
    assert "Traceback" not in err
    assert not (ws / "data" / "processed").exists()  # it did nothing


def test_an_absolute_root_inside_the_checkout_is_refused_before_dvc_lock_records_it(tmp_path):
    ws = make_workspace(tmp_path, SMALL)
    lock_before = (ws / "dvc.lock").read_bytes() if (ws / "dvc.lock").exists() else None
    absolute = {**SMALL, "dataset": {**SMALL["dataset"], "root": str(ws / "data/raw/synthetic")}}
    (ws / "params.yaml").write_text(yaml.safe_dump(full(absolute)))
    out = _start(ws, "--new-data-version")
    _, err = out.communicate(timeout=300)
    assert out.returncode == 2
    assert (
        f"dataset.root: {ws}/data/raw/synthetic is inside this checkout; write it relative (data/raw/synthetic)" in err
    )
    lock_after = (ws / "dvc.lock").read_bytes() if (ws / "dvc.lock").exists() else None
    assert lock_after == lock_before
