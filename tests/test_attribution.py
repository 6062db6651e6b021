import math

import numpy as np
import pytest

from components.attribution import hit_rate
from components.datasets import Anomaly


def test_hit_rate_by_hand():
    c = np.array(
        [
            [0.5, 0.3, 0.1, 0.1],  # step 0: causes {0, 2}; top-2 = {0, 1} -> 1/2; top-3 = {0, 1, 2} -> 1
            [0.1, 0.2, 0.3, 0.4],  # step 1: causes {0, 2}; top-2 = {3, 2} -> 1/2; top-3 = {3, 2, 1} -> 1/2
            [0.7, 0.1, 0.1, 0.1],  # step 2: cause {0}; top-1 = {0} -> 1
        ]
    )
    causes = [Anomaly(0, 2, (0, 2)), Anomaly(2, 3, (0,))]
    assert hit_rate(c, causes, 1.0) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    # @150%: floor(1.5 * 2) = 3 metrics for the first, floor(1.5) = 1 for the second
    assert hit_rate(c, causes, 1.5) == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert math.isnan(hit_rate(c, [Anomaly(0, 2, ())]))
    with pytest.raises(ValueError, match="runs past"):
        hit_rate(c, [Anomaly(0, 5, (1,))])


def test_evaluate_reports_hitrate_only_where_it_can_tell_detectors_apart():
    from components.evaluation import metric_suite

    labels = np.array([0, 0, 1, 1, 0, 0], dtype=np.int8)
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.1, 0.3])
    causes = [Anomaly(2, 4, (0,))]
    two = metric_suite(labels, scores, 0.5, contributions=np.tile([0.7, 0.3], (6, 1)), causes=causes, vus_window=1)
    assert two["hitrate_100"] == 1.0
    # one metric: every detector would score HitRate 1, so it is left out rather than reported
    one = metric_suite(labels, scores, 0.5, contributions=np.ones((6, 1)), causes=causes, vus_window=1)
    assert "hitrate_100" not in one
    assert "hitrate_150" not in one
