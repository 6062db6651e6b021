"""The Great Expectations suites on real and broken raw files (real GX, no mocks)."""

from pathlib import Path

import numpy as np
import pytest

from components.datasets import DatasetSource, make_synthetic, raw_tables, write_synthetic_layout
from tasks.validation import validate_tables


def _problems(report):
    return [(p["file"].rsplit("/", 1)[-1], p["expectation"], p["column"], p["rows"]) for p in report["problems"]]


def _tables(kind, root, name, **options):
    return raw_tables(DatasetSource(kind, Path(root), name, options))


def test_synthetic_layout_passes_and_broken_copies_fail(tmp_path):
    write_synthetic_layout(make_synthetic(n_train=300, n_test=400, n_anomalies=4), tmp_path)
    assert validate_tables(_tables("synthetic", tmp_path, "synthetic"), 50)["success"]
    test = (tmp_path / "test.csv").read_text().splitlines()
    head = test[0].split(",")
    row = test[4].split(",")
    row[head.index("disk_read")] = "inf"
    row[head.index("label")] = "3"
    test[4] = ",".join(row)
    test[9] = test[9].replace(test[9].split(",")[0], "2025-01-01 00:00:00")  # time goes back
    (tmp_path / "test.csv").write_text("\n".join(test) + "\n")
    report = validate_tables(_tables("synthetic", tmp_path, "synthetic"), 50)
    problems = _problems(report)
    assert not report["success"]
    assert ("test.csv", "expect_column_values_to_be_between", "disk_read", [3]) in problems
    assert ("test.csv", "expect_column_values_to_be_in_set", "label", [3]) in problems
    assert any(p[1] == "expect_column_values_to_be_increasing" and p[2] == "timestamp" for p in problems)


def test_csv_with_nan_and_too_few_rows(tmp_path):
    (tmp_path / "t.csv").write_text("timestamp,cpu\n2026-01-01,1\n2026-01-02,\n2026-01-03,1\n")
    problems = _problems(validate_tables(_tables("csv", tmp_path, "t.csv"), 50))
    assert ("t.csv", "expect_column_values_to_not_be_null", "cpu", [1]) in problems
    assert any(p[1] == "expect_table_row_count_to_be_between" for p in problems)


def test_smd_layout_problems(tmp_path):
    for sub in ("train", "test", "test_label"):
        (tmp_path / sub).mkdir()
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "train" / "machine-1-1.txt", rng.random((60, 38)), delimiter=",")
    np.savetxt(tmp_path / "test" / "machine-1-1.txt", rng.random((60, 37)), delimiter=",")  # a metric missing
    np.savetxt(tmp_path / "test_label" / "machine-1-1.txt", np.zeros(59), fmt="%d")  # one label short
    problems = _problems(validate_tables(_tables("smd", tmp_path, "machine-1-1"), 50))
    assert ("machine-1-1.txt", "expect_table_columns_to_match_ordered_list", None, []) in problems
    assert ("machine-1-1.txt", "expect_table_row_count_to_equal", None, []) in problems


def test_real_nab_and_msl_pass(nab_root, msl_root):
    # NAB's machine_temperature_system_failure has one clock step back: tolerated (0.1%), not hidden
    tables = _tables("nab", nab_root, "realKnownCause/machine_temperature_system_failure")
    assert validate_tables(tables, 50)["success"]
    assert validate_tables(_tables("telemanom", msl_root, "C-1"), 50)["success"]


@pytest.mark.parametrize("value_range, ok", [((None, None), True), ((0.0, 1.0), True), ((0.0, 0.5), False)])
def test_configured_value_range(tmp_path, value_range, ok):
    write_synthetic_layout(make_synthetic(n_train=300, n_test=400, n_anomalies=4, n_metrics=2), tmp_path)
    for name in ("train.csv", "test.csv"):
        p = tmp_path / name
        lines = p.read_text().splitlines()
        p.write_text(
            "\n".join([lines[0]] + [",".join([r.split(",")[0], "0.7", "0.2", *r.split(",")[3:]]) for r in lines[1:]])
            + "\n"
        )
    assert validate_tables(_tables("synthetic", tmp_path, "synthetic"), 50, *value_range)["success"] is ok


def test_a_test_set_shorter_than_a_window_names_the_file(tmp_path):
    from components.datasets import DataError
    from tasks.data import prepare_data
    from vigil.config import parse_config

    cfg = parse_config(
        {
            "dataset": {"kind": "synthetic", "root": str(tmp_path / "raw")},
            "detectors": {"zscore": {}, "lstm_ae": {"window": 50}},
        }
    )
    write_synthetic_layout(make_synthetic(n_train=300, n_test=100, n_anomalies=2), tmp_path / "raw")
    p = cfg.preprocessing
    with pytest.raises(
        DataError, match=r"raw/test.csv: the validation head has 30 rows, shorter than lstm_ae's window of 50"
    ):
        prepare_data.fn(
            cfg.dataset.source(),
            scaler=p.scaler,
            clip=p.clip,
            validation_fraction=p.validation_fraction,
            detectors=cfg.detectors,
            raw_md5="md5",
            out_dir=tmp_path / "processed",
        )
    assert not (tmp_path / "processed").exists()


def test_one_csv_file_with_a_label_column_validates(tmp_path):
    (tmp_path / "one.csv").write_text(
        "timestamp,cpu,label\n" + "".join(f"2026-01-01 00:{i:02d}:00,{i % 7},{int(i == 40)}\n" for i in range(60))
    )
    tables = _tables("csv", tmp_path, "one.csv")
    assert tables[0].columns == ["timestamp", "cpu", "label"]
    assert validate_tables(tables, 50)["success"]
