"""The `benchmark` flow (DVC stage ``benchmark``, Prefect deployment ``vigil-benchmark``):
every series of every dataset in ``benchmark.datasets`` x every detector of ``detectors`` and
every PyOD peer, on identical splits, with the protocol of `components.benchmark`; results to
``reports/benchmark.{json,md,html}`` and MLflow. A cell whose inputs, detector code and
parameters are unchanged is reused, so an interrupted run resumes where it stopped.

Run alone: ``python -m flows.benchmark [--params FILE] [--only KIND:SERIES ...] [--tuned]``;
``--readme`` rewrites README's Benchmark section from reports/benchmark_summary.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from prefect import flow

from components.benchmark import prepare_series
from components.datasets import DatasetSource, list_series, load_dataset
from tasks import progress
from tasks.benchmark import (
    cell_path,
    code_version,
    compute_cell,
    detector_of,
    load_cell,
    log_to_mlflow,
    protocol_version,
    refigure_cell,
    series_folder,
    stable_hash,
    tuned_row,
    write_series,
)
from tasks.benchmark_report import update_readme, write_reports
from tasks.peers import PEERS
from tasks.tsb_peers import TSB_PEERS
from tasks.versioning import dvc_hash, git_state

from .config import Config, ConfigError, load_config
from .entry import run_entry
from .run_lock import checkout_lock


def _plan(cfg: Config, root: Path, only: list[str] | None) -> tuple[list[tuple[str, DatasetSource, str]], list[str]]:
    """(dataset name, source, raw DVC hash) of every series to run, and why any dataset was
    skipped. Stored cells are filed by kind and series (one series read twice is one cell)."""
    plan, skipped = [], []
    for dataset, d in cfg.benchmark.datasets.items():
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


def _tuned_params(cfg: Config, root: Path, name: str, prepared, processed_md5: str, n_trials: int) -> dict:
    from tasks.tune import run_study
    from tasks.urls import storage_url

    t = cfg.tuning
    space = {k: r.spec() for k, r in t.spaces.get(name, {}).items()}
    fixed = dict(cfg.detectors[name])
    if not space:
        return fixed
    meta = {
        "dataset": f"benchmark.{prepared.dataset}.{prepared.series}",
        "raw_md5": processed_md5.removesuffix(".dir"),
        "scaler": cfg.preprocessing.scaler,
        "validation_fraction": cfg.preprocessing.validation_fraction,
    }
    summary = run_study(
        name,
        fixed,
        space,
        _TuningData(prepared, meta),
        objective=t.objective,
        n_trials=n_trials,
        timeout=t.timeout,
        pruner=t.pruner,
        seed=t.seed,
        storage=storage_url(t.storage, root),
        label_free=t.label_free.model_dump(),
        vus_window=cfg.evaluation.vus_window,
    )
    return summary["params"]


def _study_settings(cfg: Config, name: str, n_trials: int) -> dict:
    t = cfg.tuning
    return {
        "objective": t.objective,
        "pruner": t.pruner,
        "seed": t.seed,
        "timeout": t.timeout,
        "label_free": t.label_free.model_dump(),
        "n_trials": n_trials,
        "space": {k: r.model_dump() for k, r in t.spaces.get(name, {}).items()},
    }


def _eta(started: float, computed: int, remaining: int) -> str:
    """Rough: the mean time of the cells computed so far times the cells left (long series and
    the torch detectors cost most, so it swings as the run moves between datasets)."""
    if not computed:
        return "ETA unknown"
    left = (time.perf_counter() - started) / computed * remaining
    return f"ETA ~{left / 60:.0f} min" if left >= 60 else f"ETA ~{left:.0f} s"


@flow(name="benchmark")
def benchmark_flow(
    params: str = "params.yaml",
    repo_root: str = ".",
    only: list[str] | None = None,
    tuned: bool | None = None,
    wait_for_lock: bool = True,
) -> dict:
    """``only``: ``kind:series`` names to run (default: all); ``tuned``: a tuned row for every
    detector on every dataset (default: ``benchmark.tuned``'s subset)."""
    root = Path(repo_root).resolve()
    cfg = load_config(root / params)
    bc = cfg.benchmark
    known = sorted({*PEERS, *TSB_PEERS})
    unknown = sorted({*bc.peers, *(p for d in bc.datasets.values() for p in d.peers or [])} - set(known))
    if unknown:
        raise ConfigError(f"{params}: benchmark.peers: unknown peer(s) {unknown}; known: {known}")
    asked = {n: None for n in cfg.detectors} if tuned else bc.tuned.detectors
    if unknown := sorted(set(asked) - set(cfg.detectors)):
        raise ConfigError(f"{params}: benchmark.tuned.detectors: unknown {unknown}; known: {sorted(cfg.detectors)}")
    if unknown := sorted({d for ds in asked.values() for d in ds or []} - set(bc.datasets)):
        raise ConfigError(
            f"{params}: benchmark.tuned.detectors: unknown datasets {unknown}; known: {sorted(bc.datasets)}"
        )
    tuned_on = {n: list(bc.datasets) if ds is None else ds for n, ds in asked.items()}  # detector -> datasets
    n_trials = bc.tuned.n_trials or cfg.tuning.n_trials
    folder = root / bc.folder
    # One benchmark at a time per checkout (its cells and reports); the pipeline may run beside it.
    with checkout_lock(root, wait=wait_for_lock, name="benchmark"):
        plan, skipped = _plan(cfg, root, only)
        for why in skipped:
            progress(f"benchmark: {why}")
        budget = {"budget_seconds": bc.peer_budget_seconds}  # in the cell's key: another budget may finish
        ours = [(n, p, "vigil") for n, p in cfg.detectors.items()]

        def detectors_for(dataset: str) -> list[tuple[str, dict, str]]:
            peers = bc.datasets[dataset].peers
            tuned_rows = [(tuned_row(n), {}, "vigil") for n, ds in tuned_on.items() if dataset in ds]
            return (
                ours
                + tuned_rows
                + [(p, budget if p in TSB_PEERS else {}, "peer") for p in (bc.peers if peers is None else peers)]
            )

        commit, dirty = git_state(root)
        window, alerting = cfg.evaluation.vus_window, cfg.alert_settings()
        # A cell's scores depend on the prepared data, the detector's code and parameters; its
        # figures also on the alert rules and metrics. Two keys: a new threshold or incident
        # rule refigures every cell from its stored scores in minutes instead of refitting.
        preparation = {
            "validation_fraction": cfg.preprocessing.validation_fraction,
            "scaler": cfg.preprocessing.scaler,
            "clip": cfg.preprocessing.clip,
        }
        figuring = {
            "threshold": cfg.threshold.model_dump(),
            "incidents": cfg.incidents.model_dump(),
            "vus_window": window,
            "code": protocol_version(),
        }
        figures_key = stable_hash(figuring)
        protocol = {**preparation, **figuring}
        versions = {name: code_version(name) for d in bc.datasets for name, _, _ in detectors_for(d)}
        refigured = 0
        total, done, computed, started = sum(len(detectors_for(d)) for d, _, _ in plan), 0, 0, time.perf_counter()
        progress(f"benchmark: {len(plan)} series, {total} cells (series x detectors and peers)")
        rows = []
        for dataset, source, raw_md5 in plan:
            kind, data_root, series = source.kind, source.root, source.name
            prepared = prepare_series(
                kind,
                load_dataset(source),
                validation_fraction=cfg.preprocessing.validation_fraction,
                scaler=cfg.preprocessing.scaler,
                clip=cfg.preprocessing.clip,
            )
            prepared.series = series
            sfolder = series_folder(folder, kind, series)
            processed_files = write_series(prepared, sfolder)
            processed_md5 = dvc_hash(root, sfolder)
            # what names this series' inputs in this run (a reused cell takes them: same prepared data)
            where = {
                "dataset": dataset,
                "kind": kind,
                "raw_path": os.path.relpath(data_root, root),
                "raw_md5": raw_md5,
                "processed_path": os.path.relpath(sfolder, root),
            }
            for name, det_params, family in detectors_for(dataset):
                is_tuned = name != detector_of(name)
                if is_tuned:  # a finished study is read back, not rerun: cheap when the cell is stored
                    det_params = _tuned_params(cfg, root, detector_of(name), prepared, processed_md5, n_trials)
                cell = {"detector": name, "params": det_params, "tuned": is_tuned}
                if is_tuned:  # the study's settings decide the parameters: a new setting is a new cell
                    cell["tuning"] = _study_settings(cfg, detector_of(name), n_trials)
                params_hash = stable_hash({**cell, "protocol": {k: v for k, v in protocol.items() if k != "code"}})
                key = stable_hash(
                    {**cell, "processed_md5": processed_md5, "code": versions[name], "preparation": preparation}
                )
                path = cell_path(folder, kind, series, name)
                row = load_cell(path, key)
                done += 1
                if row is not None and row["status"] == "ok" and row.get("figures_key") != figures_key:
                    stamp = {"commit": commit, "dirty": dirty}
                    row = refigure_cell(path, row, prepared, figures_key, stamp, alerting=alerting, vus_window=window)
                    refigured += 1
                if row is not None:
                    row.update(where)
                else:
                    row = compute_cell(
                        path,
                        {
                            **where,
                            "series": series,
                            "detector": name,
                            "family": family,
                            "params": det_params,
                            "tuned": cell["tuned"],
                            "key": key,
                            "figures_key": figures_key,
                            "git_commit": commit,
                            "git_dirty": dirty,
                            "processed_md5": processed_md5,
                            "processed_files": processed_files,
                            "params_hash": params_hash,
                            "code_version": versions[name],
                        },
                        prepared,
                        alerting=alerting,
                        vus_window=window,
                    )
                    computed += 1
                    what = row["status"] if row["status"] == "ok" else f"FAILED ({row['error'][:120]})"
                    progress(
                        f"[{done}/{total}] {kind}:{series} {name}: {what} in {row['seconds']:.1f} s; "
                        f"{_eta(started, computed, total - done)}"
                    )
                rows.append(row)
        progress(
            f"benchmark: {computed} cell(s) computed, {len(rows) - computed} reused from {folder} "
            f"({refigured} of them refigured from their stored scores under the new alert rules)"
        )
        reg = cfg.registry
        from tasks.urls import storage_url  # a relative SQLite store lives in the checkout, whatever the cwd

        with checkout_lock(root, wait=True):  # the MLflow store is created and migrated under the run lock
            logged = log_to_mlflow(rows, storage_url(reg.tracking_uri, root), bc.experiment, root / reg.artifact_root)
        meta = {
            "git_commit": commit,
            "git_dirty": dirty,
            "tuned": {
                "detectors": tuned_on,
                "n_trials": n_trials,
                "objective": cfg.tuning.objective,
            },
            "folder": str(bc.folder),
            "skipped": skipped,
            "protocol": protocol,
            "wall_seconds": time.perf_counter() - started,
            "computed": computed,
        }
        reports = write_reports(rows, meta, root / "reports", root, plots=bc.plots, alerting=alerting)
    return {"computed": computed, "reused": len(rows) - computed, "logged": logged, "reports": reports, "rows": rows}


def summary(out: dict) -> str:
    return (
        f"benchmark: {out['computed']} cell(s) computed, {out['reused']} reused, {out['logged']} logged to MLflow; "
        f"reports: {', '.join(str(p) for p in out['reports'])}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.benchmark", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--only", nargs="+", metavar="KIND:SERIES", help="run these series only")
    parser.add_argument("--tuned", action="store_true", help="a tuned row for every detector on every series")
    parser.add_argument("--readme", action="store_true", help="rewrite README's Benchmark section from the report")
    parser.add_argument("--no-wait", action="store_true", help="refuse instead of waiting for a benchmark here")
    parser.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")
    return run_benchmark(parser.parse_args(argv))


def run_benchmark(args: argparse.Namespace) -> int:
    """What `python -m flows.benchmark` and `vigil benchmark` do with their arguments."""
    if args.readme:
        return run_entry(
            lambda: update_readme(Path("README.md"), Path("reports/benchmark_summary.json")), runs_flows=False
        )
    tuned = True if args.tuned else None
    return run_entry(
        lambda: summary(benchmark_flow(args.params, only=args.only, tuned=tuned, wait_for_lock=not args.no_wait))
    )


if __name__ == "__main__":
    sys.exit(main())
