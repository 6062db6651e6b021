import subprocess
import sys

from conftest import REPO


def test_import_mlflow_reaches_the_installed_package():
    # Run from the repo root, where a stray mlflow/__init__.py would shadow the package.
    out = subprocess.run([sys.executable, "-c", "import mlflow; print(mlflow.__file__); print(mlflow.__version__)"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert "site-packages" in out[0]
    assert out[1].startswith("3.")
    assert not (REPO / "mlflow" / "__init__.py").exists()
    assert not (REPO / "mlflow" / "mlflow.py").exists()


def test_components_import_no_orchestration_libraries():
    code = (
        "import sys, components.datasets, components.preprocessing, components.detectors, "
        "components.thresholds, components.metrics, components.attribution, components.evaluation\n"
        "bad = [m for m in ('prefect', 'mlflow', 'dvc', 'great_expectations') if m in sys.modules]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
