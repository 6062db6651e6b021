"""The benchmark: its protocol's pieces against brute force, and the real flow run by `dvc
repro benchmark` on two tiny synthetic series in a scratch git + DVC repository (Prefect
without a server, MLflow on SQLite, PyOD peers). No mocks."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import yaml
from support import REPO
from support.servers import prefect_env, prefect_home
from support.workspace import BENCH, DVC, make_workspace, sh, write_series_csv

from components.benchmark import best_point_adjusted_f1
from components.detectors import get_detector
from components.metrics import point_adjust, point_prf


def test_best_point_adjusted_f1_equals_brute_force():
    rng = np.random.default_rng(3)
    labels = np.zeros(400, dtype=np.int8)
    for s in (30, 120, 121, 250, 390):
        labels[s : s + rng.integers(1, 12)] = 1
    scores = np.round(rng.random(400), 2)  # ties on purpose
    brute = max(point_prf(labels, point_adjust(labels, (scores >= t).astype(np.int8)))[2] for t in np.unique(scores))
    assert best_point_adjusted_f1(labels, scores) == pytest.approx(brute)


def test_knn_scores_are_distances_to_the_kth_neighbour():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    train, x = rng.normal(size=(300, 4)).astype(np.float32), rng.normal(size=(50, 4)).astype(np.float32)
    det = get_detector("knn", n_neighbors=3).fit(train)
    d, _ = NearestNeighbors(n_neighbors=3).fit(train).kneighbors(x)
    s, c = det.score_and_contributions(x)
    np.testing.assert_allclose(s, d[:, 2], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(c.sum(axis=1), 1.0)
    # a step far off in metric 2 alone is blamed on metric 2
    far = x[:1].copy()
    far[0, 2] += 50
    assert det.contributions(far)[0].argmax() == 2


def test_ensemble_averages_robust_z_scores_of_its_members():
    rng = np.random.default_rng(1)
    train, x = rng.normal(size=(400, 3)).astype(np.float32), rng.normal(size=(40, 3)).astype(np.float32)
    ens = get_detector("ensemble", members=["zscore", "pca"]).fit(train)
    parts = []
    for m in ens.members_:
        ref = m.calibration_scores_
        med = np.median(ref)
        parts.append((m.score(x) - med) / (1.4826 * np.median(np.abs(ref - med))))
    np.testing.assert_allclose(ens.score(x), np.mean(parts, axis=0))


def test_a_cell_runs_under_its_torch_thread_count_which_is_part_of_its_key():
    """Seeded torch training gives other scores under another thread count (README: Benchmark):
    a cell sets the count while it runs, puts the caller's back, and a cell stored under one
    count is not reused under another."""
    import torch

    from tasks.benchmark import cell_keys, torch_threads

    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with torch_threads(None):  # null: torch's own default, left as it is
        assert torch.get_num_threads() == before
    cell = {"detector": "lstm_ae", "params": {"epochs": 1}, "tuned": False}
    keys = {n: cell_keys({**cell, "torch_threads": n}, "md5", "code", {}, {})[1] for n in (1, 2)}
    assert keys[1] != keys[2]


def test_time_to_alert_is_time_to_detect_plus_the_detectors_look_ahead():
    from components.benchmark import cell_figures
    from components.evaluation import AlertSettings
    from tasks.benchmark import look_ahead_steps

    # kmeans: windows of 40 reach 39 steps ahead, spread 100 more (NAB's 139 steps)
    assert look_ahead_steps("kmeans", {"window": 40, "spread": 100}, 1) == 139
    assert look_ahead_steps("kmeans (tuned)", {"window": 20, "spread": 0}, 1) == 19
    assert look_ahead_steps("zscore", {}, 3) == 0 and look_ahead_steps("pyod_knn", {}, 3) == 0
    # TSB-AD's, as its code places its windows' scores (tests/test_tsb_peers.py checks two against it)
    assert look_ahead_steps("tsb_pca", {"budget_seconds": 600.0}, 3) == 49
    assert look_ahead_steps("tsb_usad", {"budget_seconds": 600.0}, 1) == 49
    assert look_ahead_steps("tsb_usad", {"budget_seconds": 600.0}, 3) == 99
    assert look_ahead_steps("tsb_omnianomaly", {"budget_seconds": 600.0}, 3) is None
    rng = np.random.default_rng(3)
    val, test = rng.normal(size=600), rng.normal(size=600)
    val_labels, test_labels = np.zeros(600, dtype=np.int8), np.zeros(600, dtype=np.int8)
    val[100:110] += 8
    val_labels[100:110] = 1
    val[400:410] += 8
    val_labels[400:410] = 1
    test[300:320] += 8
    test_labels[295:320] = 1  # labelled 5 steps before the scores rise
    common = {"contributions": None, "causes": [], "alerting": AlertSettings(), "vus_window": 20}
    known, _ = cell_figures(val, val_labels, rng.normal(size=200), test, test_labels, look_ahead=139, **common)
    assert known["time_to_detect_steps"] == 5
    assert (known["look_ahead_steps"], known["time_to_alert_steps"]) == (139, 144)
    unknown, _ = cell_figures(val, val_labels, rng.normal(size=200), test, test_labels, **common)
    assert np.isnan(unknown["look_ahead_steps"]) and np.isnan(unknown["time_to_alert_steps"])


def test_skab_protocol_pools_counts_and_splits_false_positives_around_the_anomaly(tmp_path):
    """SKAB's pooled F1 from stored cells, the threshold from the held-out train tail alone;
    false positives counted before each file's first labelled step and after its last; the
    onset-to-end reference from the labels alone; a failed cell counted, not dropped."""
    from components.evaluation import AlertSettings
    from components.pooled import PooledCounts
    from tasks.benchmark import cell_path
    from tasks.benchmark_report import skab_protocol

    rng = np.random.default_rng(0)
    folder = tmp_path / "benchmark"
    # file a: labelled 30-49 (across the head/tail cut at 40); flagged 10-14, 30-44, 50-59, 70
    # file b: no label; flagged 5-7
    flagged = {"a": [*range(10, 15), *range(30, 45), *range(50, 60), 70], "b": [5, 6, 7]}
    labelled = {"a": range(30, 50), "b": range(0)}
    rows = []
    for series in ("a", "b"):
        scores, labels = np.zeros(100), np.zeros(100, dtype=np.int8)
        scores[flagged[series]], labels[list(labelled[series])] = 100.0, 1  # far above POT on N(0, 1)
        proc = tmp_path / "proc" / series
        proc.mkdir(parents=True)
        np.save(proc / "validation_labels.npy", labels[:40])
        np.save(proc / "test_labels.npy", labels[40:])
        for detector, status in (("zscore", "ok"), ("knn", "failed")):
            rows.append(
                {
                    "kind": "skab",
                    "dataset": "skab",
                    "family": "vigil",
                    "series": series,
                    "detector": detector,
                    "status": status,
                    "processed_path": f"proc/{series}",
                }
            )
        cell = cell_path(folder, "skab", series, "zscore").with_suffix(".npz")
        cell.parent.mkdir(parents=True)
        np.savez(cell, calibration=rng.normal(size=400), validation=scores[:40], test=scores[40:])
    settings = AlertSettings(label_free=("pot_train", "none", 1))
    pooled, reference, how = skab_protocol(rows, tmp_path, folder, settings)
    assert how == "pot_train"
    z = pooled["skab"]["zscore"]
    assert (z["tp"], z["fp"], z["fn"], z["fp_before"], z["fp_after"], z["files"]) == (15, 19, 5, 5, 11, 2)
    assert z["f1"] == pytest.approx(2 * 15 / (2 * 15 + 19 + 5))
    assert pooled["skab"]["knn"]["files"] == 0 and pooled["skab"]["knn"]["failed"] == 2
    assert np.isnan(pooled["skab"]["knn"]["f1"])
    r = reference["skab"]
    assert (r["tp"], r["fp"], r["fn"], r["fp_after"], r["files"]) == (20, 50, 0, 50, 2)
    with pytest.raises(ValueError, match="shape"):
        PooledCounts().add(np.ones(3, dtype=bool), np.ones(4, dtype=bool))


def test_false_incidents_per_day_come_from_the_kinds_sampling_or_the_rows_timestamps(tmp_path):
    """SMD's kind fixes one line a minute; SKAB's rows carry timestamps (one a second); a
    telemanom channel carries no time. The benchmark records each series' spacing when it
    prepares it (`write_prepared`), and a cell's false incidents per day are its false
    incidents over its test tail's days."""
    from components.benchmark import cell_figures
    from components.datasets import DatasetSource, load_dataset
    from components.datasets.skab import COLUMNS
    from components.evaluation import AlertSettings
    from tasks.benchmark import steps_per_day
    from tasks.data import series_step_seconds

    (tmp_path / "skab/valve1").mkdir(parents=True)
    start = np.datetime64("2020-03-09T10:00:00")
    lines = [
        ";".join([str(start + i).replace("T", " "), *["1.0"] * 8, str(int(430 <= i < 440)), "0"]) for i in range(460)
    ]
    (tmp_path / "skab/valve1/0.csv").write_text(";".join(COLUMNS) + "\n" + "\n".join(lines) + "\n")
    smd = tmp_path / "smd"
    for sub in ("train", "test", "test_label", "interpretation_label"):
        (smd / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for sub in ("train", "test"):
        np.savetxt(smd / sub / "machine-1-1.txt", rng.random((400, 3)), delimiter=",", fmt="%.4f")
    np.savetxt(smd / "test_label/machine-1-1.txt", (np.arange(400) >= 390).astype(int), fmt="%d")
    (smd / "interpretation_label/machine-1-1.txt").write_text("390-399:1\n")
    spacing = [
        series_step_seconds(kind, load_dataset(DatasetSource(kind, tmp_path / folder, name)))
        for kind, folder, name in (("smd", "smd", "machine-1-1"), ("skab", "skab", "valve1/0"))
    ]
    assert spacing == [60.0, 1.0]
    assert [steps_per_day({"step_seconds": s}) for s in (60.0, 1.0, None)] == [1440, 86400, None]

    # one false incident (steps 100-104) in a 1,000-step tail: 1 per 1,000 steps, 1.44 a day at a minute
    val, val_labels = np.zeros(400), np.zeros(400, dtype=bool)
    val[300:305], val_labels[300:305] = 5.0, True
    test, test_labels = np.zeros(1000), np.zeros(1000, dtype=bool)
    test[100:105] = test[600:610] = 5.0
    test_labels[600:610] = True
    settings = AlertSettings(method="best_f1", fallback=("best_f1", "none", 1), merge_gap=1, min_steps=1)
    common = {"contributions": None, "causes": [], "alerting": settings, "vus_window": 20}
    at_a_minute = cell_figures(val, val_labels, np.zeros(50), test, test_labels, steps_per_day=1440, **common)[0]
    assert at_a_minute["false_incidents_per_1000_steps"] == pytest.approx(1.0)
    assert at_a_minute["false_incidents_per_day"] == pytest.approx(1.44)
    no_clock = cell_figures(val, val_labels, np.zeros(50), test, test_labels, **common)[0]
    assert np.isnan(no_clock["false_incidents_per_day"])


def test_telemanom_protocol_is_reported_set_on_the_head_and_on_the_stream(tmp_path):
    """MSL's event-wise table from a stored cell: the dynamic threshold set once on the
    validation head (Vigil's way) and batch by batch on the stream (telemanom's), both counted
    over the test tail; the rendered table shows both."""
    from components.evaluation import AlertSettings
    from tasks.alert_report import alert_analysis, summary_lines
    from tasks.benchmark import cell_path

    rng = np.random.default_rng(3)
    scores = 1.0 + 0.05 * rng.standard_normal(4000)
    labels = np.zeros(4000, dtype=np.int8)
    scores[3000:3012] += 3.0  # one event in the test tail (steps 1000..3999), labelled
    labels[3000:3012] = 1
    proc = tmp_path / "proc" / "T-1"
    proc.mkdir(parents=True)
    np.save(proc / "validation_labels.npy", labels[:1000])
    np.save(proc / "test_labels.npy", labels[1000:])
    cell = cell_path(tmp_path / "benchmark", "telemanom", "T-1", "zscore").with_suffix(".npz")
    cell.parent.mkdir(parents=True)
    np.savez(cell, calibration=1.0 + 0.05 * rng.standard_normal(400), validation=scores[:1000], test=scores[1000:])
    row = {"kind": "telemanom", "dataset": "msl", "family": "vigil", "series": "T-1", "detector": "zscore"}
    row.update(status="ok", processed_path="proc/T-1")
    alerts = alert_analysis([row], tmp_path, tmp_path / "benchmark", AlertSettings())
    stream, head = alerts["telemanom_stream"]["zscore"], alerts["telemanom"]["zscore"]
    assert (stream["tp"], stream["fp"], stream["fn"], stream["channels"]) == (1, 0, 0, 1)
    assert stream["precision"] == stream["recall"] == 1.0
    assert head["channels"] == 1 and head["tp"] + head["fn"] == 1
    lines = "\n".join(summary_lines({"alerts": alerts, "datasets": ["msl"]}))
    assert "| detector | channels | TP (head) |" in lines and "| recall (stream) |" in lines
    assert "| zscore | 1 | " in lines and "*on the stream*, as telemanom sets it" in lines


def test_the_fallback_evidence_is_the_held_out_f1_on_heads_whose_halves_both_hold_labels(tmp_path):
    """The report's evidence for `threshold.fallback`: every labelled rule under every candidate
    smoothing, its threshold set on one half of a validation head and scored on the other
    (`nested_scores`), only where both halves hold labels; the rendered table names the default."""
    from components.evaluation import AlertSettings, nested_scores
    from tasks.alert_report import SMOOTHING_CANDIDATES, alert_analysis, dataset_lines, summary_lines
    from tasks.benchmark import cell_path

    rng = np.random.default_rng(5)
    scores = 1.0 + 0.05 * rng.standard_normal(3000)
    labels = np.zeros(3000, dtype=np.int8)
    for start in (200, 700, 2000):  # one event in each half of the head (0..999), one in the tail
        scores[start : start + 10] += 2.0
        labels[start : start + 10] = 1
    rows = []
    for series, head in (("both", labels[:1000]), ("one", np.where(np.arange(1000) < 500, labels[:1000], 0))):
        proc = tmp_path / "proc" / series
        proc.mkdir(parents=True)
        np.save(proc / "validation_labels.npy", head)
        np.save(proc / "test_labels.npy", labels[1000:])
        cell = cell_path(tmp_path / "benchmark", "nab", series, "zscore").with_suffix(".npz")
        cell.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cell, calibration=1.0 + 0.05 * rng.standard_normal(400), validation=scores[:1000], test=scores[1000:])
        rows.append({"kind": "nab", "dataset": "nab", "family": "vigil", "series": series, "detector": "zscore"})
        # five minutes a row: 288 a day
        rows[-1].update(status="ok", processed_path=f"proc/{series}", raw_path="nab", step_seconds=300.0)
    settings = AlertSettings()
    alerts = alert_analysis(rows, tmp_path, tmp_path / "benchmark", settings)
    forced = alerts["rules_test"]["nab"]["best_f1"]  # each rule forced on the test tails: per day and delay too
    assert forced["n"] == 2 and forced["false_per_day"] is not None and forced["time_to_detect"] is not None
    fallback = alerts["fallback"]
    assert len(fallback) == 2 * len(SMOOTHING_CANDIDATES)  # best_f1 and best_event_f1, each smoothing
    held_out = nested_scores(
        scores[:1000],
        labels[:1000],
        np.load(cell_path(tmp_path / "benchmark", "nab", "both", "zscore").with_suffix(".npz"))["calibration"],
        AlertSettings(rules=("best_f1",), smoothing=(("max", 50),)),
    )
    # only the head whose halves both hold labels counts
    assert fallback["best_f1 · max 50"] == {
        "nab": held_out[("best_f1", ("max", 50))],
        "mean": held_out[("best_f1", ("max", 50))],
    }
    lines = "\n".join(summary_lines({"alerts": alerts, "datasets": ["nab"]}))
    assert "**Fallback rule**" in lines and "Configured: **best_f1 · max " in lines
    forced_table = "\n".join(dataset_lines({"alerts": alerts, "datasets": ["nab"], "summary": []}, "nab"))
    assert "| event recall | false/day | TTD steps |" in forced_table


