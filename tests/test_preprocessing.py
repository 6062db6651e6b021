import numpy as np
import pytest

from components.datasets import make_synthetic
from components.preprocessing import Scaler, split_validation


def test_scaler_fits_on_train_only_and_clips():
    train = np.array([[0.0, 5.0], [10.0, 5.0]])
    test = np.array([[5.0, 5.0], [1000.0, 6.0], [-1000.0, 4.0]])
    s = Scaler("minmax", clip=2.0).fit(train)
    z = s.transform(test)
    assert z[0, 0] == pytest.approx(0.5)
    assert z[1, 0] == pytest.approx(3.0)
    assert z[2, 0] == pytest.approx(-2.0)  # clipped to [-2, 1 + 2]
    assert z[1, 1] == pytest.approx(1.0)  # constant in train: scale 1, the deviation stays visible
    st = Scaler("standard", clip=None).fit(train)
    assert np.allclose(st.transform(train)[:, 0], [-1, 1])
    assert st.transform(test)[1, 0] == pytest.approx((1000 - 5) / 5)


def test_scaler_rejects_unknown_kind_and_shape():
    with pytest.raises(ValueError, match="unknown scaler 'robust'"):
        Scaler("robust")
    s = Scaler().fit(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="fitted on 3 metrics, got 2"):
        s.transform(np.zeros((4, 2)))


def test_split_validation_cuts_in_time_order():
    d = make_synthetic(n_train=500, n_test=1000, n_anomalies=10)
    val, test = split_validation(d, 0.3)
    assert len(val.test) == 300
    assert len(test.test) == 700
    assert val.test.index[-1] < test.test.index[0]
    assert np.array_equal(np.r_[val.labels, test.labels], d.labels)
    for part in (val, test):  # causes re-indexed onto each part and still on labelled steps
        for a in part.causes:
            assert part.labels[a.start : a.end].all()
    assert sum(a.end - a.start for a in val.causes + test.causes) == d.labels.sum()
