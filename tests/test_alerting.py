"""Alert rules: smoothing, the threshold rules of the field, the nested choice, incidents and
their quality figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from components import metrics as M
from components.alerting import (
    EWMA_HALVINGS,
    RULES_NEED_LABELS,
    AlertCarry,
    AlertRule,
    Incident,
    group_incidents,
    incident_quality,
    smooth,
)
from components.evaluation import THRESHOLD_RULES, AlertSettings, choose_alert_rule, metric_suite, nested_scores
from components.thresholds import (
    best_event_f1_threshold,
    best_f1_threshold,
    dynamic_threshold,
    gauss_tail_threshold,
    pot_threshold,
)


def test_trailing_smoothing_reads_only_the_past_and_streams_like_one_pass():
    rng = np.random.default_rng(0)
    s = rng.random(200)
    halving = 0.5 ** (np.arange(7)[::-1] * EWMA_HALVINGS / 7)  # oldest .. newest of the window
    expected = {"mean": np.mean, "max": np.max, "ewma": lambda w: np.average(w, weights=halving[-len(w) :])}
    for kind in ("mean", "ewma", "max"):
        whole = smooth(s, kind, 7)
        assert whole[10] == pytest.approx(expected[kind](s[4:11]))
        assert whole[3] == pytest.approx(expected[kind](s[:4]))  # the first steps: the scores there are
        assert whole[0] == s[0]  # the first step has only itself
        # in two batches, the second given the first's last raw scores: the same values
        parts = np.concatenate([smooth(s[:90], kind, 7), smooth(s[90:], kind, 7, past=s[:90])])
        np.testing.assert_allclose(parts, whole)
    np.testing.assert_array_equal(smooth(s, "none", 7), s)
    with pytest.raises(ValueError, match="smoothing"):
        smooth(s, "median", 3)


def test_incidents_merge_gaps_under_merge_gap_and_raise_only_long_ones():
    flags = np.zeros(40, dtype=bool)
    flags[[2, 3, 4, 7, 8, 20, 30, 31, 32, 33]] = True
    scores = np.arange(40, dtype=float)
    # gap 2 (steps 5, 6) < 3: one incident; 20 alone; 30..33
    got = group_incidents(flags, scores, merge_gap=3, min_steps=2)
    assert got == [
        Incident(2, 8, 5, 8.0, True),
        Incident(20, 20, 1, 20.0, False),
        Incident(30, 33, 4, 33.0, True),
    ]
    assert len(group_incidents(flags, scores, merge_gap=1, min_steps=1)) == 4  # no merging
    assert group_incidents(np.zeros(5, bool), scores[:5], 3, 1) == []


def test_incident_quality_counts_pages_per_event_false_ones_and_delay():
    labels = np.zeros(1000, dtype=np.int8)
    labels[100:150] = 1
    labels[500:520] = 1
    labels[800:810] = 1  # missed
    incidents = [
        Incident(105, 110, 6, 1.0, True),  # two pages for the first event
        Incident(130, 140, 11, 1.0, True),
        Incident(495, 505, 11, 1.0, True),  # began before the second: detected at once
        Incident(700, 705, 6, 1.0, True),  # false
        Incident(900, 900, 1, 1.0, False),  # not raised: not counted
    ]
    q = incident_quality(labels, incidents, steps_per_day=500)
    assert (q.events, q.incidents, q.false, q.detected) == (3, 4, 1, 2)
    assert q.incidents_per_event == pytest.approx(3 / 2)
    assert q.event_recall == pytest.approx(2 / 3)
    assert q.event_precision == pytest.approx(3 / 4)
    assert q.false_per_day == pytest.approx(1 / 2)  # 1000 steps = 2 days
    assert q.time_to_detect == pytest.approx((5 + 0) / 2)


def test_best_event_f1_threshold_is_the_best_over_every_distinct_score():
    rng = np.random.default_rng(1)
    labels = np.zeros(400, dtype=np.int8)
    for a in (50, 200, 330):
        labels[a : a + 15] = 1
    scores = rng.random(400) + labels * rng.random(400)
    t, f1 = best_event_f1_threshold(scores, labels)
    brute = max(M.event_f1(labels, scores >= c)[2] for c in np.unique(scores))
    assert f1 == pytest.approx(brute)
    assert M.event_f1(labels, scores >= t)[2] == pytest.approx(f1)
    with pytest.raises(ValueError, match="no positive label"):
        best_event_f1_threshold(scores, np.zeros(400))


def test_dynamic_threshold_separates_a_clear_peak_and_prunes_weak_ones():
    rng = np.random.default_rng(2)
    s = rng.normal(1.0, 0.05, 2000)
    s[1000:1010] = 3.0  # a clear anomaly
    t = dynamic_threshold(s)
    assert 1.2 < t <= 3.0
    assert (s >= t).sum() == 10
    # a sequence barely above the normal peak is pruned (its peak is < 13% above the next)
    s2 = s.copy()
    s2[1500] = s[:1000].max() * 1.05
    flagged = s2 >= dynamic_threshold(s2)
    assert flagged[1000:1010].all() and not flagged[1500]


def test_gauss_tail_threshold_is_the_fitted_normals_quantile():
    x = np.random.default_rng(3).normal(5.0, 2.0, 100_000)
    assert gauss_tail_threshold(x, 1e-3) == pytest.approx(5.0 + 3.0902 * 2.0, rel=1e-2)


def _series(seed=0, n=2000, events=(300, 700, 1300, 1700)):
    """Noisy scores with events whose scores flicker above and below the noise."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.int8)
    for a in events:
        labels[a : a + 30] = 1
    scores = rng.gamma(2.0, 0.5, n) + labels * rng.choice([0.0, 4.0], n)
    return scores, labels