# --- the flow, end to end -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("bench"), BENCH)
    write_series_csv(ws / "bench/ops/web-1.csv", seed=1)
    write_series_csv(ws / "bench/grid/storage-7.csv", seed=2)
    (ws / "bench/empty").mkdir(parents=True)
    from tasks.benchmark_report import README_END, README_START

    (ws / "README.md").write_text(f"# scratch\n\n## Benchmark\n\n{README_START}\n{README_END}\n")
    # dvc runs the stage's `python -m vigil stage benchmark` with the first python on PATH: this venv's
    env = {**prefect_env(ws.parent), "PATH": f"{REPO / '.venv/bin'}:{os.environ['PATH']}"}
    first = sh(DVC, "repro", "reports/dvc.yaml:benchmark", cwd=ws, env=_env(env))
    return ws, first, env


def _env(extra):
    return {**os.environ, **extra}


def _report(ws, folder="reports"):
    return json.loads((ws / folder / "benchmark.json").read_text())


@pytest.mark.slow
def test_report_has_every_cell_figure_and_section(bench):
    ws, _, _ = bench
    report = _report(ws)
    assert report["datasets"] == ["smd", "msl"]
    assert report["series"] == {"smd": ["web-1.csv"], "msl": ["storage-7.csv"]}
    assert any("holds no series" in why for why in report["meta"]["skipped"])
    rows = report["rows"]
    assert len(rows) == 2 * (5 + 2)
    pca = {r["dataset"]: r["params"] for r in rows if r["detector"] == "pca"}
    assert pca == {"smd": {"n_components": 2}, "msl": {"n_components": 1}}  # a dataset's own value on top
    # Vigil's cells ran under the configured torch thread count (BENCH: 1); the peers carry none
    assert {r["family"]: r.get("torch_threads") for r in rows} == {"vigil": 1, "peer": None}
    # every cell ran, PyOD's PCA too, though a metric is constant in train (tasks/peers.py)
    assert [r["detector"] for r in rows if r["status"] != "ok"] == []
    for r in rows:
        if r["status"] == "ok":
            for f in ("vus_pr", "auc_pr", "point_f1", "pa_f1", "event_f1", "affiliation_f1", "oracle_point_f1"):
                assert r["figures"][f] is not None, (r["detector"], f)
            assert r["figures"]["threshold_retention"] <= 1 + 1e-12  # over the best raw or smoothed F1
            assert r["figures"]["fit_seconds"] > 0 and r["figures"]["score_steps_per_second"] > 0
    md = (ws / "reports/benchmark.md").read_text()
    for heading in (
        "## SMD",
        "## MSL",
        "VUS-PR per series",
        "wall time per detector",
    ):
        assert heading in md
    assert "oracle" in md and "point-adjusted (inflated)" in md
    html = (ws / "reports/benchmark.html").read_text()
    assert html.count("data:image/png;base64,") == 2 * (1 + 1)  # per dataset: heat map + one score plot (plots: 1)


