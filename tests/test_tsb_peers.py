"""TSB-AD's own implementations as peers, run for real in their own environment (made by
`tasks.tsb_peers.ensure_env` on first use: TSB-AD 1.5 needs numpy<2), and TSB-AD's metric
code as a cross-check of Vigil's VUS-PR and AUC-PR. No mocks."""

from __future__ import annotations

import numpy as np
import pytest
from support import REPO

from components import metrics as M
from components.benchmark import PreparedSeries, prepare_series
from components.datasets import make_synthetic
from components.detectors import get_detector
from components.evaluation import AlertSettings


@pytest.fixture(scope="module")
def tsb_env():
    from tasks.tsb_peers import PeerEnvError, ensure_env

    try:
        return ensure_env(REPO)
    except PeerEnvError as exc:  # no registry reachable, say: the cross-check cannot run here
        pytest.skip(f"the TSB-AD peers' environment could not be made: {exc}")


@pytest.fixture(scope="module")
def series() -> PreparedSeries:
    d = make_synthetic(seed=3, n_train=1200, n_test=1000, n_metrics=4, n_anomalies=6, period=48)
    return prepare_series("synthetic", d, validation_fraction=0.3, scaler="minmax", clip=5.0)


@pytest.mark.slow
def test_vigils_vus_pr_and_auc_pr_agree_with_tsb_ads_own_code(tsb_env, series, msl_root):
    """Scores of real detectors on a synthetic series and on a real MSL channel: Vigil's
    metrics and TSB-AD's (basic_metricor.metric_PR, generate_curve with slidingWindow 20) are
    one measure: equal over every threshold, and within TSB-AD's sampling of 250."""
    from components.datasets import DatasetSource, load_dataset
    from tasks.tsb_peers import tsb_metrics

    msl = prepare_series(
        "telemanom",
        load_dataset(DatasetSource("telemanom", msl_root, "D-15", {})),
        validation_fraction=0.3,
        scaler="minmax",
        clip=5.0,
    )
    cases = []
    for prepared, name in ((series, "pca"), (series, "kmeans"), (msl, "knn"), (msl, "zscore")):
        params = {"window": 10} if name == "kmeans" else {}
        scores = get_detector(name, **params).fit(prepared.train).score(prepared.test)
        cases.append((prepared.test_labels, scores))
    for labels, scores in cases:
        exact = tsb_metrics(REPO, labels, scores, 20, thresholds="all")
        assert M.auc_pr(labels, scores) == pytest.approx(exact["auc_pr"], rel=1e-9)
        assert M.vus_pr(labels, scores, 20) == pytest.approx(exact["vus_pr"], rel=1e-9)
        # TSB-AD's leaderboard samples 250 thresholds: close to the exact figure, not equal
        sampled = tsb_metrics(REPO, labels, scores, 20)
        assert M.vus_pr(labels, scores, 20) == pytest.approx(sampled["vus_pr"], abs=5e-3)


def test_a_tsb_peer_fits_on_train_and_scores_every_split(tsb_env, series):
    from tasks.tsb_peers import TSBPeer

    run = TSBPeer("tsb_kmeansad", REPO, budget=300).run_series(series)
    assert run.val_scores.shape == (len(series.validation),)
    assert run.test_scores.shape == (len(series.test),)
    assert run.calibration_scores.shape == (int(len(series.train) * 0.1),)  # the held-out tail of train
    assert np.isfinite(run.test_scores).all() and run.test_contributions is None
    assert M.auc_pr(series.test_labels, run.test_scores) > 2 * series.test_labels.mean()  # it found something
    again = TSBPeer("tsb_kmeansad", REPO, budget=300).run_series(series)
    np.testing.assert_array_equal(again.test_scores, run.test_scores)  # seeded as TSB-AD seeds


@pytest.mark.parametrize("peer", ["tsb_usad", "tsb_omnianomaly"])
def test_usad_and_omnianomaly_fit_a_train_as_short_as_skabs(tsb_env, peer):
    """SKAB's protocol fits on 400 steps (360 once the calibration tail is held out): TSB-AD's
    own 20% split of that (72 steps) holds no window of 100, and both models failed on its
    shape; the runner holds out one window instead (tasks/tsb_ad/runner.py)."""
    from tasks.tsb_peers import TSBPeer

    d = make_synthetic(seed=5, n_train=400, n_test=900, n_metrics=8, n_anomalies=4, period=48)
    short = prepare_series("synthetic", d, validation_fraction=0.3, scaler="minmax", clip=5.0)
    run = TSBPeer(peer, REPO, budget=300).run_series(short)
    assert run.test_scores.shape == (len(short.test),) and np.isfinite(run.test_scores).all()
    assert run.val_scores.shape == (len(short.validation),)
    assert run.calibration_scores.shape == (40,)


def test_usad_on_one_metric_too_short_for_two_windows_keeps_tsb_ads_split(tsb_env):
    """One metric, 186 steps of train (NAB's shortest, 167 once the tail is held out): no split
    leaves a window on both sides, so TSB-AD's own 20% stays (its one-metric windows leave that
    split empty) and USAD fits and scores as TSB-AD would."""
    import dataclasses

    from tasks.tsb_peers import TSBPeer

    d = make_synthetic(seed=6, n_train=186, n_test=600, n_metrics=2, n_anomalies=3, period=24)
    two = prepare_series("synthetic", d, validation_fraction=0.3, scaler="minmax", clip=5.0)
    short = dataclasses.replace(two, train=two.train[:, :1], validation=two.validation[:, :1], test=two.test[:, :1])
    run = TSBPeer("tsb_usad", REPO, budget=300).run_series(short)
    assert run.test_scores.shape == (len(short.test),) and np.isfinite(run.test_scores).all()


