"""The benchmark's I/O: each series prepared once and written where DVC versions it, each
cell (series x detector) stored with its scores so a rerun with the same inputs reuses it, and
every cell logged to MLflow once.

Layout under ``benchmark.folder`` (default ``benchmark/``):

- ``processed/<dataset>/<series>/``: the scaled arrays as ``.npy`` (byte-for-byte repeatable,
  unlike ``.npz`` zips, which stamp the time) and ``causes.json``; the row's
  ``processed_md5`` is DVC's hash of this folder.
- ``cells/<dataset>/<series>/<detector>.json``: the row; ``.npz`` beside it: validation,
  calibration and test scores, and the test contributions on the labelled-cause steps (all
  HitRate reads). A cell is reused while its ``key`` (inputs, detector code, parameters,
  protocol) is unchanged.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import math
import time
from contextlib import contextmanager
from importlib.metadata import version as installed_version
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from components.benchmark import PreparedSeries, cell_figures, prepare_series, run_cell
from components.datasets import Anomaly, DatasetSource, list_series, load_dataset
from components.detectors import TrainingStopped
from components.evaluation import AlertSettings

from . import progress
from .files import write_atomic
from .peers import PEERS, Peer
from .tsb_peers import TSB_PEERS, OverBudget, PeerEnvError, TSBPeer
from .tsb_peers import code_version as tsb_code_version

REPO = Path(__file__).resolve().parents[1]
# The code a cell's figures depend on besides its detector: the protocol and every metric.
PROTOCOL_CODE = [
    REPO / "components" / f
    for f in (
        "benchmark.py",
        "evaluation.py",
        "alerting.py",  # smoothing and incidents: the alert rule's figures
        "metrics.py",
        "thresholds.py",
        "attribution.py",
        "preprocessing.py",
    )
]


def _md5_files(paths: list[Path]) -> str:
    h = hashlib.md5()
    for p in sorted(paths):
        h.update(p.relative_to(REPO).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


# A tuned row: the detector with the parameters an Optuna study on that series' train and
# validation head chose, stored and reported beside the configured one.
TUNED = " (tuned)"
TUNING_CODE = [REPO / "components" / "tuning.py", REPO / "tasks" / "tune.py"]


def tuned_row(detector: str) -> str:
    return detector + TUNED


def detector_of(row_name: str) -> str:
    """The registered detector behind a row's name (a tuned row's too)."""
    return row_name.removesuffix(TUNED)


def code_version(detector: str) -> str:
    """md5 of the code that computes the detector's scores: Vigil's detector package (one
    shared base, loop and nets; and the tuning code for a tuned row), or the peer adapter and
    PyOD's version."""
    if detector.endswith(TUNED):
        return code_version(detector_of(detector)) + "+" + _md5_files(TUNING_CODE)
    if detector in PEERS:
        return _md5_files([REPO / "tasks" / "peers.py"]) + f"+pyod{installed_version('pyod')}"
    if detector in TSB_PEERS:
        return tsb_code_version()
    return _md5_files(list((REPO / "components" / "detectors").glob("*.py")))


def protocol_version() -> str:
    """The figures' code: components' protocol files, and the look-ahead that time to alert
    adds (defined below, beside the peers it names), so a change to either refigures cells."""
    h = hashlib.md5(_md5_files(PROTOCOL_CODE).encode())
    for fn in (look_ahead_steps, tsb_look_ahead):
        h.update(inspect.getsource(fn).encode())
    return h.hexdigest()


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def series_folder(folder: Path, dataset: str, series: str) -> Path:
    return Path(folder) / "processed" / _safe(dataset) / Path(*[_safe(p) for p in series.split("/")])


def cell_path(folder: Path, dataset: str, series: str, detector: str) -> Path:
    parts = [_safe(p) for p in series.split("/")]
    return Path(folder) / "cells" / _safe(dataset) / Path(*parts) / f"{_safe(detector)}.json"