def test_failed_cells_are_listed_with_their_error_escaped(bench):
    """A cell that failed keeps its row and its error in the report's last table; a '|' in the
    error cannot break the table. The bench's own cells all run, so one is marked failed here."""
    from tasks.benchmark_report import render_markdown

    ws, _, _ = bench
    report = _report(ws)
    assert "## Failed and over-budget cells" not in render_markdown(report)  # nothing failed
    row = next(r for r in report["rows"] if r["detector"] == "pyod_pca")
    row.update(status="failed", error="ValueError: non-finite scores | rows [0]")
    md = render_markdown(report)
    assert "## Failed and over-budget cells" in md
    cells = f"| {row['dataset']} | {row['series']} | pyod_pca | failed |"
    assert f"{cells} ValueError: non-finite scores \\| rows [0] |" in md


def test_pyod_pca_peer_keeps_the_components_of_non_zero_variance():
    """PyOD's PCA divides by each component's explained variance: with every component (its
    default) a metric constant in train, or two that move together, make every score infinite.
    The peer keeps the components of non-zero variance, so it scores, and still flags a spike."""
    from tasks.peers import Peer, standardised_rank

    rng = np.random.default_rng(0)
    free = rng.normal(size=(600, 3))
    train = np.c_[free, 2 * free[:, 0], np.ones(600)]  # a copy of a metric, and a constant one
    assert standardised_rank(train) == 3
    test = np.c_[rng.normal(size=(200, 3)), np.zeros(200), np.ones(200)]
    test[:, 3] = 2 * test[:, 0]
    test[120, :3] += 6
    peer = Peer("pyod_pca").fit(train)
    scores = peer.score(test)
    assert np.isfinite(scores).all() and np.isfinite(peer.calibration_scores_).all()
    assert int(np.argmax(scores)) == 120


