"""One contract over every member of Vigil's three model families (detectors, remedy rankers,
SLO predictors), which share `components.estimator.Estimator`: explicit keyword
hyper-parameters stored unchanged, fitted state ending in ``_``, and a file that round-trips
every parameter and output, checked before it is read and never unpickled. Detectors' fitting
and scoring are checked at length in test_detector_contract.py."""

import inspect
import pickle

import numpy as np
import pytest

from components.detectors import DETECTORS, Detector
from components.estimator import Estimator, FormatError
from components.remedies import RANKERS, Observation, Ranker
from components.slo.predictors import PREDICTORS, SIGNALS, SLOPredictor

FAMILIES = {"detector": (DETECTORS, Detector), "ranker": (RANKERS, Ranker), "predictor": (PREDICTORS, SLOPredictor)}
MEMBERS = [(family, name) for family, (registry, _) in FAMILIES.items() for name in sorted(registry)]

# Every hyper-parameter of every ranker and predictor at a value that is not its default.
NON_DEFAULT = {
    ("ranker", "linucb"): {"alpha": 0.7, "ridge": 2.0},
    ("ranker", "thompson"): {"v": 0.5, "ridge": 2.0, "seed": 3},
    ("ranker", "success_rate"): {"prior_successes": 2.0, "prior_failures": 3.0},
    ("ranker", "catalogue_order"): {},
    ("ranker", "random"): {"seed": 4},
    ("predictor", "rt_threshold"): {},
    ("predictor", "forecast"): {"window": 12, "horizon": 3, "alpha": 0.5},
    ("predictor", "classifier"): {"window": 12, "C": 0.5},
}
FITTED = sorted(NON_DEFAULT)
ARMS = ["restart", "drain", "scale_out", "rollback"]


def _observations(n=40, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.normal(size=dim)
        remedy = ARMS[i % len(ARMS)]
        resolved = bool(x[0] > 0) == (remedy == "drain")
        out.append(Observation(i, remedy, float(resolved), x, resolved, 5.0))
    return out


def _runs(seed=0):
    """Two simulated runs ([seconds, SIGNALS], violation flags) and a normal stretch."""
    rng = np.random.default_rng(seed)
    runs = []
    for r in range(2):
        x = rng.normal(1.0, 0.1, size=(400, len(SIGNALS)))
        x[250 + 20 * r :, :2] += np.linspace(0, 3, 150 - 20 * r)[:, None]  # response time drifts up
        runs.append((x, x[:, 1] > 2.5))
    return runs, rng.normal(1.0, 0.1, size=(300, len(SIGNALS)))


def _fitted(family, name):
    model = FAMILIES[family][0][name](**NON_DEFAULT[family, name])
    if family == "ranker":
        return model.fit(_observations())
    runs, normal = _runs()
    return model.fit(runs, normal, lead=10)


def _outputs(family, model):
    if family == "ranker":
        x = _observations(5, seed=1)
        return [model.rank(o.x, ARMS, key=o.incident) for o in x]
    return model.score_with_contributions(_runs(seed=1)[0][0][0])


@pytest.mark.parametrize("family,name", MEMBERS)
def test_every_member_shares_the_one_base_and_keyword_hyper_parameters(family, name):
    registry, base = FAMILIES[family]
    cls = registry[name]
    assert issubclass(cls, base) and issubclass(base, Estimator) and cls.name == name
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params), "explicit keywords only"
    assert all(p.default is not p.empty for p in params), "every hyper-parameter needs a default"
    assert cls.param_names() == [p.name for p in params]
    if family != "detector":
        assert set(NON_DEFAULT[family, name]) == set(cls.param_names()), "the table above must set every one"
        defaults = {p.name: p.default for p in params}
        assert not [k for k, v in NON_DEFAULT[family, name].items() if v == defaults[k]]


@pytest.mark.parametrize("family,name", FITTED)
def test_init_stores_parameters_unchanged_and_set_params_refuses_unknown_names(family, name):
    cls = FAMILIES[family][0][name]
    model = cls(**NON_DEFAULT[family, name])
    assert model.get_params() == NON_DEFAULT[family, name]
    assert not [k for k in vars(model) if k.endswith("_")], "fitted state before fit"
    assert cls().set_params(**NON_DEFAULT[family, name]).get_params() == NON_DEFAULT[family, name]
    with pytest.raises(ValueError, match=f"{name}: unknown parameter"):
        model.set_params(no_such_parameter=1)


