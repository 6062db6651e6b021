import numpy as np
import pandas as pd
import pytest

from components.datasets import (
    Anomaly,
    DataError,
    list_smd_machines,
    load_csv,
    load_nab,
    load_smd,
    load_telemanom,
    make_synthetic,
)
from components.datasets.synthetic import anomaly_kinds

# --- synthetic -----------------------------------------------------------------------------


def test_synthetic_is_seeded_and_labelled():
    a, b = (
        make_synthetic(seed=3, n_train=800, n_test=1000, n_anomalies=10),
        make_synthetic(seed=3, n_train=800, n_test=1000, n_anomalies=10),
    )
    pd.testing.assert_frame_equal(a.test, b.test)
    assert not make_synthetic(seed=4, n_train=800, n_test=1000, n_anomalies=10).test.equals(a.test)
    assert a.train.shape == (800, 12)
    assert a.test.shape == (1000, 12)
    assert a.labels.dtype == np.int8
    assert set(np.unique(a.labels)) == {0, 1}
    assert len(a.causes) == 10
    # labels are exactly the union of the anomalies, and each names its metrics
    mask = np.zeros(1000, bool)
    for c in a.causes:
        mask[c.start : c.end] = True
        assert c.metrics
    assert np.array_equal(mask, a.labels.astype(bool))
    kinds = anomaly_kinds(10)
    faults = [c for c, k in zip(a.causes, kinds) if k == "correlated_fault"]
    assert faults
    assert all(len(c.metrics) >= 2 for c in faults)
    assert set(kinds) == {"spike", "level_shift", "drift", "variance_burst", "correlated_fault"}


def test_synthetic_metrics_within_a_group_are_correlated():
    d = make_synthetic(seed=0, n_train=2000, n_test=400, n_anomalies=2)
    corr = d.train.corr()
    assert corr.loc["cpu_user", "cpu_system"] > 0.8
    assert corr.loc["net_in", "net_out"] > 0.8


# --- SMD official layout -------------------------------------------------------------------


def _write_smd(root, machine="machine-1-1", n=50, f=4, interp="10-14:1,3\n30-31:2\n"):
    for sub in ("train", "test", "test_label", "interpretation_label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savetxt(root / "train" / f"{machine}.txt", rng.random((n, f)), delimiter=",", fmt="%.4f")
    np.savetxt(root / "test" / f"{machine}.txt", rng.random((n, f)), delimiter=",", fmt="%.4f")
    labels = np.zeros(n, int)
    labels[10:15] = 1
    labels[30:32] = 1
    np.savetxt(root / "test_label" / f"{machine}.txt", labels, fmt="%d")
    (root / "interpretation_label" / f"{machine}.txt").write_text(interp)


def test_smd_layout_is_read_with_causes(tmp_path):
    _write_smd(tmp_path)
    _write_smd(tmp_path, "machine-1-10")
    _write_smd(tmp_path, "machine-1-2")
    assert list_smd_machines(tmp_path) == ["machine-1-1", "machine-1-2", "machine-1-10"]
    d = load_smd(tmp_path, "machine-1-1")
    assert d.train.shape == (50, 4)
    assert d.test.shape == (50, 4)
    # 1-based metrics become 0-based; inclusive end becomes exclusive
    assert d.causes == [Anomaly(10, 15, (0, 2)), Anomaly(30, 32, (1,))]
    assert d.labels.sum() == 7


def test_smd_malformed_files_name_file_and_line(tmp_path):
    _write_smd(tmp_path)
    test_file = tmp_path / "test" / "machine-1-1.txt"
    lines = test_file.read_text().splitlines()
    lines[7] = lines[7] + ",0.5"
    test_file.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"test/machine-1-1.txt: line 8 has 5 values, expected 4"):
        load_smd(tmp_path, "machine-1-1")
    _write_smd(tmp_path, interp="10-14:1,3\n30:2\n")
    with pytest.raises(DataError, match=r"interpretation_label/machine-1-1.txt: line 2 is not 'start-end"):
        load_smd(tmp_path, "machine-1-1")
    _write_smd(tmp_path, interp="10-14:1,9\n")
    with pytest.raises(DataError, match=r"line 1: metric numbers must be 1..4"):
        load_smd(tmp_path, "machine-1-1")


