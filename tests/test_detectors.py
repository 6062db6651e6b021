import numpy as np
import pytest

from components.datasets import make_synthetic
from components.detectors import DETECTORS, NotFittedError, get_detector, load_detector
from components.metrics import auc_pr
from components.preprocessing import Scaler

CLASSICAL = ["zscore", "pca", "iforest"]


@pytest.fixture(scope="module")
def data():
    d = make_synthetic(seed=1, n_train=1500, n_test=1500, n_anomalies=10)
    s = Scaler().fit(d.train.to_numpy())
    return d, s.transform(d.train.to_numpy()), s.transform(d.test.to_numpy())


def test_registry_lists_and_rejects():
    assert set(CLASSICAL) <= set(DETECTORS)
    with pytest.raises(ValueError, match="unknown detector 'nope'; registered: \\["):
        get_detector("nope")
    with pytest.raises(ValueError, match="detector 'pca': bad parameters"):
        get_detector("pca", depth=3)


def test_bad_hyper_parameter_values_are_named():
    with pytest.raises(ValueError, match=r"lstm_ae: epochs must be an integer >= 1, got 'ten'"):
        get_detector("lstm_ae", epochs="ten").validate_params()
    with pytest.raises(ValueError, match=r"zscore: aggregate must be 'max' or 'mean', got 'maks'"):
        get_detector("zscore", aggregate="maks").validate_params()


@pytest.mark.parametrize("name", CLASSICAL)
def test_interface_shapes_contributions_and_skill(name, data):
    d, train, test = data
    det = get_detector(name)
    assert det.fit(train) is det
    scores, contrib = det.score(test), det.contributions(test)
    assert scores.shape == (len(test),)
    assert np.isfinite(scores).all()
    assert contrib.shape == test.shape
    assert np.allclose(contrib.sum(axis=1), 1.0)
    assert (contrib >= 0).all()
    assert auc_pr(d.labels, scores) > 2 * d.labels.mean()  # clearly better than a random scorer


@pytest.mark.parametrize("name", CLASSICAL)
def test_calibration_scores_come_from_a_copy_that_never_saw_the_tail(name, data):
    _, train, _ = data
    det = get_detector(name).fit(train)
    tail = int(len(train) * det.calibration_fraction)
    head_only = get_detector(name, calibration_fraction=0.0).fit(train[:-tail])
    assert det.calibration_scores_.shape == (tail,)
    np.testing.assert_array_equal(det.calibration_scores_, head_only.score(train[-tail:]))
    # the served model is fitted on all of train, so its own scores of the tail differ
    assert not np.array_equal(det.score(train[-tail:]), det.calibration_scores_)


@pytest.mark.parametrize("name", CLASSICAL)
def test_save_load_round_trip(name, data, tmp_path):
    _, train, test = data
    det = get_detector(name).fit(train)
    det.save(tmp_path / "d.pkl")
    back = load_detector(tmp_path / "d.pkl")
    assert type(back) is type(det)
    assert np.array_equal(back.score(test), det.score(test))
    assert np.array_equal(back.contributions(test), det.contributions(test))


@pytest.mark.parametrize("name", CLASSICAL)
def test_bad_input(name, data):
    _, train, test = data
    det = get_detector(name)
    with pytest.raises(NotFittedError):
        det.score(test)
    bad = train.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values at rows \[5\]"):
        det.fit(bad)
    det.fit(train)
    with pytest.raises(ValueError, match="fitted on 12 metrics, got 3"):
        det.score(test[:, :3])


def test_contributions_point_at_the_faulty_metric(data):
    _, train, test = data
    x = test.copy()
    x[100, 7] += 3.0  # one metric far off at one step
    for name in ("zscore", "pca"):
        assert get_detector(name).fit(train).contributions(x)[100].argmax() == 7
