"""The label-free path: a validation split with no labelled anomaly (most MSL channels; an
operator's unlabelled data) is a normal case. Thresholds come from POT on held-out train-tail
scores, the model by the benchmark's prior (the detector best on labelled series like it) or
by consensus agreement, and no figure that needs labels is invented."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from support.workspace import make_workspace, mlflow_client, vigil_run

from components.evaluation import (
    POT_MIN_PEAKS,
    VALIDATION_HEAD,
    AlertSettings,
    choose_alert_rule,
    label_free_threshold,
    metric_suite,
)
from components.selection import agreement, candidate_scores, pick_best, score_outside_candidate, selection_rule
from components.thresholds import pot_threshold_from


def test_no_validation_label_means_pot_on_the_calibration_scores():
    rng = np.random.default_rng(0)
    calibration = rng.exponential(size=1000)  # the 0.98 quantile leaves 20 peaks: POT starts there
    raw = AlertSettings(label_free=("pot_train", "none", 1), fallback=("best_f1", "none", 1))
    th = choose_alert_rule(rng.exponential(size=300), np.zeros(300), calibration, raw)
    assert th.label_free
    assert th.rule == "label-free: pot_train on held-out train-tail scores"
    assert "no labelled anomaly in the validation split" in th.detail
    start = float(np.quantile(calibration, 0.98))
    assert th.value == pytest.approx(pot_threshold_from(calibration, start, 1e-3))
    labelled = choose_alert_rule(calibration[:300], (calibration[:300] > 3).astype(int), calibration, raw)
    assert labelled.rule.endswith("on validation labels") or labelled.rule.endswith("scores")
    assert not labelled.label_free  # the labels chose it


def test_tied_calibration_scores_still_leave_enough_peaks():
    # MSL-like: most held-out scores equal (one-hot command columns), a few distinct high ones
    x = np.r_[np.zeros(200), np.linspace(1, 2, 15)]
    th = label_free_threshold(x, pot_q=1e-3, pot_level=0.98)
    assert th.rule == "label-free: pot on held-out train-tail scores"
    assert th.value > 1.0
    constant = label_free_threshold(np.ones(100), pot_q=1e-3, pot_level=0.98)
    assert constant.rule == "label-free: above the largest held-out train-tail score"
    assert constant.value > 1.0
    assert not np.any(np.ones(100) >= constant.value)  # nothing normal is flagged


def test_too_short_a_calibration_tail_names_the_way_out():
    with pytest.raises(ValueError, match=r"10 held-out train-tail scores are too few for POT; it needs 20\. Lengthen"):
        label_free_threshold(np.arange(10.0), pot_q=1e-3, pot_level=0.98)
    # the same POT on an unlabelled validation head names that head, and its own way out
    with pytest.raises(ValueError, match=r"10 unlabelled validation-head scores .* preprocessing\.validation_fraction"):
        label_free_threshold(np.arange(10.0), pot_q=1e-3, pot_level=0.98, scores_from=VALIDATION_HEAD)
    head = label_free_threshold(np.ones(100), pot_q=1e-3, pot_level=0.98, scores_from=VALIDATION_HEAD)
    assert head.rule == "label-free: above the largest unlabelled validation-head score"
    assert POT_MIN_PEAKS == 10


def test_no_label_no_labelled_figure():
    out = metric_suite(np.zeros(50), np.linspace(0, 1, 50), 0.5)
    assert out["threshold"] == 0.5
    assert out["flagged_share"] == 0.5
    undefined = [k for k, v in out.items() if isinstance(v, float) and math.isnan(v)]
    assert {"point_f1", "pa_f1", "event_f1", "affiliation_f1", "auc_pr", "vus_pr", "auc_roc"} <= set(undefined)


def test_consensus_prefers_the_detector_that_agrees_with_the_others():
    rng = np.random.default_rng(1)
    signal = rng.normal(size=500)
    scores = {
        "a": signal + 0.1 * rng.normal(size=500),
        "b": signal + 0.2 * rng.normal(size=500),
        "noise": rng.normal(size=500),
    }
    selection = selection_rule("vus_pr", np.zeros(500), 5)
    assert not selection.labelled
    assert selection.key == "val_consensus"
    assert "1 by construction" in selection_rule("vus_pr", np.zeros(500), 5, n_candidates=1).reason
    figures = candidate_scores(selection, scores, {n: {} for n in scores})
    assert pick_best(figures) == "a"
    assert figures["noise"] < 0.5 < figures["b"]
    # an outside model (the champion) is scored against this run's consensus, the same way
    members = list(scores.values())
    assert score_outside_candidate(selection, signal, np.zeros(500), np.zeros(500), members) == pytest.approx(
        agreement(signal, members)
    )
    assert math.isnan(agreement(np.ones(500), members))


def test_prior_picks_the_best_on_the_other_labelled_heads_never_the_series_itself():
    from components.selection import label_free_choice, prior_choice

    figures = {"a": {"knn": 0.9, "pca": 0.1}, "b": {"knn": 0.2, "pca": 0.6}, "c": {"knn": 0.3, "pca": 0.5}}
    assert prior_choice(figures, "a") == "pca"  # b and c only: pca 0.55 > knn 0.25
    assert prior_choice(figures, "b") == "knn"  # a and c: knn 0.6 > pca 0.3
    assert prior_choice(figures, "unlabelled") == "knn"  # all three: knn 0.467 > pca 0.4
    assert prior_choice({"a": figures["a"]}, "a") is None  # nothing else to learn from
    scores = {"knn": np.arange(10.0), "pca": np.arange(10.0)[::-1], "zscore": np.arange(10.0) ** 2}
    assert label_free_choice("consensus", ("smd", "x"), scores, {}) in ("knn", "zscore")
    with pytest.raises(ValueError, match="unknown label-free selection rule"):
        label_free_choice("vibes", ("smd", "x"), scores, {})
    # prior: the series of its own kind; prior_all: every kind's (Ma et al.'s "global best")
    labelled = {
        ("smd", "m1"): {"knn": 0.9, "pca": 0.1},
        ("nab", "n1"): {"knn": 0.1, "pca": 0.6},
        ("nab", "n2"): {"knn": 0.1, "pca": 0.6},
    }
    assert label_free_choice("prior", ("smd", "m2"), scores, labelled) == "knn"
    assert label_free_choice("prior_all", ("smd", "m2"), scores, labelled) == "pca"  # pca 0.433 > knn 0.367
    assert label_free_choice("prior", ("smd", "m1"), scores, labelled) is None  # only itself of its kind


def test_the_pipeline_reads_its_prior_from_the_benchmark_summary_and_says_why_not(tmp_path):
    from components.datasets import DataError
    from tasks.selection_prior import label_free_prior

    summary = tmp_path / "benchmark_summary.json"
    assert label_free_prior(summary, "benchmark", "smd", ["knn"])[0] is None  # absent: consensus, and why
    assert "no benchmark summary" in label_free_prior(summary, "benchmark", "smd", ["knn"])[1]
    priors = {
        "prior_all": {"means": {"knn": 0.3, "pca": 0.5, "lstm_ae": None}, "n_series": 9},
        "prior": {"smd": {"means": {"knn": 0.6, "pca": 0.2}, "n_series": 4}},
    }
    doc = {"meta": {"git_commit": "abc1234def", "selection": {"label_free_rule": "prior_all", "priors": priors}}}
    summary.write_text(json.dumps(doc))
    prior, why = label_free_prior(summary, "benchmark", "smd", ["knn", "pca", "lstm_ae", "zscore"])
    assert why == "" and prior.rule == "prior_all" and prior.means == {"knn": 0.3, "pca": 0.5}  # no NaN, no zscore
    assert prior.n_series == 9 and "abc1234" in prior.source
    assert label_free_prior(summary, "prior", "smd", ["knn", "pca"])[0].means == {"knn": 0.6, "pca": 0.2}
    none, why = label_free_prior(summary, "prior", "nab", ["knn"])
    assert none is None and "no labelled series of kind 'nab'" in why
    assert label_free_prior(summary, "consensus", "smd", ["knn"])[0] is None
    assert "covers none" in label_free_prior(summary, "benchmark", "smd", ["zscore"])[1]
    selection = selection_rule("vus_pr", np.zeros(50), 20, 2, prior)
    assert selection.key == "val_prior_all" and not selection.labelled and "9 series" in selection.reason
    figures = candidate_scores(selection, {"knn": np.zeros(5), "pca": np.zeros(5)}, {})
    assert figures == {"knn": 0.3, "pca": 0.5}
    # the champion is scored by its detector's prior figure; one outside the prior has none
    assert score_outside_candidate(selection, np.zeros(5), np.zeros(5), np.zeros(5), [], "pca") == 0.5
    assert math.isnan(score_outside_candidate(selection, np.zeros(5), np.zeros(5), np.zeros(5), [], "zscore"))
    # a damaged summary is one paragraph naming the file and the field
    doc["meta"]["selection"]["priors"]["prior_all"]["means"]["knn"] = "<b>high</b>"
    summary.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"benchmark_summary.json.*prior_all.means.knn"):
        label_free_prior(summary, "benchmark", "smd", ["knn"])
    summary.write_text("{not json")
    with pytest.raises(DataError, match="benchmark_summary.json: cannot read the label-free prior"):
        label_free_prior(summary, "benchmark", "smd", ["knn"])


def test_a_labelled_validation_split_keeps_the_configured_metric():
    selection = selection_rule("vus_pr", np.r_[np.zeros(90), np.ones(10)], 5)
    assert selection.labelled
    assert selection.key == "val_vus_pr"


# --- end to end: the real `vigil run` --------------------------------------------------------

TORCH_SMALL = {"window": 10, "hidden": 16, "epochs": 2, "device": "cpu"}


def _label_free_run(ws, out, expect_test_figures: bool, rule: str = "consensus"):
    assert out.returncode == 0, out.stderr[-3000:]
    assert (
        "Threshold: label-free: pot_train on held-out train-tail scores, trailing max of 50 scores, as there is "
        "no labelled anomaly in the validation split" in out.stdout
    )
    if rule == "consensus":
        assert "Model choice: label-free: agreement (Spearman) with the consensus" in out.stdout
    else:
        assert f"Model choice: label-free ({rule}): the best mean validation VUS-PR" in out.stdout
    assert "made it @champion" in out.stdout
    assert f"val_{rule}" in out.stdout
    report = json.loads((ws / "reports" / "metrics.json").read_text())
    for name, r in report.items():
        assert r["threshold_rule"].startswith("label-free"), name
        assert r["undefined"]["validation"] == "no labelled anomaly in the validation split"
        assert r["validation"]["vus_pr"] is None  # undefined, not invented
        assert (r["test"]["vus_pr"] is not None) == expect_test_figures
    mlflow, client = mlflow_client(ws)
    model = next(m for m in client.search_registered_models())
    champion = client.get_model_version_by_alias(model.name, "champion")
    assert champion.tags["vigil.selection"].startswith("label-free")
    run = client.get_run(champion.run_id)
    assert run.data.tags["vigil.threshold_rule"].startswith("label-free")
    assert f"val_{rule}" in run.data.metrics
    return champion


@pytest.mark.usefixtures("msl_root")
@pytest.mark.slow
def test_msl_m1_registers_a_champion_through_the_label_free_path(tmp_path, msl_root):
    params = {
        "dataset": {"kind": "telemanom", "root": str(msl_root), "name": "M-1"},
        "detectors": {"zscore": {}, "pca": {}, "lstm_ae": TORCH_SMALL},
    }
    ws = make_workspace(tmp_path, params)
    # the benchmark's verdict: prior_all, learnt from labelled heads elsewhere (figures made up here)
    priors = {"prior_all": {"means": {"zscore": 0.2, "pca": 0.6, "lstm_ae": 0.4}, "n_series": 12}, "prior": {}}
    summary = {"meta": {"git_commit": "f" * 40, "selection": {"label_free_rule": "prior_all", "priors": priors}}}
    (ws / "reports").mkdir(exist_ok=True)
    (ws / "reports/benchmark_summary.json").write_text(json.dumps(summary))
    out = vigil_run(ws, "--new-data-version", check=False)
    # M-1's test tail is labelled; its validation head is not
    champion = _label_free_run(ws, out, expect_test_figures=True, rule="prior_all")
    assert champion.tags["vigil.detector"] == "pca" and "12 series" in champion.tags["vigil.selection"]
    # the same detector refitted ties with the champion on its prior figure, and takes over
    again = vigil_run(ws, "--new-data-version", check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    _, client = mlflow_client(ws)
    name = next(iter(client.search_registered_models())).name
    assert int(client.get_model_version_by_alias(name, "champion").version) == int(champion.version) + 1


@pytest.mark.slow
def test_an_unlabelled_csv_registers_a_champion_through_the_label_free_path(tmp_path):
    rng = np.random.default_rng(4)
    n = 1600
    t = np.arange(n)
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-03-01", periods=n, freq="min").astype(str),
            "cpu": 40 + 10 * np.sin(2 * np.pi * t / 120) + rng.normal(0, 1, n),
            "mem": 60 + 5 * np.sin(2 * np.pi * t / 120 + 1) + rng.normal(0, 0.5, n),
            "net": 100 + 20 * np.sin(2 * np.pi * t / 60) + rng.normal(0, 2, n),
        }
    )
    frame.loc[1300:1310, "cpu"] += 40  # an incident nobody labelled
    raw = tmp_path / "ops"
    raw.mkdir()
    frame.to_csv(raw / "node17.csv", index=False)
    params = {
        "dataset": {"kind": "csv", "root": str(raw), "name": "node17.csv"},
        "detectors": {"zscore": {}, "pca": {}, "lstm_ae": TORCH_SMALL},
    }
    ws = make_workspace(tmp_path, params)
    out = vigil_run(ws, "--new-data-version", check=False)
    _label_free_run(ws, out, expect_test_figures=False)
    assert "'-' in the label columns: undefined, no labelled anomaly in the test split." in out.stdout
