import math

import numpy as np
import pytest

from components.metrics import (
    affiliation_prf,
    auc_pr,
    auc_roc,
    buffered_labels,
    event_f1,
    point_adjust,
    point_prf,
    range_auc_pr,
    vus_pr,
)

# ten steps, two true segments: [2, 5) and [7, 9)
Y = np.array([0, 0, 1, 1, 1, 0, 0, 1, 1, 0])


def test_point_prf_by_hand():
    p = np.array([0, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    assert point_prf(Y, p) == pytest.approx((0.5, 0.2, 2 * 0.5 * 0.2 / 0.7))
    assert point_prf(Y, np.zeros(10, int)) == (0.0, 0.0, 0.0)


def test_point_adjust_inflates_f1():
    p = np.array([0, 0, 0, 1, 0, 1, 0, 0, 1, 0])  # one hit in each segment, one false alarm
    adj = point_adjust(Y, p)
    assert adj.tolist() == [0, 0, 1, 1, 1, 1, 0, 1, 1, 0]
    raw, pa = point_prf(Y, p)[2], point_prf(Y, adj)[2]
    assert raw == pytest.approx(2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5))  # 0.5
    assert pa == pytest.approx(2 * (5 / 6) * 1 / (5 / 6 + 1))  # 0.909: the same detector, "better"
    # the well-known failure: random flags on 10% of steps score high once adjusted
    rng = np.random.default_rng(0)
    y = np.zeros(10_000, int)
    for s in range(0, 10_000, 1000):
        y[s + 500 : s + 700] = 1
    rnd = (rng.random(10_000) < 0.1).astype(int)
    assert point_prf(y, rnd)[2] < 0.2 < 0.5 < point_prf(y, point_adjust(y, rnd))[2]


def test_event_f1_composite_by_hand():
    p = np.array([0, 0, 0, 1, 0, 1, 0, 0, 0, 0])  # hits segment 1 only, one false alarm
    prec, rec, f1 = event_f1(Y, p)
    assert (prec, rec) == (0.5, 0.5)
    assert f1 == pytest.approx(0.5)


def test_affiliation_by_hand():
    y = np.zeros(10, int)
    y[4:6] = 1
    assert affiliation_prf(y, y) == (1.0, 1.0, 1.0)
    # one prediction at step 0 (interval [0, 1)) against truth [4, 6) on zone [0, 10]:
    # precision = int_0^1 2x/10 dx = 0.1
    # recall = (int_4^5.5 (12 - 2y)/10 dy + int_5.5^6 1/10 dy) / 2 = (0.375 + 0.05) / 2
    p = np.zeros(10, int)
    p[0] = 1
    prec, rec, f1 = affiliation_prf(y, p)
    assert prec == pytest.approx(0.1)
    assert rec == pytest.approx(0.2125)
    assert f1 == pytest.approx(2 * 0.1 * 0.2125 / 0.3125)
    # no prediction: recall 0, precision undefined
    prec, rec, f1 = affiliation_prf(y, np.zeros(10, int))
    assert math.isnan(prec)
    assert rec == 0.0
    assert math.isnan(f1)


def test_affiliation_rewards_closeness_and_splits_zones():
    y = np.zeros(100, int)
    y[20:25] = 1
    y[70:75] = 1
    near, far = np.zeros(100, int), np.zeros(100, int)
    near[[26, 76]] = 1
    far[[40, 90]] = 1
    assert affiliation_prf(y, near)[0] > affiliation_prf(y, far)[0]
    assert affiliation_prf(y, near)[1] > affiliation_prf(y, far)[1]
    # predicting only the second event: recall averages a perfect zone with an empty one
    p = np.zeros(100, int)
    p[70:75] = 1
    assert affiliation_prf(y, p) == pytest.approx((1.0, 0.5, 2 / 3))


def test_auc_scores():
    y = np.array([0, 0, 1, 1])
    assert auc_roc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    # worst ranking: positives at ranks 3 and 4, AP = (1/3 + 2/4) / 2
    assert auc_pr(y, [0.9, 0.8, 0.2, 0.1]) == pytest.approx(5 / 12)
    with pytest.raises(ValueError, match="both classes"):
        auc_pr(np.zeros(4, int), [0.1, 0.2, 0.3, 0.4])


def test_vus_buffer_and_lag_tolerance():
    soft = buffered_labels(Y, 4)  # ramps of 2 steps: sqrt(1 - 1/4), sqrt(1 - 2/4)
    assert soft[2:5].tolist() == [1, 1, 1]
    assert soft[1] == pytest.approx(np.sqrt(0.75))
    assert soft[0] == pytest.approx(np.sqrt(0.5))
    assert soft[5] == pytest.approx(min(1.0, np.sqrt(0.75) + np.sqrt(0.5)))  # between the two ranges
    # a perfect scorer gets 1 without a buffer
    assert range_auc_pr(Y, Y.astype(float), 0) == pytest.approx(1.0)
    # a scorer one step late: range-based PR credits it once a buffer exists, VUS averages over buffers
    y = np.zeros(200, int)
    y[50:60] = 1
    y[150:160] = 1
    late = np.roll(y, 3).astype(float)
    assert range_auc_pr(y, late, 0) < range_auc_pr(y, late, 10)
    assert auc_pr(y, late) < vus_pr(y, late, 10)
    assert vus_pr(y, y.astype(float), 0) == pytest.approx(1.0)
    rnd = np.random.default_rng(0).random(200)
    assert vus_pr(y, rnd, 10) < vus_pr(y, late, 10)