def test_smd_bad_labels_and_nan(tmp_path):
    _write_smd(tmp_path)
    (tmp_path / "test_label" / "machine-1-1.txt").write_text("0\n2\n" + "0\n" * 48)
    with pytest.raises(DataError, match=r"test_label/machine-1-1.txt: labels must be 0 or 1.*lines \[2\]"):
        load_smd(tmp_path, "machine-1-1")
    _write_smd(tmp_path)
    p = tmp_path / "train" / "machine-1-1.txt"
    lines = p.read_text().splitlines()
    lines[3] = "nan,1,inf,2"
    p.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"train/machine-1-1.txt: 2 NaN or infinite values.*lines \[4\]"):
        load_smd(tmp_path, "machine-1-1")


def test_real_smd_machine(smd_root):
    machines = list_smd_machines(smd_root)
    assert machines, f"no machine in {smd_root}"
    d = load_smd(smd_root, machines[0])  # shared/data holds machine-1-2 ... machine-1-8
    assert d.train.shape[1] == 38
    assert d.test.shape[1] == 38
    assert 0 < d.labels.mean() < 0.5
    assert d.causes
    assert all(c.metrics for c in d.causes)
    covered = d.cause_mask().any(axis=1)
    # interpretation ranges sit on labelled steps
    assert d.labels[covered].mean() > 0.95


# --- telemanom (MSL) -----------------------------------------------------------------------


def test_real_msl_channel_c1(msl_root):
    d = load_telemanom(msl_root, "C-1")
    assert d.train.shape == (2158, 55)
    assert d.test.shape == (2264, 55)
    # labeled_anomalies.csv: [[550, 750], [2100, 2210]], inclusive
    assert d.causes == [Anomaly(550, 751, (0,)), Anomaly(2100, 2211, (0,))]
    assert d.labels.sum() == 201 + 111


def test_telemanom_unknown_channel(msl_root):
    with pytest.raises(DataError, match="no row for channel 'Z-9'|Z-9.npy: file not found"):
        load_telemanom(msl_root, "Z-9")


# --- NAB -----------------------------------------------------------------------------------


def test_real_nab_series(nab_root):
    d = load_nab(nab_root, "realKnownCause/machine_temperature_system_failure")
    assert d.n_features == 1
    assert len(d.train) + len(d.test) == 22695
    assert d.labels[: len(d.test)].sum() > 0
    assert len(d.causes) == 4
    assert len(d.train) <= int(0.15 * 22695)
    d = load_nab(nab_root, "realAWSCloudwatch/ec2_cpu_utilization_825cc2")
    assert len(d.train) == int(0.15 * 4032)
    assert len(d.causes) == 1
    # the window 2014-04-15 07:24 .. 2014-04-16 11:54 (inclusive), sampled every 5 minutes
    w = d.test.index[d.labels == 1]
    assert w.min() >= pd.Timestamp("2014-04-15 07:24")
    assert w.max() <= pd.Timestamp("2014-04-16 11:54")


# --- SKAB ----------------------------------------------------------------------------------


def test_real_skab_experiments_under_both_protocols(skab_root):
    from components.datasets.skab import SENSORS, list_skab_series, load_skab

    names = list_skab_series(skab_root)
    assert names[:3] == ["valve1/0", "valve1/1", "valve1/2"] and "valve1/10" in names  # numeric order
    assert not [n for n in names if n.startswith("anomaly-free")]
    d = load_skab(skab_root, "valve1/0")  # SKAB's protocol: the first 400 rows are train
    raw = pd.read_csv(skab_root / "valve1/0.csv", sep=";")
    assert len(d.train) == 400 and len(d.test) == len(raw) - 400
    assert list(d.train.columns) == SENSORS
    np.testing.assert_array_equal(d.labels, raw["anomaly"].to_numpy()[400:])
    assert len(d.causes) == 1
    free = load_skab(skab_root, "valve1/0", train="anomaly_free")
    assert len(free.train) == len(pd.read_csv(skab_root / "anomaly-free/anomaly-free.csv", sep=";"))
    assert len(free.test) == len(raw)


