import numpy as np
import pytest

from components.metrics import point_prf
from components.thresholds import best_f1_threshold, pot_threshold, quantile_threshold


def test_best_f1_matches_brute_force():
    rng = np.random.default_rng(1)
    labels = (rng.random(400) < 0.1).astype(int)
    scores = np.round(rng.random(400) + labels * 0.6, 2)  # rounded: many ties
    th, f1 = best_f1_threshold(scores, labels)
    brute = max(point_prf(labels, (scores >= t).astype(int))[2] for t in np.unique(scores))
    assert f1 == pytest.approx(brute)
    assert point_prf(labels, (scores >= th).astype(int))[2] == pytest.approx(f1)


def test_best_f1_perfect_separation_and_no_positives():
    assert best_f1_threshold(np.array([0.1, 0.9, 0.2, 0.8]), np.array([0, 1, 0, 1])) == (0.8, 1.0)
    with pytest.raises(ValueError, match="no positive label"):
        best_f1_threshold(np.zeros(3), np.zeros(3))


def test_pot_recovers_an_exponential_tail_quantile():
    x = np.random.default_rng(0).exponential(1.0, 200_000)
    # P(X > z) = 1e-4 for Exp(1) is z = ln(1e4)
    assert pot_threshold(x, q=1e-4, level=0.98) == pytest.approx(np.log(1e4), rel=0.05)
    with pytest.raises(ValueError, match="POT needs at least 10"):
        pot_threshold(np.arange(100.0), level=0.95)


def test_quantile_threshold():
    assert quantile_threshold(np.arange(101.0), 0.9) == pytest.approx(90.0)


# --- telemanom's protocol: the dynamic threshold set batch by batch on the stream ------------


def _noisy_stream(n: int, seed: int = 0) -> np.ndarray:
    return 1.0 + 0.05 * np.random.default_rng(seed).standard_normal(n)


def test_telemanom_flags_a_spike_in_its_batch_and_never_the_history():
    from components.telemanom import BATCH, BUFFER, telemanom_flags

    s = _noisy_stream(3000)
    s[2510:2516] += 3.0  # one short anomaly, in the batch 2470..2539 (history: 1000 steps, batches of 70)
    flags = telemanom_flags(s, history=1000)
    assert flags.shape == (2000,)  # the stream judged, not its history
    hit = np.flatnonzero(flags) + 1000
    # the buffer pulls steps either side into one sequence, never before its batch's first step;
    # the next batch's window still flags the spike, which reaches BUFFER steps into that batch
    start = 1000 + (2510 - 1000) // BATCH * BATCH
    assert hit.min() == max(start, 2510 - BUFFER) and hit.max() == 2515 + BUFFER
    assert np.all(np.diff(hit) == 1)


def test_telemanom_flags_are_causal_batch_by_batch():
    from components.telemanom import BATCH, telemanom_flags

    s = _noisy_stream(4000, seed=1)
    s[1800:1830] += 2.0
    later = s.copy()
    later[3000:] += 5.0  # whatever comes after a batch cannot change its flags
    a, b = telemanom_flags(s, 500), telemanom_flags(later, 500)
    cut = (3000 - 500) // BATCH * BATCH  # the batches that end before step 3000
    assert np.array_equal(a[:cut], b[:cut])
    assert a[1800 - 500 : 1830 - 500].all()


def test_telemanom_thresholds_adapt_to_a_new_level_where_a_fixed_one_keeps_alarming():
    from components.telemanom import WINDOW, telemanom_flags
    from components.thresholds import dynamic_threshold

    s = _noisy_stream(6000, seed=2)
    s[2000:] += 1.0  # the level shifts for good at 2000 (history: the first 1000 steps)
    flags = telemanom_flags(s, 1000)
    settled = 2000 + WINDOW  # every window from here on holds the new level only
    assert not flags[settled - 1000 :].any()
    assert (s[settled:] >= dynamic_threshold(s[:1000])).all()  # set once on the history: alarmed for good


def _label_free_rules():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "label_free_rules.py"
    spec = importlib.util.spec_from_file_location("label_free_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_adaptive_floor_of_benchmarks_label_free_rules_is_the_trailing_quantile():
    """benchmarks/label_free_rules.py measures a rolling-percentile floor (not adopted): at each
    step, the quantile of the window of values before it, the history first, never the step itself."""
    module = _label_free_rules()
    rng = np.random.default_rng(3)
    history, x = np.round(rng.random(40), 1), np.round(rng.random(200) * 2, 1)  # rounded: ties
    got = module.trailing_quantile(history, x, 0.9, 30)
    stream = np.concatenate([history, x])
    for i in range(len(x)):
        window = stream[len(history) + i - 30 : len(history) + i]
        assert got[i] == np.quantile(window, 0.9, method="inverted_cdf"), i
    assert module.trailing_quantile([], [1.0, 2.0], 0.5, 5)[0] == -np.inf  # nothing before the first step


def test_leave_one_file_out_flags_each_file_by_the_choice_of_the_other_files():
    """SKAB's cross-validated figure (benchmarks/label_free_rules.py): a file's flags come from
    the candidate best on the other files, so its own labels never choose them."""
    module = _label_free_rules()
    y = np.array([False, False, True, True, False, False])
    exact, none = y.copy(), np.zeros(6, bool)
    loose = np.array([True, False, True, True, False, False])  # every anomaly step and one false
    candidates = {
        ("sharp", "r"): {"a": (exact, y), "b": (exact, y), "c": (none, y)},
        ("loose", "r"): {"a": (loose, y), "b": (loose, y), "c": (loose, y)},
        ("partial", "r"): {"a": (exact, y)},  # did not score every file: never a candidate
    }
    counts, picked = module.leave_one_file_out(candidates)
    # a: on b and c, loose pools F1 0.8 against sharp's 2/3; b alike; c: on a and b, sharp 1.0
    assert picked == {"a": ("loose", "r"), "b": ("loose", "r"), "c": ("sharp", "r")}
    assert (counts.tp, counts.fp, counts.fn, counts.files) == (4, 2, 2, 3)
    # whatever c's own labels say, c is flagged by what a and b chose
    relabelled = {k: {**per, "c": (per["c"][0], ~y)} if "c" in per else per for k, per in candidates.items()}
    assert module.leave_one_file_out(relabelled)[1]["c"] == ("sharp", "r")
