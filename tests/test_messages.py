"""Errors a user causes: one paragraph naming file, line (as the user counts lines in the file)
and column, exit code 3, no traceback unless --debug."""

from __future__ import annotations

import numpy as np
import pytest
from support.workspace import make_workspace, vigil_run


def _csv(path, n=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = ["timestamp,cpu,mem"] + [
        f"2026-01-01 {i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d},{rng.random():.3f},{rng.random():.3f}"
        for i in range(n)
    ]
    return rows


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("messages")
    return root, make_workspace(root, {"detectors": {"zscore": {}}})


def _run(ws, params: str, *extra):
    (ws / "bad.yaml").write_text(params)
    return vigil_run(ws, "--params", "bad.yaml", "--new-data-version", *extra, check=False)


@pytest.mark.slow
def test_a_ragged_csv_row_names_file_and_line(workspace):
    root, ws = workspace
    rows = _csv(None)
    rows[50] += ",7"  # file line 51 has one field too many
    (root / "raw1").mkdir()
    (root / "raw1" / "node.csv").write_text("\n".join(rows) + "\n")
    out = _run(ws, f"dataset: {{kind: csv, root: {root / 'raw1'}, name: node.csv, min_rows: 10}}\n")
    assert out.returncode == 3
    assert f"{root / 'raw1' / 'node.csv'}: ragged or malformed CSV" in out.stderr
    assert "Expected 3 fields in line 51, saw 4" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3


@pytest.mark.slow
def test_a_non_numeric_cell_names_column_and_line(workspace):
    root, ws = workspace
    rows = _csv(None)
    rows[120] = rows[120].rsplit(",", 1)[0] + ",high"  # file line 121, column mem
    (root / "raw2").mkdir()
    (root / "raw2" / "node.csv").write_text("\n".join(rows) + "\n")
    out = _run(ws, f"dataset: {{kind: csv, root: {root / 'raw2'}, name: node.csv, min_rows: 10}}\n")
    assert out.returncode == 3
    assert "node.csv: expect_column_values_to_be_in_type_list, column 'mem', lines [121]" in out.stderr
    assert "Traceback" not in out.stderr
    debug = _run(ws, f"dataset: {{kind: csv, root: {root / 'raw2'}, name: node.csv, min_rows: 10}}\n", "--debug")
    assert "Traceback" in debug.stderr  # --debug shows it


def test_an_smd_line_with_39_values_names_file_and_line(workspace):
    root, ws = workspace
    rng = np.random.default_rng(1)
    smd = root / "smd"
    for role in ("train", "test", "test_label"):
        (smd / role).mkdir(parents=True)
    for role in ("train", "test"):
        lines = [",".join(f"{v:.6f}" for v in rng.random(38)) for _ in range(100)]
        if role == "test":
            lines[50] += ",0.5"  # line 51: 39 values
        (smd / role / "machine-9-9.txt").write_text("\n".join(lines) + "\n")
    (smd / "test_label" / "machine-9-9.txt").write_text("0\n" * 100)
    out = _run(ws, f"dataset: {{kind: smd, root: {smd}, name: machine-9-9, min_rows: 10}}\n")
    assert out.returncode == 3
    assert f"{smd / 'test' / 'machine-9-9.txt'}: ragged or malformed CSV" in out.stderr
    assert "Expected 38 fields in line 51, saw 39" in out.stderr
    assert "Traceback" not in out.stderr