@pytest.mark.parametrize("family,name", FITTED)
def test_fitted_state_ends_in_an_underscore_and_a_file_round_trips_it(family, name, tmp_path):
    model = _fitted(family, name)
    unfitted = vars(FAMILIES[family][0][name](**NON_DEFAULT[family, name]))
    assert all(k.endswith("_") for k in set(vars(model)) - set(unfitted))
    model.save(tmp_path / "m.npz")
    back = FAMILIES[family][1].load(tmp_path / "m.npz")  # through the family's base
    assert type(back) is type(model) and back.get_params() == model.get_params()
    want, got = _outputs(family, model), _outputs(family, back)
    if family == "ranker":
        assert got == want
    else:
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_pickle_or_another_familys_file_is_refused_unread(family, tmp_path):
    base = FAMILIES[family][1]
    ran = tmp_path / "ran"

    class Payload:  # unpickling this would create the file `ran`
        def __reduce__(self):
            return (open, (str(ran), "w"))

    (tmp_path / "p.npz").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(FormatError, match="a pickle, which Vigil does not load"):
        base.load(tmp_path / "p.npz")
    assert not ran.exists()
    (tmp_path / "text.npz").write_text("not a model")
    with pytest.raises(FormatError, match=f"not a Vigil {base.FILE_KIND} file"):
        base.load(tmp_path / "text.npz")
    other = next(f for f in ("ranker", "predictor") if f != family)
    _fitted(other, sorted(FAMILIES[other][0])[0]).save(tmp_path / "other.npz")
    with pytest.raises(FormatError, match=f"not a Vigil {base.FILE_KIND} file|{base.FILE_KIND} file format"):
        base.load(tmp_path / "other.npz")


@pytest.mark.parametrize("family", ["ranker", "predictor"])
def test_a_member_loads_only_its_own_kind(family, tmp_path):
    registry = FAMILIES[family][0]
    first, second = sorted(registry)[:2]
    _fitted(family, first).save(tmp_path / "m.npz")
    assert type(registry[first].load(tmp_path / "m.npz")) is registry[first]
    with pytest.raises(FormatError, match=f"holds a '{first}' {FAMILIES[family][1].FILE_KIND}"):
        registry[second].load(tmp_path / "m.npz")


def test_params_yaml_checks_every_family_member_in_one_place():
    # detectors, SLO predictors and the remedy ranker: an unknown name or parameter is refused
    # when params.yaml is parsed, with its key path, before any command runs
    from vigil.config import ConfigError, parse_config

    raw = {
        "detectors": {"zscore": {"windw": 3}},
        "stream": {"predictors": {"classifer": {}, "forecast": {"horizn": 2}}},
        "remedies": {"ranker": {"name": "linucb", "params": {"alpah": 1.0}}},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "params.yaml")
    text = str(err.value)
    assert text.startswith("params.yaml: 4 problem(s)")
    assert "detectors.zscore.windw: unknown parameter of zscore" in text
    assert "stream.predictors.classifer: 'classifer' is not registered" in text
    assert "stream.predictors.forecast.horizn: unknown parameter of forecast" in text
    assert "remedies.ranker.params.alpah: unknown parameter of linucb" in text
    with pytest.raises(ConfigError, match="remedies.ranker.name: 'bandit' is not registered"):
        parse_config({"remedies": {"ranker": {"name": "bandit"}}})


def test_params_yaml_checks_the_benchmarks_peers_and_tuned_rows():
    # peers are checked by the commands that run or deploy the benchmark, which name the known
    # ones (so the other stages do not depend on the peers' code); tuned rows always
    from vigil.config import ConfigError, parse_config
    from vigil.stages.benchmark import known_peers

    raw = {
        "benchmark": {"peers": ["pyod_knm"], "datasets": {"nab": {"kind": "nab", "root": "x", "peers": ["tsb_pcx"]}}}
    }
    parse_config(raw)  # no peer names given: not checked here
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "params.yaml", peers=known_peers())
    assert "benchmark.peers: unknown peer(s) ['pyod_knm']" in str(err.value)
    assert "benchmark.datasets.nab.peers: unknown peer(s) ['tsb_pcx']" in str(err.value)
    tuned = {"benchmark": {"datasets": {"nab": {"kind": "nab", "root": "x"}}, "tuned": {"detectors": {"pcx": ["msl"]}}}}
    with pytest.raises(ConfigError) as err:
        parse_config(tuned)
    assert "benchmark.tuned.detectors.pcx: not a configured detector" in str(err.value)
    assert "benchmark.tuned.detectors.pcx: unknown dataset(s) ['msl']; known: ['nab']" in str(err.value)


def test_a_datasets_own_detector_parameters_are_checked_on_top_of_the_configured_ones():
    from vigil.config import ConfigError, parse_config

    def nab(detectors):
        return {
            "detectors": {"kmeans": {"window": 40}},
            "benchmark": {"datasets": {"nab": {"kind": "nab", "root": "x", "detectors": detectors}}},
        }

    cfg = parse_config(nab({"kmeans": {"spread": 100}}))
    assert cfg.benchmark.datasets["nab"].detector_params("kmeans", cfg.detectors["kmeans"]) == {
        "window": 40,
        "spread": 100,
    }
    with pytest.raises(ConfigError) as err:
        parse_config(nab({"kmeans": {"spread": -5, "sprad": 1}, "pca": {}}))
    text = str(err.value)
    assert "benchmark.datasets.nab.detectors.kmeans.spread: must be an integer >= 0, got -5" in text
    assert "benchmark.datasets.nab.detectors.kmeans.sprad: unknown parameter of kmeans" in text
    assert "benchmark.datasets.nab.detectors.pca: not a configured detector; configured: ['kmeans']" in text