def write_series(prepared: PreparedSeries, folder: Path) -> dict[str, str]:
    """Write the prepared arrays where they differ from what is there (so an unchanged series
    keeps its files and its hash). Returns each file's md5, as DVC records it in the listing
    of the folder it tracks."""
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {}
    for name, arr in prepared.arrays().items():
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        blobs[f"{name}.npy"] = buf.getvalue()
    blobs["causes.json"] = json.dumps([[a.start, a.end, list(a.metrics)] for a in prepared.test_causes]).encode()
    for name, data in blobs.items():
        path = folder / name
        if not path.is_file() or path.read_bytes() != data:
            write_atomic(path, data)
    return {name: hashlib.md5(data).hexdigest() for name, data in sorted(blobs.items())}


def write_prepared(
    source: DatasetSource, folder: Path, root: Path, preparation: dict
) -> tuple[Path, dict[str, str], str, float | None]:
    """A series of ``source`` prepared (``preparation``: validation fraction, scaler, clip) and
    written under ``folder`` (`series_folder`), where every worker reads it: its folder, each
    file's md5, DVC's hash of the folder in the repository at ``root``, and the seconds between
    its rows (None where the data does not say), which the prepared arrays do not hold."""
    from .data import series_step_seconds
    from .versioning import dvc_hash

    data = load_dataset(source)
    prepared = prepare_series(source.kind, data, **preparation)
    where = series_folder(folder, source.kind, source.name)
    files = write_series(prepared, where)
    return where, files, dvc_hash(root, where), series_step_seconds(source.kind, data)


def read_series(dataset: str, series: str, folder: Path) -> PreparedSeries:
    a = {p.stem: np.load(p, allow_pickle=False) for p in folder.glob("*.npy")}
    causes = [Anomaly(s, e, tuple(m)) for s, e, m in json.loads((folder / "causes.json").read_text())]
    return PreparedSeries(
        dataset, series, a["train"], a["validation"], a["validation_labels"], a["test"], a["test_labels"], causes
    )


def load_cell(path: Path, key: str) -> dict | None:
    """The stored row if its key matches and its scores are there; else None (recompute)."""
    try:
        row = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if row.get("key") != key or (row.get("status") == "ok" and not path.with_suffix(".npz").is_file()):
        return None
    return row


def make_detector(name: str, params: dict):
    name = detector_of(name)
    if name in PEERS:
        return Peer(name)
    if name in TSB_PEERS:
        return TSBPeer(name, REPO, params["budget_seconds"])
    from components.detectors import get_detector

    return get_detector(name, **params)


def tsb_look_ahead(name: str, n_features: int) -> int | None:
    """How many steps after a step a TSB-AD peer's score of it is final, as TSB-AD 1.5's code
    places its windows' scores (read from its sources, with the windows tasks/tsb_ad/runner.py
    passes; tests/test_tsb_peers.py checks them against real scores). None where no fixed number
    exists: OmniAnomaly's LSTM runs along its batch of windows (``x.view(-1, batch, features)``),
    so a step's score depends on the windows batched with it. Kept here, not in tsb_peers.py:
    that file is part of every TSB-AD cell's code version, and this is a figure, not a score."""
    univariate = n_features == 1
    reach = {
        "tsb_kmeansad": 39,  # a step's score: the mean over the windows of 40 that cover it
        "tsb_pca": 49,  # windows of 100, each scored at its centre ((100 - 1) // 2 steps ahead)
        "tsb_autoencoder": 49 if univariate else 0,  # windows of 100 on one metric; else each row alone
        "tsb_cnn": 0,  # next-step forecasters: a step is scored from the steps before it
        "tsb_lstmad": 0,
        "tsb_usad": 49 if univariate else 99,  # one metric: centred windows; several: window i at step i
        "tsb_omnianomaly": None,
    }
    if name not in reach:
        raise ValueError(f"unknown TSB-AD peer {name!r}; choose one of {sorted(TSB_PEERS)}")
    return reach[name]