def test_report_numbers_equal_metrics_recomputed_from_stored_scores(bench):
    from tasks.benchmark import cell_path, read_series, stored_figures
    from vigil.config import load_config

    ws, _, _ = bench
    report = _report(ws)
    protocol = {"alerting": load_config(ws / "params.yaml").alert_settings(), "vus_window": 20}
    for r in report["rows"]:
        if r["status"] != "ok":
            continue
        prepared = read_series(r["dataset"], r["series"], ws / r["processed_path"])
        stored = cell_path(ws / "benchmark", r["kind"], r["series"], r["detector"])
        again = stored_figures(stored, prepared, **protocol)
        # false incidents per day from the series' spacing, recorded when it was prepared (the
        # CSV rows' timestamps here)
        assert r["step_seconds"] and (again["false_incidents_per_1000_steps"] is None) == (
            again["false_incidents_per_day"] is None
        )
        for k, v in again.items():
            assert r["figures"][k] == pytest.approx(v, nan_ok=True), (r["series"], r["detector"], k)
    # and the averages are those of the rows
    for s in report["summary"]:
        mine = [r for r in report["rows"] if (r["dataset"], r["detector"]) == (s["dataset"], s["detector"])]
        vals = [r["figures"]["vus_pr"] for r in mine if r["status"] == "ok"]
        if vals:
            assert s["vus_pr"]["mean"] == pytest.approx(float(np.mean(vals)))


