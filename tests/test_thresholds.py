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
