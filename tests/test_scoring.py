"""`vigil score` for real: a champion registered by `vigil run` in a temporary MLflow store,
files dropped into a landing folder, the alerts store on SQLite (and PostgreSQL where the
package is installed), `mlflow server` and `prefect server` started on loopback. The champion
is a windowed detector (lstm_ae, window 8), so steps wait for the ones after them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from support import REPO
from support.servers import (
    Receiver,
    WebDriver,
    free_port,
    mlflow_server_env,
    openmetrics,
    prefect_env,
    running_alertmanager,
    running_prometheus,
    serving,
)
from support.workspace import SMALL, VIGIL, drop, make_workspace, table, vigil_run
from support.workspace import vigil_score as score

WINDOW = 8
MODEL = "vigil-synthetic-seed0"  # the pipeline's name for the model of synthetic/seed0
PARAMS = {
    **SMALL,
    "detectors": {"lstm_ae": {"window": WINDOW, "hidden": 16, "epochs": 2, "device": "cpu"}},
    "remedies": yaml.safe_load((REPO / "params.yaml").read_text())["remedies"],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace whose registry holds a champion; the telemetry to score (the synthetic
    test series without its labels)."""
    ws = make_workspace(tmp_path_factory.mktemp("scoring"), PARAMS)
    vigil_run(ws, "--new-data-version")
    frame = pd.read_csv(ws / "data" / "raw" / "synthetic" / "test.csv").drop(columns=["label"])
    return ws, frame