def test_selected_and_oracle_rows_are_the_cells_their_rules_pick(bench):
    """`vigil (selected)`: per series, the Vigil detector with the best validation VUS-PR
    (recomputed here from the stored scores), its test figures unchanged; `oracle`: the one
    best on the test tail. Both are averaged beside the detectors, never stored as cells."""
    from components.metrics import vus_pr
    from tasks.benchmark import cell_path
    from tasks.benchmark_report import ORACLE, SELECTED

    ws, _, _ = bench
    report = _report(ws)
    cells = {(r["series"], r["detector"]): r for r in report["rows"] if r["family"] == "vigil" and r["status"] == "ok"}
    chosen = {(r["series"], r["detector"]): r for r in report["selection_rows"]}
    per_detector: dict[str, list[float]] = {}
    for series in {s for s, _ in cells}:
        mine = {d: r for (s, d), r in cells.items() if s == series}
        any_row = next(iter(mine.values()))
        labels = np.load(ws / any_row["processed_path"] / "validation_labels.npy")
        assert labels.any()  # both synthetic series have labelled validation heads
        val = {}
        for d, r in mine.items():
            z = np.load(cell_path(ws / "benchmark", r["kind"], series, d).with_suffix(".npz"))
            val[d] = vus_pr(labels, z["validation"], 20)
        sel, oracle = chosen[(series, SELECTED)], chosen[(series, ORACLE)]
        assert sel["choice"] == max(val, key=val.get) and sel["choice_rule"] == "validation VUS-PR"
        assert sel["figures"] == mine[sel["choice"]]["figures"]
        assert oracle["choice"] == max(mine, key=lambda d: mine[d]["figures"]["vus_pr"])
        for d, v in val.items():
            per_detector.setdefault(d, []).append(v)
    families = {s["detector"]: s["family"] for s in report["summary"]}
    assert families[SELECTED] == "selected" and families[ORACLE] == "oracle"
    # the priors the pipeline selects by where a head has no label: means over the labelled heads
    priors = report["meta"]["selection"]["priors"]
    assert priors["prior_all"]["n_series"] == 2 and priors["prior"]["csv"]["n_series"] == 2
    for d, vs in per_detector.items():
        assert priors["prior_all"]["means"][d] == pytest.approx(np.mean(vs))
    from tasks.selection_prior import label_free_prior

    prior, why = label_free_prior(ws / "reports/benchmark_summary.json", "prior_all", "csv", ["pca", "zscore", "x"])
    assert why == "" and prior.rule == "prior_all" and set(prior.means) == {"pca", "zscore"}
    assert prior.means["pca"] == pytest.approx(np.mean(per_detector["pca"])) and "commit" in prior.source
    assert not [p for p in (ws / "benchmark/cells").rglob("*") if "selected" in p.name or "oracle" in p.name]
    md = (ws / "reports/benchmark.md").read_text()
    assert f"**{SELECTED}** picked, per series" in md and "## Label-free selection" in md


