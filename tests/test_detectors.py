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
    det.save(tmp_path / "d.npz")
    back = load_detector(tmp_path / "d.npz")
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


@pytest.mark.parametrize(
    "kw", [{}, {"max_samples": 64, "n_estimators": 30, "random_state": 3}, {"max_features": 0.5, "n_estimators": 30}]
)
def test_iforest_kept_as_arrays_scores_exactly_as_scikit_learn(data, kw):
    from scipy import sparse
    from sklearn.ensemble import IsolationForest

    _, train, test = data
    ours = get_detector("iforest", **kw).fit(train)
    params = {k: v for k, v in ours.get_params().items() if k != "calibration_fraction"}
    ref = IsolationForest(**params).fit(train)
    np.testing.assert_array_equal(ours.score(test), -ref.score_samples(test))
    # contributions as computed before, from scikit-learn's decision paths
    total = np.zeros(test.shape)
    for tree, feats in zip(ref.estimators_, ref.estimators_features_):
        t = tree.tree_
        path = tree.decision_path(test[:, feats]).tocsr()
        depth = np.asarray(path.sum(axis=1)).ravel()
        internal = t.feature >= 0
        node_feat = sparse.csr_matrix(
            (np.ones(internal.sum()), (np.flatnonzero(internal), feats[t.feature[internal]])),
            shape=(t.node_count, test.shape[1]),
        )
        total += (path @ node_feat).toarray() / depth[:, None]
    np.testing.assert_allclose(ours.contributions(test), total / total.sum(axis=1, keepdims=True), rtol=1e-12)


# --- no pickle: a detector file is data, checked before it is read -------------------------


class _RunsCode:
    """What a crafted pickle does: on load, call any function with any argument."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_crafted_pickle_is_refused_unread(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    crafted = tmp_path / "zscore.npz"  # where the evaluate step looks for a model
    crafted.write_bytes(pickle.dumps({"format": 1, "detector": "zscore", "x": _RunsCode(marker)}))
    with pytest.raises(ValueError, match="a pickle, which Vigil does not load .* retrain"):
        load_detector(crafted)
    old_name = crafted.rename(tmp_path / "zscore.pkl")  # the old format's file name
    with pytest.raises(ValueError, match="a pickle, which Vigil does not load .* retrain"):
        load_detector(old_name)
    assert not marker.exists()  # nothing in the file ran


def test_object_arrays_and_foreign_files_are_refused(tmp_path, data):
    import json

    _, train, _ = data
    np.savez(tmp_path / "obj.npz", __vigil__=np.frombuffer(b"{}", np.uint8), **{"state.x": np.array([{}], object)})
    with pytest.raises(ValueError, match="not a readable Vigil detector file"):
        load_detector(tmp_path / "obj.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="without Vigil's header"):
        load_detector(tmp_path / "plain.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a Vigil detector file"):
        load_detector(tmp_path / "text.npz")
    get_detector("zscore").fit(train).save(tmp_path / "z.npz")
    with np.load(tmp_path / "z.npz") as z:
        parts = {k: z[k] for k in z.files}
    header = json.loads(bytes(parts["__vigil__"]).decode())
    parts["__vigil__"] = np.frombuffer(json.dumps({**header, "format": 7}).encode(), np.uint8)
    np.savez(tmp_path / "future.npz", **parts)
    with pytest.raises(ValueError, match="format 7, this Vigil reads 2: retrain"):
        load_detector(tmp_path / "future.npz")


def test_kmeans_spread_gives_each_step_its_neighbours_highest_score_and_its_contributions():
    """``spread``: a step takes the highest unspread score within ``spread`` steps either side,
    with the contributions of the step that holds it; the score is final that much later."""
    rng = np.random.default_rng(0)
    train = rng.normal(size=(400, 3)).astype(np.float32)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    x[120:124, 2] += 6.0  # one fault, on metric 2
    plain = get_detector("kmeans", window=8, n_clusters=4).fit(train)
    wide = get_detector("kmeans", window=8, n_clusters=4, spread=15).fit(train)
    s0, c0 = plain.score_and_contributions(x)
    s, c = wide.score_and_contributions(x)
    for t in (0, 50, 105, 121, 140, 199):
        lo, hi = max(0, t - 15), min(len(x), t + 16)
        held = lo + int(np.argmax(s0[lo:hi]))
        assert s[t] == s0[held]
        np.testing.assert_array_equal(c[t], c0[held])
    assert (s >= s0).all()
    assert wide.context_steps() == (7 + 15, 7 + 15)
    # the fault's score now covers the 15 steps before it, where a labelled window opens early
    assert s[110] > np.quantile(s0, 0.99) and c[110].argmax() == 2
    with pytest.raises(ValueError, match="spread must be an integer >= 0"):
        get_detector("kmeans", spread=-1).fit(train)
