"""One contract over every registered detector, in the spirit of scikit-learn's
`parametrize_with_checks`: explicit keyword hyper-parameters, no logic in ``__init__``, and a
save/load round trip that keeps every parameter and every score."""

import inspect

import numpy as np
import pytest

from components.detectors import DETECTORS, get_detector, load_detector

# Every hyper-parameter of every detector set to a value that is not its default (and small
# enough to fit in a second). A detector or parameter missing here fails the first test.
NON_DEFAULT = {
    "zscore": {"aggregate": "mean", "min_scale": 0.01, "calibration_fraction": 0.2},
    "pca": {"n_components": 3, "calibration_fraction": 0.2},
    "iforest": {
        "n_estimators": 20,
        "max_samples": 64,
        "max_features": 0.7,
        "contamination": 0.05,
        "random_state": 7,
        "n_jobs": 2,
        "calibration_fraction": 0.2,
    },
    "knn": {
        "n_neighbors": 3,
        "window": 4,
        "method": "mean",
        "max_train": 200,
        "random_state": 3,
        "calibration_fraction": 0.2,
    },
    "kmeans": {
        "window": 5,
        "n_clusters": 4,
        "normalize": "window",
        "max_windows": 150,
        "n_init": 2,
        "random_state": 3,
        "calibration_fraction": 0.2,
        "spread": 3,
    },
    "ensemble": {
        "members": ["zscore", "pca", "knn"],
        "member_params": {"pca": {"n_components": 2}, "knn": {"window": 3}},
        "normalise": "rank",
    },
}
TORCH_COMMON = {
    "window": 6,
    "hidden": 12,
    "num_layers": 3,
    "dropout": 0.1,
    "lr": 0.004,
    "batch_size": 16,
    "epochs": 2,
    "patience": 7,
    "val_fraction": 0.2,
    "seed": 5,
    "device": "cpu",
    "amp": False,
    "score_batch_size": 37,
    "score_stride": 2,
}
NON_DEFAULT.update(
    {
        "conv_bigru_ae": {**TORCH_COMMON, "num_layers": 1, "dropout": 0.0},
        "lstm_ae": TORCH_COMMON,
        "lstm_vae": {**TORCH_COMMON, "latent": 5, "n_samples": 3, "kl_weight": 0.5},
        "lstm_forecaster": {**TORCH_COMMON, "num_layers": 1, "dropout": 0.0},
        "uae": {**TORCH_COMMON, "latent": 3, "combine": "gauss_dynamic", "recent": 25},
        "cnn": {**TORCH_COMMON, "window": 12, "num_layers": 1},
    }
)


def _series(n, f=3, seed=0):
    t = np.arange(n)[:, None]
    rng = np.random.default_rng(seed)
    return (0.5 + 0.3 * np.sin(2 * np.pi * t / 24 + np.arange(f)) + 0.05 * rng.normal(size=(n, f))).astype(np.float32)


def _signature(cls):
    return list(inspect.signature(cls.__init__).parameters.values())[1:]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_hyper_parameter_is_an_explicit_keyword(name):
    cls = DETECTORS[name]
    params = _signature(cls)
    kinds = {p.name: p.kind for p in params}
    assert not [n for n, k in kinds.items() if k in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    assert all(p.default is not inspect.Parameter.empty for p in params), "every hyper-parameter needs a default"
    assert set(NON_DEFAULT[name]) == set(kinds), "the table above must set every hyper-parameter"
    defaults = {p.name: p.default for p in params}
    same = [k for k, v in NON_DEFAULT[name].items() if v == defaults[k]]
    assert not same, f"not a non-default value: {same}"


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_init_stores_parameters_unchanged_and_fits_nothing(name):
    det = get_detector(name, **NON_DEFAULT[name])
    assert det.get_params() == NON_DEFAULT[name]
    assert not [k for k in vars(det) if k.endswith("_")], "fitted state before fit"
    # no checks in __init__ (scikit-learn's rule): a bad value is accepted here and refused by fit
    bad = get_detector(name, **{**NON_DEFAULT[name], **_BAD[name]})
    with pytest.raises(ValueError, match=next(iter(_BAD[name]))):
        bad.fit(_series(300))


_BAD = {
    "zscore": {"aggregate": "median"},
    "pca": {"n_components": 0},
    "iforest": {"n_estimators": 0},
    "knn": {"n_neighbors": 0},
    "kmeans": {"n_clusters": 0},
    "ensemble": {"members": ["pca", "no_such_detector"]},
}
_BAD.update({n: {"window": 1} for n in ("conv_bigru_ae", "lstm_ae", "lstm_vae", "lstm_forecaster", "uae", "cnn")})


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_set_params_sets_and_refuses_unknown_names(name):
    det = get_detector(name)
    assert det.set_params(**NON_DEFAULT[name]) is det
    assert det.get_params() == NON_DEFAULT[name]
    with pytest.raises(ValueError, match=f"{name}: unknown parameter"):
        det.set_params(no_such_parameter=1)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_save_load_round_trips_every_parameter_and_score(name, tmp_path):
    train, x = _series(300), _series(120, seed=1)
    x[60, 1] += 2.0
    det = get_detector(name, **NON_DEFAULT[name]).fit(train)
    det.save(tmp_path / "d.npz")
    back = load_detector(tmp_path / "d.npz")
    assert type(back) is type(det)
    assert back.get_params() == NON_DEFAULT[name]
    s0, c0 = det.score_and_contributions(x)
    s1, c1 = back.score_and_contributions(x)
    np.testing.assert_array_equal(s1, s0)
    np.testing.assert_array_equal(c1, c0)
    np.testing.assert_array_equal(back.calibration_scores_, det.calibration_scores_)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_a_stream_scored_in_ten_batches_gets_the_scores_of_one_pass(name):
    """Scoring a series in one batch or in ten (each with the steps `context_steps` asks for,
    carried in a `StreamState`) gives the same scores and contributions: batch boundaries
    change nothing. score_stride 1: a larger stride places windows from each batch's start."""
    from components.streaming import StreamState, score_batch

    params = {**NON_DEFAULT[name], **({"score_stride": 1} if "score_stride" in NON_DEFAULT[name] else {})}
    train, x = _series(300), _series(230, seed=2)
    x[100:104, 0] += 2.0
    det = get_detector(name, **params).fit(train)
    past, future = det.context_steps()
    passes = []
    for n_batches in (1, 10):
        state, scores, contrib = StreamState.empty(x.shape[1]), [], []
        for batch in np.array_split(x, n_batches):
            final, state = score_batch(det.score_and_contributions, state, batch, past, future)
            scores.append(final.scores)
            contrib.append(final.contributions)
        assert state.pending == future  # the last `future` steps wait for steps after them
        passes.append((np.concatenate(scores), np.concatenate(contrib)))
    (s1, c1), (s10, c10) = passes
    assert len(s1) == len(x) - future
    # float32 matrix products may round differently for another batch length (knn: 1.6e-5)
    np.testing.assert_allclose(s10, s1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(c10, c1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(s1, det.score(x)[: len(x) - future], rtol=1e-4, atol=1e-6)