def test_each_rows_hashes_are_dvcs(bench):
    ws, _, _ = bench
    lock = yaml.safe_load((ws / "reports/dvc.lock").read_text())["stages"]["benchmark"]
    deps = {e["path"]: e["md5"] for e in lock["deps"]}
    processed = next(e for e in lock["outs"] if e["path"] == "benchmark/processed")
    manifest = ws / ".dvc/cache/files/md5" / processed["md5"][:2] / processed["md5"][2:]
    listing = {e["relpath"]: e["md5"] for e in json.loads(manifest.read_text())}
    head = sh("git", "rev-parse", "HEAD", cwd=ws).stdout.strip()
    for r in _report(ws)["rows"]:
        assert r["raw_md5"] == deps[r["raw_path"]]
        sub = r["processed_path"].removeprefix("benchmark/processed/")
        assert r["processed_files"] == {
            k.removeprefix(sub + "/"): v for k, v in listing.items() if k.startswith(sub + "/")
        }
        assert r["git_commit"] == head
        assert re.fullmatch(r"[0-9a-f]{64}", r["params_hash"])


@pytest.mark.slow
def test_rerun_recomputes_nothing_and_logs_nothing_twice(bench):
    import mlflow

    ws, _, env = bench
    before = {p: p.stat().st_mtime_ns for p in (ws / "benchmark/cells").rglob("*.*")}
    again = sh(str(REPO / ".venv/bin/python"), "-m", "vigil", "stage", "benchmark", cwd=ws, env=_env(env))
    assert "0 cell(s) computed, 14 reused" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (ws / "benchmark/cells").rglob("*.*")} == before
    client = mlflow.MlflowClient(f"sqlite:///{ws}/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("vigil-benchmark")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert len(runs) == 14
    tags = runs[0].data.tags
    assert {"dataset", "series", "detector", "vigil.raw_md5", "vigil.processed_md5", "vigil.git_commit"} <= set(tags)


@pytest.mark.slow
def test_every_figure_comes_back_from_a_dvc_remote_in_a_fresh_clone(bench, tmp_path):
    """The benchmark's cells, prepared series and full report are DVC outputs: pushed to a
    remote, a fresh clone's `dvc pull` restores them, `dvc status` finds nothing to rerun, and
    the stage run there reuses every cell and writes every report byte for byte."""
    import shutil

    ws, _, env = bench
    repo = tmp_path / "repo"  # a copy: the other tests keep the fixture's commit
    shutil.copytree(ws, repo, symlinks=True)
    sh(DVC, "remote", "add", "-d", "scratch", str(tmp_path / "remote"), cwd=repo)
    with (repo / ".gitignore").open("a") as ignore:
        ignore.write(".vigil/\n")  # as the repository's: run locks and scratch reports are not committed
    sh("git", "add", "-A", cwd=repo)  # what a user commits after a run: locks, summaries, .gitignore, the data
    sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "benchmark", cwd=repo)
    pushed = sh(DVC, "push", "reports/dvc.yaml:benchmark", cwd=repo, env=_env(env))
    assert "pushed" in pushed.stdout + pushed.stderr
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    (clone / "bench/empty").mkdir()  # git keeps no empty folder: the datasets root the params name
    assert not (clone / "benchmark/cells").exists() and not (clone / "reports/benchmark.json").exists()
    sh(DVC, "pull", "reports/dvc.yaml:benchmark", cwd=clone, env=_env(env))  # this stage's outputs
    reports = ["benchmark.json", "benchmark_summary.json", "benchmark.md", "benchmark.html"]
    cells = sorted(p.relative_to(repo) for p in (repo / "benchmark/cells").rglob("*") if p.is_file())
    assert cells and cells == sorted(
        p.relative_to(clone) for p in (clone / "benchmark/cells").rglob("*") if p.is_file()
    )
    assert all((clone / c).read_bytes() == (repo / c).read_bytes() for c in cells)
    status = sh(DVC, "status", "reports/dvc.yaml:benchmark", cwd=clone, env=_env(env))
    assert "up to date" in status.stdout, status.stdout
    again = sh(str(REPO / ".venv/bin/python"), "-m", "vigil", "stage", "benchmark", cwd=clone, env=_env(env))
    assert "0 cell(s) computed, 14 reused" in again.stdout
    for name in reports:
        assert (clone / "reports" / name).read_bytes() == (repo / "reports" / name).read_bytes(), name


