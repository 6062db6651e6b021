import json
import subprocess
import sys

from conftest import REPO

SMALL = """
dataset:
  kind: synthetic
  synthetic: {seed: 2, n_train: 600, n_test: 900, n_anomalies: 9}
detectors:
  zscore: {}
  pca: {n_components: 0.9}
"""


def _vigil(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_run_prints_table_and_writes_metrics(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(SMALL)
    out = _vigil("run", "--params", str(params), "--metrics", str(tmp_path / "m.json"))
    assert out.returncode == 0, out.stderr
    assert "synthetic/seed2" in out.stdout and "F1 point" in out.stdout and "VUS-PR" in out.stdout
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics) == {"zscore", "pca"}
    assert 0 < metrics["zscore"]["point_f1"] <= 1 and 0 < metrics["pca"]["auc_pr"] <= 1


def test_bad_params_are_named(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("dataset: {kind: synthetic, sinthetic: {}}\ndetectors: {lstm9: {}}\nthreshold: {method: magic}\n")
    out = _vigil("run", "--params", str(params))
    assert out.returncode == 2
    assert "dataset.sinthetic: Extra inputs are not permitted" in out.stderr
    assert "unknown detector(s) ['lstm9']" in out.stderr
    assert "threshold.method" in out.stderr


def test_bad_data_is_named(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("timestamp,cpu\n2026-01-01,1\n2026-01-02,nan\n2026-01-03,1\n2026-01-04,1\n")
    params = tmp_path / "p.yaml"
    params.write_text(f"dataset: {{kind: csv, csv: {{path: {csv}}}}}\n")
    out = _vigil("run", "--params", str(params))
    assert out.returncode == 2 and "t.csv: NaN or infinite values in column(s) ['cpu']" in out.stderr