def test_skab_bad_files_name_file_column_and_line(tmp_path):
    from components.datasets.skab import COLUMNS, load_skab

    (tmp_path / "valve1").mkdir()
    rows = [";".join([f"2020-03-09 10:14:{i:02d}"] + ["1.0"] * 8 + ["0", "0"]) for i in range(10)]
    good = ";".join(COLUMNS) + "\n" + "\n".join(rows) + "\n"
    (tmp_path / "valve1/0.csv").write_text(good.replace("2020-03-09 10:14:05;1.0", "2020-03-09 10:14:05;x"))
    with pytest.raises(DataError, match=r"valve1/0.csv: .*Accelerometer1RMS.*lines \[7\]"):
        load_skab(tmp_path, "valve1/0", train_rows=4)
    (tmp_path / "valve1/0.csv").write_text(good.replace("1.0;0;0\n2020-03-09 10:14:02", "1.0;1;0\n2020-03-09 10:14:02"))
    with pytest.raises(DataError, match="an anomaly at file line 3 lies in the first 4 rows"):
        load_skab(tmp_path, "valve1/0", train_rows=4)
    with pytest.raises(DataError, match="leads outside"):
        load_skab(tmp_path, "../valve1/0")


# --- CSV -----------------------------------------------------------------------------------


def _csv(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_loads_with_labels(tmp_path):
    rows = "\n".join(f"2026-01-01 00:{i:02d}:00,{i},{2 * i},{int(i in (7, 8))}" for i in range(12))
    d = load_csv(_csv(tmp_path, "timestamp,cpu,mem,label\n" + rows), train_fraction=0.5)
    assert d.features == ["cpu", "mem"]
    assert len(d.train) == 6
    assert len(d.test) == 6
    assert d.labels.tolist() == [0, 1, 1, 0, 0, 0]
    assert d.causes == [Anomaly(1, 3, ())]


@pytest.mark.parametrize(
    "text, message",
    [
        ("timestamp,cpu\n2026-01-01,1\n2026-01-02,2,3\n", r"t.csv: ragged or malformed CSV"),
        (
            "timestamp,cpu\n2026-01-01,1\n2026-01-02,nan\n2026-01-03,1\n",
            r"t.csv: NaN or infinite values in column\(s\) \['cpu'\]; file lines \[3\]",
        ),
        (
            "timestamp,cpu\n2026-01-01,1\n2026-01-02,inf\n2026-01-03,1\n",
            r"t.csv: NaN or infinite values in column\(s\) \['cpu'\]",
        ),
        (
            "timestamp,cpu\n2026-01-01,1\n2026-01-02,high\n2026-01-03,1\n",
            r"t.csv: column 'cpu' is not numeric; file lines \[3\]",
        ),
        (
            "timestamp,cpu\n2026-01-02,1\n2026-01-01,2\n2026-01-03,1\n",
            r"t.csv: column 'timestamp' is not strictly increasing at file lines \[3\]",
        ),
        ("time,cpu\n2026-01-01,1\n", r"t.csv: time column 'timestamp' is missing"),
        (
            "timestamp,cpu,label\n2026-01-01,1,0\n2026-01-02,1,0\n2026-01-03,1,2\n2026-01-04,1,0\n",
            r"t.csv column 'label'.*0 or 1",
        ),
    ],
)
def test_csv_bad_input_names_file_column_rows(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        load_csv(_csv(tmp_path, text))