def look_ahead_steps(detector: str, params: dict, n_features: int) -> int | None:
    """How many steps after a step the detector's score of it is final (`Detector.context_steps`'s
    future). PyOD's peers score each step alone: 0. TSB-AD's: as its code places its windows'
    scores (`tsb_look_ahead`; None where no fixed number exists)."""
    name = detector_of(detector)
    if name in PEERS:
        return 0
    if name in TSB_PEERS:
        return tsb_look_ahead(name, n_features)
    return int(make_detector(name, params).context_steps()[1])


def _cause_rows(causes: list[Anomaly], n: int) -> np.ndarray:
    rows = np.zeros(n, dtype=bool)
    for a in causes:
        if a.metrics:
            rows[a.start : a.end] = True
    return np.flatnonzero(rows)


def _finite_or_none(d: dict) -> dict:
    return {k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in d.items()}


def steps_per_day(row: dict) -> float | None:
    """A row's steps per day, from the seconds between its series' rows (``step_seconds``,
    recorded when its series was prepared); None where the data has no clock."""
    step = row.get("step_seconds")
    return 86400 / step if step else None


def compute_cell(
    path: Path,
    row: dict,
    prepared: PreparedSeries,
    *,
    alerting: AlertSettings,
    vus_window: int,
) -> dict:
    """Run one detector on one series and store the row and its scores. A detector that fails
    is stored as failed, with its error, not dropped."""
    started = time.perf_counter()
    try:
        det = make_detector(row["detector"], row["params"])
        run = run_cell(det, prepared)
        contributions = run.test_contributions
        figures, rule = cell_figures(
            run.val_scores,
            prepared.validation_labels,
            run.calibration_scores,
            run.test_scores,
            prepared.test_labels,
            contributions=contributions,
            causes=prepared.test_causes,
            alerting=alerting,
            vus_window=vus_window,
            look_ahead=look_ahead_steps(row["detector"], row["params"], prepared.test.shape[1]),
            steps_per_day=steps_per_day(row),
        )
    # Ctrl-C, or a peers' environment that cannot be made: not a result of the cell, not stored
    # (a stored failure would be reused once the environment is fixed)
    except (TrainingStopped, PeerEnvError):
        raise
    except Exception as exc:  # noqa: BLE001 - a failing detector is a result of the benchmark
        status = "over budget" if isinstance(exc, OverBudget) else "failed"
        row.update(
            status=status, error=f"{type(exc).__name__}: {exc}", figures={}, seconds=time.perf_counter() - started
        )
        write_atomic(path, json.dumps(row, indent=1).encode())
        return row
    figures.update(
        fit_seconds=run.fit_seconds,
        score_steps_per_second=run.score_steps_per_second,
        peak_memory_mb=run.peak_memory_mb,
    )
    rows = _cause_rows(prepared.test_causes, len(prepared.test))
    scores = {
        "validation": run.val_scores,
        "calibration": run.calibration_scores,
        "test": run.test_scores,
        "cause_rows": rows,
    }
    if contributions is not None:
        scores["cause_contributions"] = np.asarray(contributions, dtype=np.float64)[rows]
    buf = io.BytesIO()
    np.savez_compressed(buf, **scores)
    write_atomic(path.with_suffix(".npz"), buf.getvalue())
    undefined = {}
    if not prepared.test_labels.any():
        undefined["test"] = "no labelled anomaly in the test tail: figures that need labels are undefined"
    if math.isnan(figures.get("hitrate_100", math.nan)):
        undefined["hitrate"] = (
            "no per-metric contributions (PyOD peer)"
            if contributions is None
            else "the series names no anomaly's metrics, or has one metric"
        )
    row.update(
        status="ok",
        figures=_finite_or_none(figures),
        undefined=undefined,
        label_free_threshold=not prepared.validation_labels.any(),
        seconds=time.perf_counter() - started,
        **rule,
    )
    write_atomic(path, json.dumps(row, indent=1).encode())
    return row


