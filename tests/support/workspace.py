"""A Vigil workspace as a user has one (a git + DVC repository holding the code, dvc.yaml and
params), the commands run in it, and what the tests read back from its stores."""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from . import REPO
from .servers import prefect_env

VIGIL = str(Path(sys.executable).parent / "vigil")
DVC = str(Path(sys.executable).parent / "dvc")
CODE = ("components", "tasks", "flows", "vigil")  # the packages a workspace's stages run
SMALL = {
    "dataset": {
        "kind": "synthetic",
        "root": "data/raw/synthetic",
        "synthetic": {"seed": 0, "n_train": 800, "n_test": 1200, "n_anomalies": 8},
    },
    "detectors": {"zscore": {}, "pca": {"n_components": 0.9}},
    "registry": {"tracking_uri": "sqlite:///mlflow/mlflow.db", "artifact_root": "mlflow/artifacts"},
}


def sh(*cmd, cwd, check=True, env=None):
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def full(params: dict) -> dict:
    """params with every default written out, as dvc.yaml's params sections need them all."""
    from vigil.config import parse_config

    return parse_config(params).model_dump(mode="json")


def make_workspace(root: Path, params: dict) -> Path:
    """A fresh git + DVC repository holding Vigil's code, dvc.yaml and the given params."""
    ws = root / "ws"
    ws.mkdir()
    for d in CODE:
        shutil.copytree(REPO / d, ws / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", ws / "dvc.yaml")
    (ws / "reports").mkdir()
    shutil.copy(REPO / "reports" / "dvc.yaml", ws / "reports" / "dvc.yaml")  # the long reports' stages
    (ws / ".gitignore").write_text("mlflow/\n__pycache__/\n")  # reports/ holds reports/dvc.yaml: not ignored
    (ws / "params.yaml").write_text(yaml.safe_dump(full(params)))
    sh("git", "init", "-q", cwd=ws)
    sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init", cwd=ws)
    sh(DVC, "init", "-q", cwd=ws)
    shutil.copy(REPO / ".dvcignore", ws / ".dvcignore")  # as a clone has it: bytecode is no stage dep
    sh("git", "add", "-A", cwd=ws)
    sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "vigil", cwd=ws)
    return ws


def vigil_env(ws: Path, **extra) -> dict:
    """The environment of a `vigil` command in ``ws``: its own Prefect home beside it, its flow
    runs reported to the Prefect API this test process shares (`prefect_env`)."""
    return prefect_env(ws.parent, **extra)


def vigil_run(ws: Path, *args, check=True):
    return sh(VIGIL, "run", *args, cwd=ws, check=check, env=vigil_env(ws))


def vigil_score(ws: Path, params: Path, *args, check=True, env=None):
    return sh(VIGIL, "score", "--params", str(params), *args, cwd=ws, check=check, env=vigil_env(ws, **(env or {})))


def mlflow_client(ws: Path):
    """MLflow pointed at the workspace's store, and a client of it."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{ws}/mlflow/mlflow.db")
    return mlflow, mlflow.MlflowClient()


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def lock_md5(ws: Path, stage: str, kind: str, path: str) -> str:
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    return next(e["md5"] for e in lock["stages"][stage][kind] if e["path"] == path)


def drop(frame: pd.DataFrame, landing: Path, source: str, name: str, fmt: str = "csv") -> Path:
    """A file arriving in the landing folder from ``source``."""
    folder = landing / source
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.{fmt}"
    frame.to_parquet(path) if fmt == "parquet" else frame.to_csv(path, index=False)
    return path


def table(url: str, name: str) -> pd.DataFrame:
    """A whole table of the store at ``url``."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_table(name, conn)
    finally:
        engine.dispose()


def fitted_champion(data, name: str = "vigil-concurrency"):
    """A real fitted detector (PCA) with its scaler and a threshold, as the registered pyfunc
    holds them, for scoring in-process without a registry."""
    from types import SimpleNamespace

    import numpy as np

    from components.detectors import get_detector
    from components.preprocessing import Scaler
    from tasks.scoring import Champion

    scaler = Scaler("minmax", 5.0).fit(data.train.to_numpy())
    det = get_detector("pca", n_components=0.9).fit(scaler.transform(data.train.to_numpy()))
    threshold = float(np.quantile(det.score(scaler.transform(data.train.to_numpy())), 0.97))
    model = SimpleNamespace(detector=det, scaler=scaler, features=list(data.features), threshold=threshold)
    return Champion(name, "1", model)


def write_series_csv(path, seed: int) -> None:
    """A synthetic series as one CSV (train half first, then test), with a constant metric."""
    import numpy as np

    from components.datasets import make_synthetic

    d = make_synthetic(seed=seed, n_train=600, n_test=600, n_metrics=4, n_anomalies=6, period=48)
    frame = pd.concat([d.train, d.test], ignore_index=True)
    frame.insert(0, "timestamp", pd.date_range("2026-01-01", periods=len(frame), freq="min").astype(str))
    frame["flat"] = 1.0  # constant in train: PyOD's PCA, left to its default, divides by its zero variance
    frame["label"] = np.r_[np.zeros(len(d.train), dtype=np.int8), d.labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


BENCH = {  # two tiny synthetic series under bench/ as the benchmark's datasets (tests of the benchmark)
    "detectors": {
        "zscore": {},
        "pca": {"n_components": 2},
        "knn": {"n_neighbors": 3},
        "ensemble": {"members": ["zscore", "pca"]},
        "lstm_ae": {"window": 5, "hidden": 8, "epochs": 1, "device": "cpu"},
    },
    "registry": {"tracking_uri": "sqlite:///mlflow/mlflow.db", "artifact_root": "mlflow/artifacts"},
    "benchmark": {
        "datasets": {
            "smd": {"kind": "csv", "root": "bench/ops"},
            "msl": {"kind": "csv", "root": "bench/grid", "detectors": {"pca": {"n_components": 1}}},  # its own
            "nab": {"kind": "csv", "root": "bench/empty"},
            "skab": {"kind": "csv", "root": "bench/empty"},  # reports/dvc.yaml's deps name all four roots
        },
        "peers": ["pyod_iforest", "pyod_pca"],
        "plots": 1,
        "torch_threads": 1,  # one, as every test process runs (Makefile: TEST_ENV)
    },
}