def test_a_full_benchmark_and_the_readme_are_refused_from_a_dirty_tree(bench, tmp_path):
    """The committed report and README's section name the clean commit they were computed at:
    a full run with uncommitted changes is refused before any cell, `--only` writes its own
    scratch report, and `--readme` refuses a report of a dirty tree."""
    import shutil

    ws, _, env = bench
    repo = tmp_path / "repo"
    shutil.copytree(ws, repo, symlinks=True)
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text() + "\n")  # a tracked file changed
    bench_cmd = [str(REPO / ".venv/bin/python"), "-m", "vigil", "stage", "benchmark"]
    before = (repo / "reports/benchmark.json").read_bytes()
    refused = sh(*bench_cmd, cwd=repo, env=_env(env), check=False)
    assert refused.returncode == 2 and "uncommitted changes" in refused.stderr and "--only" in refused.stderr
    assert "Traceback" not in refused.stderr
    # (storage-7: the tuned rows' test counts the flow runs named after web-1 in the shared API)
    only = sh(*bench_cmd, "--only", "csv:storage-7.csv", cwd=repo, env=_env(env))
    assert "0 cell(s) computed" in only.stdout
    assert (repo / "reports/benchmark.json").read_bytes() == before  # --only never writes reports/
    scratch = json.loads((repo / ".vigil/benchmark-only/benchmark_summary.json").read_text())
    assert scratch["meta"]["git_dirty"] is True
    (repo / "reports/benchmark_summary.json").write_text(json.dumps(scratch))
    readme = (repo / "README.md").read_bytes()
    dirty = sh(
        str(REPO / ".venv/bin/python"), "-m", "vigil", "benchmark", "--readme", cwd=repo, env=_env(env), check=False
    )
    assert dirty.returncode != 0 and "uncommitted changes" in dirty.stderr
    assert (repo / "README.md").read_bytes() == readme


def test_readme_section_is_rendered_from_the_report(bench):
    from tasks.benchmark_report import readme_section

    ws, _, env = bench
    sh(str(REPO / ".venv/bin/python"), "-m", "vigil", "benchmark", "--readme", cwd=ws, env=_env(env))
    assert readme_section(_report(ws)) in (ws / "README.md").read_text()
    summary = json.loads((ws / "reports/benchmark_summary.json").read_text())
    assert summary == {k: v for k, v in _report(ws).items() if k not in ("rows", "selection_rows")}


def test_repository_readme_agrees_with_the_report():
    from tasks.benchmark_report import readme_section

    report = json.loads((REPO / "reports/benchmark_summary.json").read_text())
    assert readme_section(report) in (REPO / "README.md").read_text(), (
        "README's Benchmark section differs from reports/benchmark_summary.json: run `vigil benchmark --readme`"
    )