def _figures_from_store(path: Path, prepared: PreparedSeries, row: dict, **protocol) -> tuple[dict, dict]:
    """A cell's figures and alert rule recomputed from its stored scores (``row``: its stored
    row, whose detector and parameters give the look-ahead)."""
    z = np.load(path.with_suffix(".npz"), allow_pickle=False)
    contributions = None
    if "cause_contributions" in z.files:
        contributions = np.zeros((len(prepared.test), prepared.test.shape[1]))
        contributions[z["cause_rows"]] = z["cause_contributions"]
    figures, rule = cell_figures(
        z["validation"],
        prepared.validation_labels,
        z["calibration"],
        z["test"],
        prepared.test_labels,
        contributions=contributions,
        causes=prepared.test_causes,
        look_ahead=look_ahead_steps(row["detector"], row["params"], prepared.test.shape[1]),
        steps_per_day=steps_per_day(row),
        **protocol,
    )
    return _finite_or_none(figures), rule


def stored_figures(path: Path, prepared: PreparedSeries, **protocol) -> dict:
    """The quality figures recomputed from a cell's stored scores (for checking a report)."""
    return _figures_from_store(path, prepared, json.loads(path.read_text()), **protocol)[0]


def refigure_cell(path: Path, row: dict, prepared: PreparedSeries, figures_key: str, stamp: dict, **protocol) -> dict:
    """A stored cell whose scores still hold (same data, detector code and parameters) under a
    new figures protocol (threshold and incident rules, metrics): its figures recomputed from
    the stored scores, no refit. The costs measured when it was computed are kept; ``stamp``
    (commit, dirty) says which code computed the figures."""
    figures, rule = _figures_from_store(path, prepared, row, **protocol)
    for cost in ("fit_seconds", "score_steps_per_second", "peak_memory_mb"):
        figures[cost] = (row.get("figures") or {}).get(cost)
    row.update(figures=figures, figures_key=figures_key, figures_git=stamp, **rule)
    write_atomic(path, json.dumps(row, indent=1).encode())
    return row


def log_to_mlflow(rows: list[dict], tracking_uri: str, experiment: str, artifact_root: Path) -> int:
    """One MLflow run per cell, tagged so the compare view lines detectors up; a cell already
    logged (same scores and figures keys) is not logged again; a refigured one is logged anew.
    Returns how many were logged now."""
    from .registry import setup_mlflow

    mlflow = setup_mlflow(tracking_uri, experiment, artifact_root)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    logged = set()
    for run in client.search_runs([exp.experiment_id], max_results=50000):
        logged.add(run.data.tags.get("vigil.benchmark.key"))
    n = 0
    from mlflow.entities import Metric, Param, RunTag

    for row in rows:
        key = f"{row['key']}+{row.get('figures_key', '')}"
        if key in logged:
            continue
        tags = {
            "mlflow.runName": f"{row['series']} · {row['detector']}",
            "vigil.benchmark.key": key,
            "dataset": row["dataset"],
            "series": row["series"],
            "detector": row["detector"],
            "family": row["family"],
            "status": row["status"],
            "threshold_rule": row.get("threshold_rule", ""),
            **{f"vigil.{k}": str(row[k]) for k in ("git_commit", "raw_md5", "processed_md5", "params_hash")},
        }
        if row["status"] != "ok":
            tags["error"] = row.get("error", "")[:5000]
        run = client.create_run(exp.experiment_id, tags=tags)
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in (row.get("figures") or {}).items() if v is not None]
        params = [Param(k, str(v)[:6000]) for k, v in row["params"].items()]
        client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=[RunTag("vigil.cell", "1")])
        client.set_terminated(run.info.run_id, "FINISHED" if row["status"] == "ok" else "FAILED")
        n += 1
    if n:
        progress(f"benchmark: {n} cell(s) logged to MLflow experiment {experiment!r}")
    return n


# --- one benchmark run: which series, each cell's keys, and a cell reused, refigured or computed ---