def test_nested_choice_never_sees_the_test_tail_and_says_how_it_chose():
    v, y = _series(0)
    cal = np.random.default_rng(9).gamma(2.0, 0.5, 500)
    settings = AlertSettings(merge_gap=10, min_steps=2)
    scored = nested_scores(v, y, cal, settings)
    assert set(scored) == {(r, s) for r in settings.rules for s in settings.smoothing}
    rule = choose_alert_rule(v, y, cal, settings)
    best = max(scored.values())
    assert "nested on the validation head" in rule.detail and f"{best:.3f}" in rule.detail
    assert not rule.label_free and (rule.merge_gap, rule.min_steps) == (10, 2)
    # flickering events: some smoothing is chosen, and it beats raw scores held out
    assert scored[(rule.rule.split(" on ")[0], (rule.smoothing, max(rule.window, 1)))] == best
    assert best >= scored[("best_f1", ("none", 1))]


def test_label_free_and_fallback_paths():
    v, y = _series(1)
    cal = np.random.default_rng(9).gamma(2.0, 0.5, 500)
    free = choose_alert_rule(v, np.zeros_like(y), cal, AlertSettings())
    assert free.label_free and free.rule.startswith("label-free: pot_train") and free.smoothing == "max"
    assert "no labelled anomaly in the validation split" in free.detail
    one_half = y.copy()
    one_half[len(y) // 2 :] = 0  # labels in the first half only: nothing to compare on
    fb = choose_alert_rule(v, one_half, cal, AlertSettings())
    assert fb.rule == "best_f1 on validation labels" and (fb.smoothing, fb.window) == ("max", 100)
    assert "do not both hold labels" in fb.detail
    forced = choose_alert_rule(v, y, cal, AlertSettings(method="dynamic"))
    assert forced.rule == "dynamic on validation scores" and forced.label_free
    # no held-out train-tail score at all (a tuned window longer than that tail: 6 NAB series'
    # tuned kmeans failed so): POT on the unlabelled head's own raw scores
    bare = choose_alert_rule(v, np.zeros_like(y), np.empty(0), AlertSettings())
    assert bare.label_free and bare.rule == "label-free: pot_validation on validation scores"
    assert "so pot on unlabelled validation-head scores (raw)" in bare.detail and np.isfinite(bare.threshold)
    assert bare.threshold == pytest.approx(pot_threshold(v, q=1e-3, level=0.98))
    # tied top scores (a spread's plateau) leave POT too few excesses: its start comes down
    plateau = np.concatenate([v, np.full(200, v.max())])
    tied = choose_alert_rule(plateau, np.zeros(len(plateau), dtype=np.int8), np.empty(0), AlertSettings())
    assert tied.rule == "label-free: pot_validation on validation scores" and np.isfinite(tied.threshold)


def test_every_rule_gives_a_finite_threshold():
    assert set(THRESHOLD_RULES) == set(RULES_NEED_LABELS)  # the config's names and the functions agree
    v, y = _series(2)
    cal = np.random.default_rng(9).gamma(2.0, 0.5, 500)
    for name, (_, fn) in THRESHOLD_RULES.items():
        assert math.isfinite(fn(v, y, cal, AlertSettings())), name


def test_metric_suite_measures_the_rule_retention_and_incidents():
    v, y = _series(3)
    t, labels = _series(4)
    cal = np.random.default_rng(9).gamma(2.0, 0.5, 500)
    rule = choose_alert_rule(v, y, cal, AlertSettings(merge_gap=10, min_steps=2))
    out = metric_suite(labels, t, rule, past_scores=v, steps_per_day=288)
    flags = rule.flags(t, v)
    assert out["point_f1"] == pytest.approx(M.point_prf(labels, flags)[2])
    best = max(out["oracle_point_f1"], best_f1_threshold(rule.smoothed(t, v), labels)[1])
    assert out["threshold_retention"] == pytest.approx(out["point_f1"] / best) and out["threshold_retention"] <= 1
    assert out["incidents"] == sum(i.raised for i in rule.incidents(t, v))
    assert out["incident_event_recall"] == 1.0 and out["incidents_per_event"] <= 1.5
    # threshold-free figures stay those of the raw scores
    assert out["vus_pr"] == pytest.approx(M.vus_pr(labels, t, 20))
    # a bare threshold is a rule without smoothing or merging
    bare = metric_suite(labels, t, 2.5)
    assert bare["point_f1"] == pytest.approx(M.point_prf(labels, t >= 2.5)[2])
    no_labels = metric_suite(np.zeros_like(labels), t, rule)
    assert math.isnan(no_labels["threshold_retention"]) and no_labels["incidents"] >= 0


def test_retention_is_over_the_best_f1_a_threshold_reaches_raw_or_smoothed():
    # an anomaly whose raw scores flicker: a trailing max of 2 fills it, so the rule's F1 (1.0)
    # is above the best any threshold reaches on the raw scores (0.667): retention stays 1
    labels = np.zeros(400, dtype=np.int8)
    labels[100:150] = 1
    raw = np.zeros(400)
    raw[::10] = 1.0  # noise spikes outside the anomaly
    raw[100:150:2] = 2.0
    rule = AlertRule(2.0, "max", 2, 10, 1, "test", False, "")
    out = metric_suite(labels, raw, rule)
    assert out["oracle_point_f1"] == pytest.approx(2 * 25 / (25 + 50))
    assert out["point_f1"] > out["oracle_point_f1"]
    best_smoothed = best_f1_threshold(rule.smoothed(raw), labels)[1]
    assert out["threshold_retention"] == pytest.approx(out["point_f1"] / best_smoothed)
    assert out["threshold_retention"] <= 1 and out["event_retention"] <= 1


def test_alert_rule_round_trips_and_refuses_bad_fields():
    rule = AlertRule(1.5, "max", 20, 10, 2, "best_f1 on validation labels", False, "why")
    assert AlertRule.from_dict(rule.to_dict()) == rule
    assert AlertRule.from_dict({"threshold": 2.0}) == AlertRule(2.0)  # a model saved before rules
    for bad in ({"threshold": float("nan")}, {"threshold": 1.0, "window": 0}, {"threshold": 1.0, "smoothing": "x"}):
        with pytest.raises(ValueError, match="alert rule"):
            AlertRule.from_dict(bad)
    with pytest.raises(ValueError, match="unknown field"):
        AlertRule.from_dict({"threshold": 1.0, "evil": 1})


@pytest.mark.parametrize("smoothing, window", [("none", 1), ("max", 7), ("mean", 5)])
def test_a_stream_in_any_batches_gets_the_incidents_of_one_pass(smoothing, window):
    rng = np.random.default_rng(5)
    raw = rng.random(600) ** 8 * 3  # sparse peaks: flags with gaps of every length
    rule = AlertRule(1.0, smoothing, window, merge_gap=6, min_steps=3)
    whole = rule.incidents(raw)
    assert len(whole) > 5
    for cuts in ([300], [1, 2, 3, 250, 251, 599], sorted(rng.choice(np.arange(1, 600), 40, replace=False))):
        carry, found, alert = AlertCarry(), {}, []
        open_id = None
        for lo, hi in zip([0, *cuts], [*cuts, 600]):
            a, flags, groups, carry = carry.advance(raw[lo:hi], rule)
            alert.append(a)
            for g in groups:
                start = open_id if g.continued else lo + int(g.flagged[0])
                found[start] = (start, lo + int(g.flagged[-1]), g.span)
                open_id = start
            if carry.quiet is None:
                open_id = None
        np.testing.assert_allclose(np.concatenate(alert), rule.smoothed(raw))
        got = [(a, b, span >= rule.min_steps) for a, b, span in found.values()]
        assert got == [(i.start, i.end, i.raised) for i in whole]
        assert all(span == b - a + 1 for a, b, span in found.values())
    # JSON round trip of the carry (the store keeps it between files)
    assert AlertCarry.from_json(carry.to_json()) == carry
