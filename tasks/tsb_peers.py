"""The benchmark's second family of peers: TSB-AD's own implementations of the leaderboard's
methods (Liu & Paparrizos, NeurIPS 2024; the `tsb-ad` 1.5 package), with TSB-AD's optimal
multivariate hyper-parameters. TSB-AD needs numpy<2, which Vigil's environment cannot hold, so
the peers run in their own virtual environment (``.vigil/peers/tsb-ad``, made from
``tasks/tsb_ad/requirements.txt`` by the first benchmark that needs it) as a subprocess
(``tasks/tsb_ad/runner.py``) on the exact arrays of each prepared series, scores back as
``.npy``.

Protocol, as for every cell: fitted on train (its head; the last 10% is held out and scored,
with the head's last steps as context, for the label-free threshold, as Vigil's torch
detectors hold out their early-stopping tail), then the validation head and the test tail
scored. A peer that does not finish a series within ``budget`` seconds is "over budget" for
that series: stored and reported as such, not dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import progress
from .files import write_atomic

HERE = Path(__file__).resolve().parent / "tsb_ad"
RUNNER = HERE / "runner.py"
REQUIREMENTS = HERE / "requirements.txt"
TORCH = "torch==2.13.0"  # installed alone first: a CPU build lies on disk here; other specs download gigabytes

# name -> what it is (TSB-AD's class; hyper-parameters from its Optimal_Multi_algo_HP_dict)
TSB_PEERS: dict[str, str] = {
    "tsb_kmeansad": "TSB-AD KMeansAD: sub-sequence k-means, 10 clusters, windows of 40, z-normalised",
    "tsb_pca": "TSB-AD PCA: 25% of the variance, sliding window 100 (zero_pruning off: see the runner)",
    "tsb_autoencoder": "TSB-AD AutoEncoder: dense, hidden 128-64, windows of 100, 50 epochs",
    "tsb_cnn": "TSB-AD CNN: next-step forecaster, windows of 50, channels 32-32-40",
    "tsb_lstmad": "TSB-AD LSTMAD: LSTM next-step forecaster, windows of 150",
    "tsb_usad": "TSB-AD USAD: adversarial autoencoders, windows of 100",
    "tsb_omnianomaly": "TSB-AD OmniAnomaly: stochastic recurrent VAE, windows of 100",
}


class OverBudget(RuntimeError):
    """A peer did not finish one series within its budget: a result of the benchmark."""


class PeerEnvError(RuntimeError):
    """The peers' environment could not be made or used; the message says what to do."""


def env_dir(repo_root: Path) -> Path:
    return Path(repo_root) / ".vigil" / "peers" / "tsb-ad"


def env_python(repo_root: Path) -> Path:
    return env_dir(repo_root) / "bin" / "python"


def requirements_hash() -> str:
    return hashlib.md5(REQUIREMENTS.read_bytes() + TORCH.encode()).hexdigest()


def code_version() -> str:
    """What a TSB-AD peer cell depends on: the runner, the pinned environment, this adapter."""
    h = hashlib.md5()
    for p in (RUNNER, REQUIREMENTS, Path(__file__)):
        h.update(p.read_bytes())
    return h.hexdigest()