def plan_series(
    datasets: dict, root: Path, only: list[str] | None
) -> tuple[list[tuple[str, DatasetSource, str]], list[str]]:
    """(dataset name, source, raw DVC hash) of every series to run of ``datasets`` (the
    ``benchmark.datasets`` section), and why any dataset was skipped. Stored cells are filed by
    kind and series (one series read twice is one cell)."""
    from .versioning import dvc_hash

    plan, skipped = [], []
    for dataset, d in datasets.items():
        folder = (root / d.root).resolve()
        if not folder.is_dir():
            skipped.append(f"{d.kind} at {d.root}: folder absent, skipped")
            continue
        names = d.series or list_series(d.kind, folder)
        if not names:
            skipped.append(f"{d.kind} at {d.root}: holds no series of that kind, skipped")
            continue
        names = [s for s in names if not only or f"{d.kind}:{s}" in only]
        if not names:
            continue
        raw_md5 = dvc_hash(root, folder)
        plan += [(dataset, DatasetSource(d.kind, folder, s, d.options), raw_md5) for s in names]
    return plan, skipped


class _TuningData:
    """What `tasks.tune.run_study` reads of prepared data: arrays by name and their metadata."""

    def __init__(self, prepared, meta: dict):
        self._arrays, self.meta = prepared.arrays(), meta

    def __getitem__(self, key):
        return self._arrays[key]


def tuned_params(
    name: str,
    fixed: dict,
    space: dict,
    prepared: PreparedSeries,
    processed_md5: str,
    *,
    scaler: str,
    validation_fraction: float,
    **study,
) -> dict:
    """The parameters a study on this series' train and validation head chose for detector
    ``name`` (``space``: its plain search space; ``study``: the study's settings as
    `tasks.tune.run_study` takes them); ``fixed`` where there is no space. A finished study is
    read back, not rerun."""
    from .tune import run_study

    if not space:
        return fixed
    meta = {
        "dataset": f"benchmark.{prepared.dataset}.{prepared.series}",
        "raw_md5": processed_md5.removesuffix(".dir"),
        "scaler": scaler,
        "validation_fraction": validation_fraction,
    }
    return run_study(name, fixed, space, _TuningData(prepared, meta), **study)["params"]


def cell_keys(cell: dict, processed_md5: str, code: str, preparation: dict, protocol: dict) -> tuple[str, str]:
    """(params hash, key) of a cell: the key names what its scores depend on (the prepared
    data, the detector's code and parameters); the params hash, what a reader compares
    across runs (parameters and protocol, not code)."""
    params_hash = stable_hash({**cell, "protocol": {k: v for k, v in protocol.items() if k != "code"}})
    key = stable_hash({**cell, "processed_md5": processed_md5, "code": code, "preparation": preparation})
    return params_hash, key


def stored_or_computed_cell(
    path: Path, row: dict, prepared: PreparedSeries, stamp: dict, **protocol
) -> tuple[dict, str]:
    """The cell at ``path``: reused when stored under ``row['key']``, refigured from its stored
    scores when only the figures' key (``row['figures_key']``: alert rules, metrics) changed
    (a failed cell is computed again then), else computed. ``row``: the new row's fields.
    Returns the row and which of "reused", "refigured", "computed" happened."""
    stored = load_cell(path, row["key"])
    how = "reused"
    if stored is not None and stored.get("figures_key") != row["figures_key"]:
        stored["step_seconds"] = row.get("step_seconds")  # in the figures' key: figured with this run's
        if stored["status"] == "ok":
            stored = refigure_cell(path, stored, prepared, row["figures_key"], stamp, **protocol)
            how = "refigured"
        elif stored["status"] == "failed":  # the failure may have been the figures' code: again
            stored = None
    if stored is not None:
        where = ("dataset", "kind", "raw_path", "raw_md5", "processed_path")
        stored.update({k: row[k] for k in where})  # same prepared data, named as this run names it
        return stored, how
    return compute_cell(path, row, prepared, **protocol), "computed"


