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


@pytest.mark.parametrize("name", CLASSICAL)
def test_interface_shapes_contributions_and_skill(name, data):
    d, train, test = data
    det = get_detector(name)
    assert det.fit(train) is det
    scores, contrib = det.score(test), det.contributions(test)
    assert scores.shape == (len(test),) and np.isfinite(scores).all()
    assert contrib.shape == test.shape and np.allclose(contrib.sum(axis=1), 1.0) and (contrib >= 0).all()
    assert auc_pr(d.labels, scores) > 2 * d.labels.mean()  # clearly better than a random scorer
    assert set(det.get_params()) == set(type(det)().get_params())


@pytest.mark.parametrize("name", CLASSICAL)
def test_save_load_round_trip(name, data, tmp_path):
    _, train, test = data
    det = get_detector(name).fit(train)
    det.save(tmp_path / "d.pkl")
    back = load_detector(tmp_path / "d.pkl")
    assert type(back) is type(det) and back.get_params() == det.get_params()
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