@pytest.mark.slow
# two cheap ones; tsb_pca, tsb_cnn, tsb_autoencoder and tsb_lstmad pass too (4 min more on 2 cores)
@pytest.mark.parametrize("peer", ["tsb_kmeansad", "tsb_usad"])
def test_a_tsb_peers_look_ahead_is_how_far_before_a_change_its_scores_move(tsb_env, series, peer):
    """The look-ahead the benchmark reports for a TSB-AD peer (`benchmark.tsb_look_ahead`, read from
    TSB-AD's code) against its real scores: a test tail changed from step k on moves the scores
    from step k - look-ahead on, and not one step earlier (the peer is seeded: one fit twice)."""
    import dataclasses

    from tasks.benchmark import tsb_look_ahead
    from tasks.tsb_peers import TSBPeer

    k = 600
    changed = series.test.copy()
    changed[k:] += 3.0
    runs = [
        TSBPeer(peer, REPO, budget=300).run_series(dataclasses.replace(series, test=t)) for t in (series.test, changed)
    ]
    moved = np.flatnonzero(~np.isclose(runs[0].test_scores, runs[1].test_scores, rtol=0, atol=1e-12))
    assert moved.size and k - moved[0] == tsb_look_ahead(peer, series.test.shape[1])


def test_a_peer_past_its_budget_is_over_budget_not_dropped(tsb_env, series, tmp_path):
    from tasks.benchmark import compute_cell

    row = {"detector": "tsb_omnianomaly", "params": {"budget_seconds": 2}, "family": "peer"}
    out = compute_cell(tmp_path / "cell.json", row, series, alerting=AlertSettings(), vus_window=20)
    assert out["status"] == "over budget"
    assert "within the budget of 2 s" in out["error"]
    assert (tmp_path / "cell.json").is_file()


def test_an_environment_that_cannot_be_made_stops_the_benchmark_and_stores_nothing(tmp_path, series):
    from tasks.benchmark import compute_cell
    from tasks.tsb_peers import PeerEnvError, ensure_env

    with pytest.raises(PeerEnvError, match=r"making the TSB-AD peers' environment failed .*no-python.*leave the tsb_"):
        ensure_env(tmp_path, python=str(tmp_path / "no-python"))
    # the repository's environment is fine; a scratch root has none, and compute_cell does not
    # store the failure as the cell's result (it would be reused once the environment works)
    import tasks.benchmark as tb

    real, scratch = tb.REPO, tmp_path / "scratch"
    scratch.mkdir()
    (scratch / ".vigil").write_text("a file where the folder should be")
    tb.REPO = scratch  # where TSBPeer looks for its environment: a root that cannot hold one
    try:
        row = {"detector": "tsb_kmeansad", "params": {"budget_seconds": 60}, "family": "peer"}
        with pytest.raises(PeerEnvError):
            compute_cell(tmp_path / "cell.json", row, series, alerting=AlertSettings(), vus_window=20)
        assert not (tmp_path / "cell.json").exists()
    finally:
        tb.REPO = real


def test_a_second_process_waits_for_the_environment_another_is_making_and_uses_it(tmp_path):
    """Two Dask workers once made the environment at once, each clearing what the other had
    installed; now the second waits on the lock and finds it made (its own python, here one
    that does not exist, is never run)."""
    import fcntl
    import threading

    from tasks.tsb_peers import ensure_env, env_dir, env_python, requirements_hash

    folder = env_dir(tmp_path)
    folder.parent.mkdir(parents=True)
    got = []
    with open(folder.parent / f"{folder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker, making it
        second = threading.Thread(target=lambda: got.append(ensure_env(tmp_path, python=str(tmp_path / "no-python"))))
        second.start()
        second.join(1.0)
        assert second.is_alive()  # waiting for the lock
        env_python(tmp_path).parent.mkdir(parents=True)
        env_python(tmp_path).write_text("")
        (folder / ".requirements-md5").write_text(requirements_hash())
    second.join(30)
    assert got == [env_python(tmp_path)]


def test_a_failed_cell_is_computed_again_under_new_figures_code_and_reused_otherwise(tmp_path, series):
    """A failure stored under the same scores key is reused (a detector that fails keeps
    failing), unless the figures' key changed: the failure may have come from that code (6 of
    NAB's tuned kmeans cells failed in the label-free rule, later given a fallback)."""
    import json

    from tasks.benchmark import stored_or_computed_cell

    path = tmp_path / "zscore.json"
    named = {k: "x" for k in ("dataset", "kind", "raw_path", "raw_md5", "processed_path")}
    failed = {**named, "detector": "zscore", "params": {}, "key": "k", "figures_key": "old", "status": "failed"}
    path.write_text(json.dumps(failed))
    protocol = {"alerting": AlertSettings(), "vus_window": 20}
    row, how = stored_or_computed_cell(path, {**failed, "status": None, "figures_key": "old"}, series, {}, **protocol)
    assert (how, row["status"]) == ("reused", "failed")
    fresh = {**named, "detector": "zscore", "params": {}, "key": "k", "figures_key": "new", "family": "vigil"}
    row, how = stored_or_computed_cell(path, fresh, series, {}, **protocol)
    assert (how, row["status"]) == ("computed", "ok")
    assert json.loads(path.read_text())["status"] == "ok" and path.with_suffix(".npz").is_file()