@task(
    name="benchmark cell",
    task_run_name="{job[row][detector]} on {job[row][kind]}:{job[row][series]}",
    cache_policy=NO_CACHE,
)
def benchmark_cell(job: dict, stamp: dict, study: dict, **protocol) -> tuple[dict, str]:
    """One cell, where the flow's task runner puts it (this process, or a Dask worker): the
    prepared series read from its folder, a tuned row's parameters from its study (run there,
    or read back when finished), then the cell reused, refigured or computed
    (`stored_or_computed_cell`) and stored at ``job['path']``, the one writer of that file.
    ``job``: what `flows.benchmark` planned; ``study``: the tuning study's settings."""
    cell, row = dict(job["cell"]), dict(job["row"])
    prepared = read_series(row["kind"], row["series"], Path(job["series_folder"]))
    with torch_threads(cell.get("torch_threads")):
        if job["tuning"] is not None:  # the study decides the parameters: a new setting, a new cell
            t = job["tuning"]
            cell["params"] = tuned_params(
                t["detector"], t["fixed"], t["space"], prepared, row["processed_md5"], **study
            )
            row["params"] = cell["params"]
        row["params_hash"], row["key"] = cell_keys(
            cell, row["processed_md5"], row["code_version"], job["preparation"], job["protocol"]
        )
        return stored_or_computed_cell(Path(job["path"]), row, prepared, stamp, **protocol)


@contextmanager
def torch_threads(n: int | None):
    """torch's intra-op threads set to ``n`` for one cell (None: left as they are), then put
    back: seeded torch training is reproducible for one thread count, not across counts."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def refuse_dirty_tree(root: Path, scratch: str) -> None:
    """A full benchmark in a checkout with uncommitted changes to tracked files, refused by name
    (a `vigil.config.ConfigError`: exit 2): its report and README's section name the clean
    commit they were computed at."""
    from vigil.config import ConfigError

    raise ConfigError(
        f"{root} has uncommitted changes to tracked files: the benchmark's report (reports/) and README's section "
        f"name the clean commit they were computed at. Commit or stash them first, or run some series with --only "
        f"(a scratch report in {scratch}/)"
    )


def earlier_seconds(path: Path) -> float | None:
    """What the cell stored at ``path`` took when it was computed (under any key), or None:
    what a rerun's estimate goes by."""
    try:
        seconds = json.loads(path.read_text()).get("seconds")
    except (OSError, ValueError):
        return None
    return float(seconds) if isinstance(seconds, int | float) else None


def estimate(jobs: list[dict], cluster) -> str:
    """How long the cells left to compute will take, said before they start: each by the
    seconds its earlier run at the same place took (another key: other code or parameters);
    a tuned row's by its earlier run (its key is known only once its study has run)."""
    stored, seconds, unknown = 0, 0.0, 0
    for job in jobs:
        path = Path(job["path"])
        if job["tuning"] is None:
            row, cell = job["row"], job["cell"]
            key = cell_keys(cell, row["processed_md5"], row["code_version"], job["preparation"], job["protocol"])[1]
            if load_cell(path, key) is not None:
                stored += 1
                continue
        before = earlier_seconds(path)
        if before is None:
            unknown += 1
        else:
            seconds += before
    workers = 1 if not cluster.distributed else cluster.workers or None
    spread = f"~{seconds / 60 / workers:.0f} min on {workers} worker(s)" if workers else "over the cluster's workers"
    return (
        f"{stored} stored, {len(jobs) - stored} to compute or check: {seconds / 60:.0f} min of cell time by their "
        f"earlier runs ({spread})" + (f", and {unknown} never run before (not in that figure)" if unknown else "")
    )


def eta(started: float, computed: int, remaining: int) -> str:
    """Rough: the mean time of the cells computed so far times the cells left (long series and
    the torch detectors cost most, so it swings as the run moves between datasets)."""
    if not computed:
        return "ETA unknown"
    left = (time.perf_counter() - started) / computed * remaining
    return f"ETA ~{left / 60:.0f} min" if left >= 60 else f"ETA ~{left:.0f} s"