def ensure_env(repo_root: Path, python: str | None = None) -> Path:
    """The peers' environment, made (minutes, once) where absent or made from other pins;
    a stamp file records the pins it was made from. Processes take turns through a lock file
    beside it: two Dask workers making it at once each cleared what the other installed."""
    import fcntl

    folder = env_dir(repo_root)
    if _env_is_current(repo_root):  # the common case, without the lock
        return env_python(repo_root)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PeerEnvError(f"cannot make {folder.parent} for the TSB-AD peers' environment: {exc}") from None
    with open(folder.parent / f"{folder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not _env_is_current(repo_root):  # made by another process while this one waited
            _make_env(repo_root, python)
    return env_python(repo_root)


def _env_is_current(repo_root: Path) -> bool:
    stamp = env_dir(repo_root) / ".requirements-md5"
    if env_python(repo_root).is_file() and stamp.is_file() and stamp.read_text().strip() == requirements_hash():
        drop_browser_assets(env_dir(repo_root))  # an environment made before this step existed
        return True
    return False


def _make_env(repo_root: Path, python: str | None) -> None:
    folder = env_dir(repo_root)
    progress(f"benchmark: making the TSB-AD peers' environment in {folder} (once; a few minutes)")
    base = python or getattr(sys, "_base_executable", None) or sys.executable
    pip = [str(env_python(repo_root)), "-m", "pip"]
    steps = [
        [base, "-m", "venv", "--clear", str(folder)],
        [*pip, "install", "-q", "--disable-pip-version-check", TORCH],
        [*pip, "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        [*pip, "check"],
    ]
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:  # no such interpreter
            done = subprocess.CompletedProcess(cmd, 1, "", str(exc))
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise PeerEnvError(
                f"making the TSB-AD peers' environment failed at `{' '.join(cmd[-3:])}`: {' / '.join(tail)}; "
                f"remove {folder} and rerun, or leave the tsb_* names out of benchmark.peers"
            )
    drop_browser_assets(folder)
    write_atomic(folder / ".requirements-md5", requirements_hash().encode())


def drop_browser_assets(folder: Path) -> None:
    """Remove matplotlib's notebook/WebAgg page scripts from the peers' environment: the peers
    draw nothing in a browser (they run headless, on Agg), and those scripts insert strings as
    HTML (``innerHTML``), which nothing Vigil ships may do."""
    for assets in folder.glob("lib/python3*/site-packages/matplotlib/backends/web_backend"):
        shutil.rmtree(assets, ignore_errors=True)


class TSBPeer:
    """One TSB-AD method run on a whole prepared series in the peers' environment."""

    def __init__(self, name: str, repo_root: Path, budget: float):
        if name not in TSB_PEERS:
            raise ValueError(f"unknown TSB-AD peer {name!r}; known: {sorted(TSB_PEERS)}")
        self.name, self.repo_root, self.budget = name, Path(repo_root), budget

    def run_series(self, series):
        from components.benchmark import CellRun

        python = ensure_env(self.repo_root)
        with tempfile.TemporaryDirectory(prefix="vigil-tsb-") as tmp:
            src, out = Path(tmp) / "in", Path(tmp) / "out"
            src.mkdir()
            out.mkdir()
            for k in ("train", "validation", "test"):
                np.save(src / f"{k}.npy", np.asarray(getattr(series, k), dtype=np.float64), allow_pickle=False)
            log = Path(tmp) / "log.txt"
            env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONHASHSEED": "0"}
            cmd = [str(python), str(RUNNER), "fit-score", self.name, str(src), str(out)]
            with log.open("w") as fh:
                try:
                    done = subprocess.run(
                        cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=self.budget, env=env, cwd=tmp
                    )
                except subprocess.TimeoutExpired:
                    raise OverBudget(f"did not finish within the budget of {self.budget:.0f} s") from None
            if done.returncode != 0:
                tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
                raise RuntimeError(f"TSB-AD runner exited {done.returncode}: {' / '.join(tail)[-400:]}")
            meta = json.loads((out / "meta.json").read_text())
            scores = {k: np.load(out / f"{k}.npy", allow_pickle=False) for k in ("calibration", "validation", "test")}
        return CellRun(
            scores["validation"],
            scores["test"],
            scores["calibration"],
            None,
            float(meta["fit_seconds"]),
            meta["test_steps"] / max(float(meta["score_seconds"]), 1e-9),
            float(meta["peak_memory_mb"]),
        )


def tsb_metrics(
    repo_root: Path, labels: np.ndarray, scores: np.ndarray, window: int, thresholds: str = "250"
) -> dict[str, float]:
    """TSB-AD's own AUC-PR and VUS-PR of ``scores`` (its ``basic_metricor`` and
    ``generate_curve``, run in the peers' environment): the cross-check of Vigil's metrics.
    ``thresholds``: how many TSB-AD samples for VUS-PR (its 250), or ``all`` (exact)."""
    python = ensure_env(repo_root)
    with tempfile.TemporaryDirectory(prefix="vigil-tsb-") as tmp:
        np.save(Path(tmp) / "labels.npy", np.asarray(labels, dtype=np.int64), allow_pickle=False)
        np.save(Path(tmp) / "scores.npy", np.asarray(scores, dtype=np.float64), allow_pickle=False)
        done = subprocess.run(
            [str(python), str(RUNNER), "metrics", f"{tmp}/labels.npy", f"{tmp}/scores.npy", str(window), thresholds],
            capture_output=True,
            text=True,
            env={**os.environ, "TQDM_DISABLE": "1"},
        )
    if done.returncode != 0:
        raise RuntimeError(f"TSB-AD metrics failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