def workspace_with(trained, tmp_path: Path, **scoring) -> Path:
    """The trained workspace's params with this test's own landing folder and store."""
    ws, _ = trained
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["scoring"].update(
        {
            "landing": str(tmp_path / "landing"),
            "store": f"sqlite:///{tmp_path / 'alerts.db'}",
            "settle_seconds": 0,
            **scoring,
        }
    )
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def split(frame: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    return [frame.iloc[idx] for idx in np.array_split(np.arange(len(frame)), n)]


@pytest.mark.slow
def test_score_fills_the_store_moves_files_and_keeps_the_watermark(trained, tmp_path):
    ws, frame = trained
    params = workspace_with(trained, tmp_path)
    landing, url = tmp_path / "landing", f"sqlite:///{tmp_path / 'alerts.db'}"
    chunks = split(frame, 3)
    drop(chunks[0], landing, "web-1", "part-0")
    drop(chunks[1], landing, "web-1", "part-1", fmt="parquet")
    out = score(ws, params)
    assert "2 file(s)" in out.stdout and "0 file(s) quarantined" in out.stdout, out.stdout
    points = table(url, "points")
    n = len(chunks[0]) + len(chunks[1])
    # the last window - 1 steps wait for the steps after them
    assert len(points) == n - (WINDOW - 1) and points["ts"].is_unique
    assert (
        points["ts"].tolist()
        == pd.to_datetime(frame["timestamp"][: n - WINDOW + 1]).dt.strftime("%Y-%m-%dT%H:%M:%S.%f").tolist()
    )
    source = table(url, "sources").set_index("source").loc["web-1"]
    assert source["watermark"] == pd.Timestamp(chunks[1]["timestamp"].iloc[-1]).strftime("%Y-%m-%dT%H:%M:%S.%f")
    assert source["steps"] == n and json.loads(source["state"])["stream"]["pending"] == WINDOW - 1
    assert sorted(p.name for p in (landing / "done" / "web-1").iterdir()) == ["part-0.csv", "part-1.parquet"]
    assert not list((landing / "web-1").iterdir())
    # alerts: every flagged step, grouped into incidents by the model's rule (flags fewer than
    # merge_gap steps apart are one; shorter than min_steps: stored, not raised), each with its metrics
    alerts, incidents = table(url, "alerts"), table(url, "incidents")
    assert (points["flag"] == 1).sum() == len(alerts) > 0
    merge_gap, min_steps = (yaml.safe_load(params.read_text())["incidents"][k] for k in ("merge_gap", "min_steps"))
    for _, inc in incidents.iterrows():
        mine = alerts[alerts["incident"] == inc["id"]]
        inside = points[(points["ts"] >= inc["start"]) & (points["ts"] <= inc["end"])].reset_index(drop=True)
        flagged = np.flatnonzero(inside["flag"])
        assert len(mine) == len(flagged) and inc["steps"] == len(inside)
        assert flagged[0] == 0 and flagged[-1] == len(inside) - 1 and (np.diff(flagged) - 1 < merge_gap).all()
        assert inc["raised"] == int(inc["steps"] >= min_steps)
        shares = json.loads(inc["top_metrics"])
        assert shares and all(name in frame.columns for name, _ in shares)
    assert set(alerts["detector"]) == {"lstm_ae"} and set(alerts["version"]) == {"1"}
    # the next file: the waiting steps are scored with it; nothing new, nothing scored
    drop(chunks[2], landing, "web-1", "part-2")
    score(ws, params)
    points = table(url, "points")
    assert len(points) == len(frame) - (WINDOW - 1) and points["ts"].is_unique
    again = score(ws, params)
    assert "0 file(s)" in again.stdout and len(table(url, "points")) == len(points)
    # a file given on the command line: landed as an arrival of the series named, then scored
    given = tmp_path / "given.csv"
    frame.iloc[:100].to_csv(given, index=False)
    out = score(ws, params, str(given), "--source", "cli-1")
    assert "1 file(s)" in out.stdout and given.is_file() and (landing / "done" / "cli-1" / "given.csv").is_file()
    refused = score(ws, params, str(given), check=False)
    assert refused.returncode == 2 and "--source" in refused.stderr
    # MLflow: one run per scoring run, with its counts
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{ws / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("vigil-score")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.metrics["files_scored"] for r in runs) == [0.0, 1.0, 1.0, 2.0]


def test_detector_runs_line_up_in_the_mlflow_compare_view(trained):
    """Every detector's run carries the same metric names, a description and the tags the
    compare view groups by (dataset, series, detector, data hashes)."""
    import mlflow

    ws, _ = trained
    client = mlflow.MlflowClient(f"sqlite:///{ws / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("vigil")
    children = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert children
    for run in children:
        tags = run.data.tags
        assert {"dataset", "series", "detector", "mlflow.note.content"} <= set(tags)
        assert any(k.startswith("vigil.data") or "md5" in k for k in tags), tags
        assert {"val_vus_pr", "test_vus_pr", "test_point_f1", "fit_seconds"} <= set(run.data.metrics)
        assert any(a.path == "plots" for a in client.list_artifacts(run.info.run_id))


@pytest.mark.slow
def test_one_file_or_ten_give_the_same_scores(trained, tmp_path):
    ws, frame = trained
    params = workspace_with(trained, tmp_path)
    landing, url = tmp_path / "landing", f"sqlite:///{tmp_path / 'alerts.db'}"
    drop(frame, landing, "one", "all")
    for i, part in enumerate(split(frame, 10)):
        drop(part, landing, "ten", f"part-{i:02d}")
    score(ws, params)
    points = table(url, "points")
    one, ten = (points[points["source"] == s].reset_index(drop=True) for s in ("one", "ten"))
    assert len(one) == len(ten) == len(frame) - (WINDOW - 1)
    assert one["ts"].tolist() == ten["ts"].tolist()
    np.testing.assert_allclose(ten["score"], one["score"], rtol=1e-5)
    assert one["flag"].tolist() == ten["flag"].tolist()
    # the alert rule (smoothing, merged incidents) carries over file boundaries: the same incidents
    incidents = table(url, "incidents")
    cols = ["start", "end", "steps", "raised"]
    one, ten = (incidents[incidents["source"] == s][cols].reset_index(drop=True) for s in ("one", "ten"))
    assert len(one) > 0
    pd.testing.assert_frame_equal(one, ten)


@pytest.mark.slow
def test_malformed_arrivals_are_quarantined_with_a_reason_and_the_next_file_is_scored(trained, tmp_path):
    ws, frame = trained
    params = workspace_with(trained, tmp_path)
    landing, url = tmp_path / "landing", f"sqlite:///{tmp_path / 'alerts.db'}"
    head, good = frame.iloc[:200], frame.iloc[200:400]
    with_text = head.astype({"cpu_user": object})
    with_text.loc[with_text.index[7], "cpu_user"] = "oops"
    backwards = head.copy()
    backwards.loc[backwards.index[[10, 11]], "timestamp"] = backwards["timestamp"].iloc[[11, 10]].to_numpy()
    duplicated = head.copy()
    duplicated.loc[duplicated.index[20], "timestamp"] = duplicated["timestamp"].iloc[19]
    with_nan = head.copy()
    with_nan.loc[with_nan.index[5], "mem_used"] = np.nan
    bad = {
        "missing": (head.drop(columns=["disk_util"]), "expect_table_columns_to_match_ordered_list"),
        "extra": (head.assign(spare=1.0), "expect_table_columns_to_match_ordered_list"),
        "text": (with_text, "column 'cpu_user', lines [9]"),
        "nan": (with_nan, "column 'mem_used', lines [7]"),
        "backwards": (backwards, "expect_column_values_to_be_increasing, column 'timestamp'"),
        "duplicated": (duplicated, "expect_column_values_to_be_increasing, column 'timestamp'"),
    }
    for source, (data, _) in bad.items():
        drop(data, landing, source, "a-bad")
        drop(good, landing, source, "b-good")
    drop(head, landing, "overlap", "a-first")
    drop(head.iloc[150:], landing, "overlap", "b-again")  # steps already accepted
    out = score(ws, params)
    assert "7 file(s) quarantined" in out.stdout, out.stdout
    files = table(url, "files")
    for source, (_, expected) in bad.items():
        reason = (landing / "quarantine" / source / "a-bad.csv.reason.txt").read_text()
        assert expected in reason and "a-bad.csv" in reason, reason
        assert (landing / "quarantine" / source / "a-bad.csv").is_file()
        assert (landing / "done" / source / "b-good.csv").is_file()  # the next good file is scored
        assert files[(files["source"] == source)]["status"].tolist() == ["quarantined", "scored"]
    reason = (landing / "quarantine" / "overlap" / "b-again.csv.reason.txt").read_text()
    assert "time goes back" in reason and "50 step(s)" in reason
    points = table(url, "points")
    assert points.groupby("source").size().to_dict() == {
        **{s: len(good) - (WINDOW - 1) for s in bad},
        "overlap": len(head) - (WINDOW - 1),
    }
    # a file dropped again under a quarantined name keeps the earlier one
    drop(head.drop(columns=["disk_util"]), landing, "missing", "a-bad")
    score(ws, params)
    assert (landing / "quarantine" / "missing" / "a-bad.1.csv").is_file()
    assert (landing / "quarantine" / "missing" / "a-bad.csv").is_file()


@pytest.mark.slow
def test_a_killed_scoring_run_neither_duplicates_nor_skips_steps(trained, tmp_path):
    """SIGKILL in the middle of a run over 120 files (polled every 10 ms, killed once one has
    committed); the rerun scores the rest. Every step of the series is in the store exactly
    once, with the scores of an uninterrupted run."""
    ws, frame = trained
    params = workspace_with(trained, tmp_path)
    landing, url = tmp_path / "landing", f"sqlite:///{tmp_path / 'alerts.db'}"
    n_files = 120
    for i, part in enumerate(split(frame, n_files)):
        drop(part, landing, "db-1", f"part-{i:03d}")
    env = prefect_env(tmp_path)
    proc = subprocess.Popen(
        [VIGIL, "score", "--params", str(params)], cwd=ws, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    engine = sa.create_engine(url)
    deadline = time.monotonic() + 240
    scored = 0
    while scored < 1:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
        try:
            with engine.connect() as conn:
                scored = conn.execute(sa.text("select count(*) from files where status = 'scored'")).scalar()
        except sa.exc.OperationalError:  # the store is not made yet
            pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    engine.dispose()
    killed_at = len(table(url, "files"))
    assert killed_at < n_files, killed_at  # it was killed midway
    score(ws, params)
    points = table(url, "points")
    expected = pd.to_datetime(frame["timestamp"][: len(frame) - WINDOW + 1]).dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    assert points["ts"].tolist() == expected.tolist()
    assert len(table(url, "files")) == n_files and not list((landing / "db-1").glob("*.csv"))
    # the scores of one uninterrupted pass
    drop(frame, landing, "whole", "all")
    score(ws, params)
    points = table(url, "points")
    np.testing.assert_allclose(
        points[points["source"] == "db-1"]["score"].to_numpy(),
        points[points["source"] == "whole"]["score"].to_numpy(),
        rtol=1e-5,
    )


@pytest.mark.slow
def test_postgresql_store(trained, tmp_path, postgres_url):
    ws, frame = trained
    params = workspace_with(trained, tmp_path, store=postgres_url)
    drop(frame.iloc[:300], tmp_path / "landing", "pg-1", "part-0")
    score(ws, params)
    points = table(postgres_url, "points")
    assert len(points[points["source"] == "pg-1"]) == 300 - (WINDOW - 1)


@pytest.mark.slow
def test_the_champion_is_read_through_a_tracking_server(trained, tmp_path):
    """`mlflow server` on loopback over the workspace's store; `vigil score` reads
    models:/vigil-synthetic-seed0@champion through its REST API, and a new champion is picked up
    at the next run and recorded on the alerts."""
    ws, frame = trained
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    params = workspace_with(trained, tmp_path)
    cfg = yaml.safe_load(params.read_text())
    cfg["registry"]["tracking_uri"] = uri
    params.write_text(yaml.safe_dump(cfg))
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    server = [
        mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{ws / 'mlflow' / 'mlflow.db'}",
        "--default-artifact-root", str(ws / "mlflow" / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    landing, url = tmp_path / "landing", f"sqlite:///{tmp_path / 'alerts.db'}"
    with serving(server, f"{uri}/health", env=mlflow_server_env()):
        import mlflow

        client = mlflow.MlflowClient(uri)
        champion = client.get_model_version_by_alias(MODEL, "champion")
        drop(frame.iloc[:300], landing, "app-1", "part-0")
        out = score(ws, params)
        assert f"version {champion.version}" in out.stdout
        # a new champion (the same model registered again, made champion by hand)
        before = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(uri)
        try:
            new = mlflow.register_model(champion.source, MODEL)
        finally:
            mlflow.set_tracking_uri(before)
        client.set_registered_model_alias(MODEL, "champion", new.version)
        drop(frame.iloc[300:600], landing, "app-1", "part-1")
        out = score(ws, params)
        assert f"champion changed from version {champion.version}" in out.stdout, out.stdout
    points = table(url, "points")
    assert set(points["version"]) == {champion.version, new.version}
    runs = table(url, "runs").sort_values("started")
    assert runs["previous_version"].iloc[-1] == champion.version


@pytest.mark.slow
def test_score_deployment_runs_on_its_schedule_on_the_server_vigil_serve_starts(trained, tmp_path):
    """`vigil serve` without ``PREFECT_API_URL`` starts a real Prefect server (its console is
    the command's), registers the six deployments and serves vigil-train and vigil-score; the
    server's scheduler starts vigil-score on its interval, and that run scores the landing
    folder. (Prefect's temporary API runs no scheduler, and on SQLAlchemy 2.1 the scheduler of
    Prefect 3.8.8 failed at every loop: no scheduled run ever happened.)"""
    import urllib.request

    import psutil

    ws, frame = trained
    params = workspace_with(trained, tmp_path)
    doc = yaml.safe_load(params.read_text())
    doc["deployments"]["score"]["interval_minutes"] = 0.1
    params.write_text(yaml.safe_dump(doc))
    landing, url = tmp_path / "landing", f"sqlite:///{tmp_path / 'alerts.db'}"
    drop(frame.iloc[:300], landing, "web-1", "part-0")
    drop(frame.iloc[300:600].drop(columns=["net_in"]), landing, "web-1", "part-1")
    drop(frame.iloc[600:900], landing, "web-1", "part-2")
    port = free_port()
    env = {k: v for k, v in prefect_env(tmp_path, own_api=True).items() if k != "PREFECT_API_URL"}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        serve = subprocess.Popen(
            [VIGIL, "serve", "--params", str(params), "--prefect-port", str(port)], cwd=ws, env=env,
            start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def post(path: str, body: dict) -> list[dict]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/{path}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        return json.loads(urllib.request.urlopen(request, timeout=30).read())

    try:
        deadline, done = time.monotonic() + 240, []
        while not done:
            assert serve.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
            try:
                names = {d["name"]: d["id"] for d in post("deployments/filter", {})}
            except OSError:
                continue
            assert set(names) <= {"vigil-train", "vigil-score", "vigil-tune", "vigil-benchmark",
                                  "vigil-slo-train", "vigil-stream-predict"}  # fmt: skip
            if "vigil-score" in names:
                runs = post("flow_runs/filter", {"deployments": {"id": {"any_": [names["vigil-score"]]}}})
                done = [r for r in runs if r["auto_scheduled"] and r["state_type"] == "COMPLETED"]
        assert len(names) == 6
        assert done[0]["name"] == f"score {landing}"  # named after what it scores
        # runs due while one scores are cancelled, not queued as processes behind the lock
        states = {r["state_type"] for r in post("flow_runs/filter", {})}
        assert states <= {"SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "CANCELLED", "CANCELLING"}, states
        server = [p for p in psutil.Process(serve.pid).children(recursive=True) if "server" in p.cmdline()]
        assert server, "the Prefect server is not vigil serve's child"
    finally:
        os.kill(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=90)
        except subprocess.TimeoutExpired:  # nothing left behind to load the rest of the suite
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
    assert serve.returncode == 0, log.read_text()[-3000:]
    assert "Check out the dashboard at" in log.read_text()  # the server's console is shown
    gone, alive = psutil.wait_procs(server, timeout=20)
    assert alive == [], [p.cmdline() for p in alive]
    points = table(url, "points")
    assert len(points) == 600 - (WINDOW - 1)
    assert "net_in" in (landing / "quarantine" / "web-1" / "part-1.csv.reason.txt").read_text()
    counts = [json.loads(c) for c in table(url, "runs")["counts"]]
    assert sum(c["files_scored"] for c in counts) == 2


@pytest.mark.slow
def test_vigil_score_sends_its_incidents_to_alertmanager(trained, tmp_path):
    """`vigil score` with ``notify.alertmanager``: every incident it raised reaches a real
    Alertmanager, and through it the receiver, in the same run; the run counts them."""
    ws, frame = trained
    receiver = Receiver()
    try:
        with running_alertmanager(tmp_path, receiver, free_port()) as am:
            params = workspace_with(trained, tmp_path)
            doc = yaml.safe_load(params.read_text())
            doc["notify"] = {"alertmanager": am}
            params.write_text(yaml.safe_dump(doc))
            drop(frame.iloc[:900], tmp_path / "landing", "web-1", "part-0")
            score(ws, params)
            url = f"sqlite:///{tmp_path / 'alerts.db'}"
            raised = set(table(url, "incidents").query("raised == 1")["id"].astype(str))
            assert raised, "the test series has anomalies: some incident is raised"
            assert json.loads(table(url, "runs")["counts"].iloc[0])["notified"] == len(raised)
            alerts = json.loads(urllib.request.urlopen(f"{am}/api/v2/alerts", timeout=10).read())
            assert {a["labels"]["incident"] for a in alerts} == raised
            assert {a["labels"]["series"] for a in alerts} == {"web-1"}
            bodies = receiver.wait_for(len(raised))
            assert {a["labels"]["incident"] for b in bodies for a in b["alerts"]} == raised
    finally:
        receiver.server.shutdown()


@pytest.mark.slow
def test_scoring_through_promql_stores_exactly_the_scores_of_the_csv_path(trained, tmp_path):
    """The same telemetry landed as a CSV file, and backfilled into a real Prometheus (promtool)
    and pulled through PromQL (``scoring.prometheus``): the same points, flags and incidents. A
    second pull lands nothing new; a query Prometheus refuses is one paragraph naming it."""
    from datetime import UTC, datetime

    ws, frame = trained
    part = frame.iloc[:600].copy()
    last = (int(time.time()) // 60 - 60) * 60  # recent, on a 60 s grid: the pull's reach covers it
    part["timestamp"] = [datetime.fromtimestamp(last - 60 * i, UTC).strftime("%Y-%m-%d %H:%M:%S")
                         for i in range(len(part) - 1, -1, -1)]  # fmt: skip
    features = [c for c in part.columns if c != "timestamp"]
    by_csv, by_prom = tmp_path / "csv", tmp_path / "prometheus"
    for folder in (by_csv, by_prom, tmp_path / "bad"):
        folder.mkdir()
    drop(part, by_csv / "landing", "web-1", "part-0")
    by_file = score(ws, workspace_with(trained, by_csv))
    assert "score: web-1/part-0.csv: scored, 600 rows" in by_file.stderr  # progress, a line a file
    with running_prometheus(tmp_path / "tsdb", openmetrics(part, features, "web-1"), free_port()) as url:
        pulled = {"url": url, "metrics": {f: f"vigil_{f}" for f in features}, "step_seconds": 60,
                  "lookback_minutes": 24 * 60, "delay_seconds": 0}  # fmt: skip
        params = workspace_with(trained, by_prom, prometheus=pulled)
        score(ws, params)
        again = score(ws, params)
        assert json.loads(table(f"sqlite:///{by_prom / 'alerts.db'}", "runs")["counts"].iloc[-1])["files_scored"] == 0
        refusing = {**pulled, "metrics": {**pulled["metrics"], features[0]: "rate("}}
        bad = workspace_with(trained, tmp_path / "bad", prometheus=refusing)
        refused = score(ws, bad, check=False)
    assert again.returncode == 0
    assert refused.returncode != 0 and "query 'rate(' from" in refused.stderr and "UTC (step 60 s)" in refused.stderr
    assert "Traceback" not in refused.stderr
    cols = ["source", "ts", "score", "threshold", "flag", "version", "metrics"]
    csv_points, prom_points = (table(f"sqlite:///{d / 'alerts.db'}", "points")[cols] for d in (by_csv, by_prom))
    assert len(prom_points) == 600 - (WINDOW - 1)
    pd.testing.assert_frame_equal(csv_points, prom_points)
    keep = ["source", "start", "end", "steps", "peak_score", "threshold", "top_metrics", "raised"]
    csv_inc, prom_inc = (table(f"sqlite:///{d / 'alerts.db'}", "incidents")[keep] for d in (by_csv, by_prom))
    assert len(csv_inc) > 0
    pd.testing.assert_frame_equal(csv_inc, prom_inc)
    [landed] = (by_prom / "landing" / "done" / "web-1").glob("prometheus-*.csv")
    assert landed.name == f"prometheus-{last:012d}.csv"


@pytest.mark.slow
def test_the_live_page_shows_new_scores_without_a_reload(trained, tmp_path):
    """`vigil web` in a real headless Chromium: the plot holds the series' points; scores
    written afterwards by `vigil score` appear without a reload; an incident shows its remedies
    ranked, and its buttons record a verdict with the remedy applied (stored with its audit
    row; the ranker learns from it); the compare page shows the benchmark's detectors.
    Screenshots under the test's reports/."""
    import shutil

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (`make test` installs them as root)")
    ws, frame = trained
    params = workspace_with(trained, tmp_path)
    landing = tmp_path / "landing"
    drop(frame.iloc[:300], landing, "web-1", "part-0")
    score(ws, params)
    (ws / "reports").mkdir(exist_ok=True)
    shutil.copy(REPO / "reports" / "benchmark_summary.json", ws / "reports" / "benchmark_summary.json")
    web_port, driver_port = free_port(), free_port()
    env = prefect_env(tmp_path)
    web = [VIGIL, "web", "--params", str(params), "--port", str(web_port)]
    with (
        serving(web, f"http://127.0.0.1:{web_port}/api/sources", env=env, cwd=ws),
        serving([driver, f"--port={driver_port}"], f"http://127.0.0.1:{driver_port}/status"),
    ):
        browser = WebDriver(driver_port)
        try:
            browser.go(f"http://127.0.0.1:{web_port}/?source=web-1")
            browser.js("window.vigilLoadMarker = 'first load'; return 1;")
            first = 300 - (WINDOW - 1)
            browser.wait_for(f"return document.body.dataset.points == '{first}';")
            assert browser.js("return document.getElementById('scoreplot').data[0].x.length;") == first
            traces = browser.js("return document.getElementById('metricplot').data.map(t => t.name);")
            assert traces == [c for c in frame.columns if c != "timestamp"]
            browser.screenshot(tmp_path / "reports" / "live-before.png")
            drop(frame.iloc[300:600], landing, "web-1", "part-1")
            score(ws, params)
            browser.wait_for(f"return document.body.dataset.points == '{600 - (WINDOW - 1)}';")
            assert browser.js("return window.vigilLoadMarker;") == "first load"  # no reload
            assert browser.js("return document.getElementById('scoreplot').data[0].x.length;") == 600 - (WINDOW - 1)
            shaded = browser.js("return (document.getElementById('scoreplot').layout.shapes || []).length;")
            store = f"sqlite:///{tmp_path / 'alerts.db'}"
            incidents = table(store, "incidents")
            assert shaded == (incidents["raised"] == 1).sum() > 0  # the raised ones: short ones stay points
            browser.js("document.querySelector('tr.incident').click(); return 1;")
            browser.wait_for("return document.querySelectorAll('#contrib tr').length > 0;")
            # the remedies proposed for it, then a verdict through the buttons
            first = browser.wait_for("const li = document.querySelector('#remedies li[data-remedy]'); "
                                     "return li && li.dataset.remedy;")  # fmt: skip
            clicked = int(browser.js("return document.querySelector('tr.selected').dataset.id;"))
            browser.js(
                f"document.getElementById('fb-remedy').value = '{first}';"
                "document.getElementById('fb-resolved').value = 'yes';"
                "document.getElementById('fb-minutes').value = '7';"
                "document.getElementById('fb-who').value = 'ana';"
                "document.querySelector('#verdicts button[data-verdict=confirmed]').click(); return 1;"
            )
            fid = int(browser.wait_for("return document.body.dataset.feedback;"))
            feedback, audit = table(store, "feedback"), table(store, "audit")
            row = feedback.set_index("id").loc[fid]
            assert (row["incident"], row["verdict"], row["remedy"], row["resolved"], row["minutes"], row["who"]) == (
                clicked,
                "confirmed",
                first,
                1,
                7.0,
                "ana",
            )
            assert audit.set_index("row_id").loc[fid, "who"] == "ana"
            browser.wait_for(f"return [...document.querySelectorAll('#fb-history')].some(d => "
                             f"d.textContent.includes('ana: confirmed, {first} resolved it in 7 min'));")  # fmt: skip
            browser.wait_for("return document.querySelector('tr.selected td:last-child').textContent == 'confirmed';")
            # a bad verdict is refused on the page, naming the field
            browser.js(
                "document.getElementById('fb-who').value = ''; "
                "document.querySelector('#verdicts button[data-verdict=expected]').click(); return 1;"
            )
            browser.wait_for("return document.getElementById('fb-status').textContent.startsWith('who:');")
            assert len(table(store, "feedback")) == 1
            browser.screenshot(tmp_path / "reports" / "live-after.png")
            import mlflow  # the ranker learned from the verdict: a new version with its outcome

            client = mlflow.MlflowClient(f"sqlite:///{ws / 'mlflow' / 'mlflow.db'}")
            deadline = time.monotonic() + 60
            while True:
                versions = client.search_model_versions("name='vigil-remedies'")
                runs = [client.get_run(v.run_id).data.metrics.get("observations") for v in versions]
                if 1.0 in runs or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert 1.0 in runs, runs
            # an alert's link (tasks.notify.page_link) opens the page on its series and incident
            last = int(incidents[incidents["raised"] == 1]["id"].max())
            browser.go(f"http://127.0.0.1:{web_port}/?source=web-1&incident={last}")
            browser.wait_for("return document.body.dataset.ready == '1';")
            assert int(browser.js("return document.querySelector('tr.selected').dataset.id;")) == last
            assert browser.js("return document.querySelectorAll('#contrib tr').length;") > 0
            browser.go(f"http://127.0.0.1:{web_port}/compare")
            rows = browser.wait_for("return document.querySelectorAll('#table tr').length;")
            assert rows > 10
            browser.screenshot(tmp_path / "reports" / "compare.png")
        finally:
            browser.quit()
    print(f"screenshots: {tmp_path / 'reports'}")


def test_a_champion_whose_artifacts_are_gone_is_one_paragraph(trained, tmp_path):
    """The registry still names a champion, but its files were deleted: one paragraph saying
    what to do, no traceback, the waiting file left where it is. (Last in this module: it moves
    the shared workspace's artifacts away, and back.)"""
    ws, frame = trained
    params = workspace_with(trained, tmp_path)
    drop(frame.iloc[:100], tmp_path / "landing", "web-1", "part-0")
    artifacts = ws / "mlflow" / "artifacts"
    artifacts.rename(ws / "mlflow" / "artifacts-gone")
    try:
        out = score(ws, params, check=False)
    finally:
        (ws / "mlflow" / "artifacts-gone").rename(artifacts)
    assert out.returncode == 3, out.stderr[-2000:]
    assert "cannot be loaded" in out.stderr and "run `vigil run`" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "landing" / "web-1" / "part-0.csv").is_file()