@pytest.mark.slow
def test_benchmark_deployment_runs_by_hand_on_a_worker(bench, tmp_path):
    """A real Prefect server on loopback: `vigil benchmark --deploy` registers
    benchmark/vigil-benchmark with no schedule, and a worker runs it when triggered (every cell
    reused from the first run, so it is quick)."""
    import urllib.request

    from support.servers import free_port, serving
    from support.workspace import VIGIL

    ws, _, _ = bench
    port = free_port()
    prefect = str(REPO / ".venv/bin/prefect")
    env = _env(
        {
            "PREFECT_HOME": prefect_home(tmp_path / "prefect-server-home"),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        }
    )
    with serving(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        f"http://127.0.0.1:{port}/api/health",
        env=env,
    ):
        deployed = sh(VIGIL, "benchmark", "--deploy", cwd=ws, env=env)
        assert "deployed benchmark/vigil-benchmark" in deployed.stdout
        info = sh(prefect, "deployment", "inspect", "benchmark/vigil-benchmark", cwd=ws, env=env).stdout
        assert "'schedules': []" in info and "'work_pool_name': 'gpu'" in info
        sh(prefect, "deployment", "run", "benchmark/vigil-benchmark", cwd=ws, env=env)
        sh(prefect, "worker", "start", "--pool", "gpu", "--run-once", cwd=tmp_path, env=env)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/flow_runs/filter",
            data=b"{}",
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        runs = [r for r in json.loads(urllib.request.urlopen(request, timeout=30).read()) if r["deployment_id"]]
        assert [r["state_type"] for r in runs] == ["COMPLETED"]


@pytest.mark.slow
def test_tuned_rows_stand_beside_the_configured_ones_tuned_on_validation_only(tmp_path):
    params = {
        **BENCH,
        "detectors": {"zscore": {}, "pca": {"n_components": 2}},
        "tuning": {
            "n_trials": 3,
            "spaces": {"pca": {"n_components": {"type": "int", "low": 1, "high": 4}}},
            "storage": "sqlite:///.vigil/optuna.db",
        },
        "benchmark": {**BENCH["benchmark"], "peers": []},
    }
    ws = make_workspace(tmp_path, params)
    write_series_csv(ws / "bench/ops/web-1.csv", seed=1)
    write_series_csv(ws / "bench/grid/storage-7.csv", seed=2)
    env = prefect_env(tmp_path)
    from flows.benchmark import ONLY_REPORTS as ONLY

    run = [str(REPO / ".venv/bin/python"), "-m", "vigil", "stage", "benchmark", "--tuned", "--only", "csv:web-1.csv"]
    out = sh(*run, cwd=ws, env=env)
    assert "4 cell(s) computed" in out.stdout  # two configured, two tuned
    assert not (ws / "reports" / "benchmark.json").exists()  # --only: a scratch report, never the committed one
    assert str(ws / ONLY / "benchmark_summary.json") in out.stdout
    import urllib.request

    request = urllib.request.Request(
        env["PREFECT_API_URL"] + "/flow_runs/filter",
        data=json.dumps({"flow_runs": {"name": {"like_": "benchmark csv:web-1.csv"}}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    assert [r["name"] for r in json.loads(urllib.request.urlopen(request, timeout=30).read())] == [
        "benchmark csv:web-1.csv"
    ]  # the run names its series
    rows = {r["detector"]: r for r in _report(ws, ONLY)["rows"]}
    assert not rows["pca"]["tuned"] and rows["pca"]["params"] == {"n_components": 2}
    assert rows["pca (tuned)"]["tuned"] and rows["zscore (tuned)"]["tuned"]
    assert rows["zscore (tuned)"]["params"] == {}  # no search space: the configured parameters
    assert 1 <= rows["pca (tuned)"]["params"]["n_components"] <= 4
    tuned_on = _report(ws, ONLY)["meta"]["tuned"]["detectors"]  # --tuned: every detector on every dataset
    assert {n: sorted(ds) for n, ds in tuned_on.items()} == {
        n: ["msl", "nab", "skab", "smd"] for n in ("pca", "zscore")
    }
    # tuned rows are not the pipeline's candidates: `vigil (selected)` picks among the configured ones
    assert {r["choice"] for r in _report(ws, ONLY)["selection_rows"]} <= {"zscore", "pca"}
    again = sh(*run, cwd=ws, env=env)  # the finished study is read back, so every cell is reused
    assert "0 cell(s) computed" in again.stdout
    import optuna

    studies = optuna.get_all_study_names(f"sqlite:///{ws}/.vigil/optuna.db")
    assert len(studies) == 1 and ".pca." in studies[0]
