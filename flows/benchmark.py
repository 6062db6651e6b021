"""The `benchmark` flow (DVC stage ``benchmark``, Prefect deployment ``vigil-benchmark``):
every series of every dataset in ``benchmark.datasets`` x every detector of ``detectors`` and
every PyOD peer, on identical splits, with the protocol of `components.benchmark`; results to
``reports/benchmark.{json,md,html}`` and MLflow. A cell whose inputs, detector code and
parameters are unchanged is reused, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow

from tasks import progress
from tasks.benchmark import (
    benchmark_cell,
    cell_path,
    code_version,
    detector_of,
    estimate,
    eta,
    log_to_mlflow,
    plan_series,
    protocol_version,
    refuse_dirty_tree,
    stable_hash,
    tuned_row,
    write_prepared,
)
from tasks.benchmark_report import write_reports
from tasks.cluster import describe, handed_over, task_runner
from tasks.tsb_peers import TSB_PEERS
from tasks.urls import storage_url
from tasks.versioning import git_state, last_commit_of
from vigil.config import Config
from vigil.run_lock import checkout_lock
from vigil.run_names import benchmark_run

from .cluster import fan_out

# What the benchmark's figures depend on besides the data it reads in place (reports/dvc.yaml's deps)
REPORT_INPUTS = ("components", "tasks", "flows", "vigil", "params.yaml", "reports/dvc.yaml", "pyproject.toml")
ONLY_REPORTS = ".vigil/benchmark-only"  # where a run of some series only (``only``) writes its report


@flow(name="benchmark", flow_run_name=benchmark_run)
def benchmark_flow(
    cfg: Config,
    repo_root: str = ".",
    only: list[str] | None = None,
    tuned: bool | None = None,
    wait_for_lock: bool = True,
) -> dict:
    """``only``: ``kind:series`` names to run (default: all), reported under `ONLY_REPORTS`,
    never reports/; ``tuned``: a tuned row for every detector on every dataset (default:
    ``benchmark.tuned``'s subset)."""
    root = Path(repo_root).resolve()
    bc = cfg.benchmark
    asked = {n: None for n in cfg.detectors} if tuned else bc.tuned.detectors  # names checked when parsed
    tuned_on = {n: list(bc.datasets) if ds is None else ds for n, ds in asked.items()}  # detector -> datasets
    n_trials = bc.tuned.n_trials or cfg.tuning.n_trials
    folder = root / bc.folder
    # One benchmark at a time per checkout (its cells and reports); the pipeline may run beside it.
    with checkout_lock(root, wait=wait_for_lock, name="benchmark"):
        plan, skipped = plan_series(bc.datasets, root, only)
        for why in skipped:
            progress(f"benchmark: {why}")
        budget = {"budget_seconds": bc.peer_budget_seconds}  # in the cell's key: another budget may finish

        def detectors_for(dataset: str) -> list[tuple[str, dict, str]]:
            d = bc.datasets[dataset]
            ours = [(n, d.detector_params(n, p), "vigil") for n, p in cfg.detectors.items()]
            tuned_rows = [(tuned_row(n), {}, "vigil") for n, ds in tuned_on.items() if dataset in ds]
            return (
                ours
                + tuned_rows
                + [(p, budget if p in TSB_PEERS else {}, "peer") for p in (bc.peers if d.peers is None else d.peers)]
            )

        commit, dirty = git_state(root)
        if dirty and not only:  # refused before hours of work, not after
            refuse_dirty_tree(root, ONLY_REPORTS)
        stamp = {"commit": commit, "dirty": dirty}
        window, alerting = cfg.evaluation.vus_window, cfg.alert_settings()
        # A cell's scores depend on the prepared data, the detector's code and parameters; its
        # figures also on the alert rules and metrics. Two keys: a new threshold or incident
        # rule refigures every cell from its stored scores in minutes instead of refitting.
        preparation = cfg.preprocessing.model_dump()  # validation fraction, scaler, clip
        figuring = {
            "threshold": cfg.threshold.model_dump(),
            "incidents": cfg.incidents.model_dump(),
            "vus_window": window,
            "code": protocol_version(),
        }
        figures_key = stable_hash(figuring)
        protocol = {**preparation, **figuring}
        versions = {name: code_version(name) for d in bc.datasets for name, _, _ in detectors_for(d)}
        study = {
            **cfg.tuning.study_arguments(),
            "storage": storage_url(cfg.tuning.storage, root),
            "n_trials": n_trials,
            "vus_window": window,
            "scaler": cfg.preprocessing.scaler,
            "validation_fraction": cfg.preprocessing.validation_fraction,
        }
        jobs = []
        for dataset, source, raw_md5 in plan:
            kind, data_root, series = source.kind, source.root, source.name
            # written where every worker reads it
            sfolder, processed_files, processed_md5, step = write_prepared(source, folder, root, preparation)
            # the series' spacing gives false incidents per day: a figure of the cell, so in its figures' key
            series_figures_key = stable_hash({"figures": figures_key, "step_seconds": step})
            for name, det_params, family in detectors_for(dataset):
                is_tuned = name != detector_of(name)
                cell, tuning = {"detector": name, "params": det_params, "tuned": is_tuned}, None
                if family == "vigil":  # in the key: another thread count, other torch scores
                    cell["torch_threads"] = bc.torch_threads
                if is_tuned:  # the study, run where the cell runs, decides the parameters
                    base = detector_of(name)
                    fixed = bc.datasets[dataset].detector_params(base, cfg.detectors[base])
                    space = cfg.tuning.plain_space(base)
                    tuning = {"detector": base, "fixed": fixed, "space": space}
                    cell["tuning"] = cfg.tuning.study_settings(base, n_trials)
                row = {  # the cell's own fields; its key (and a tuned row's params) where it runs
                    "dataset": dataset,
                    "kind": kind,
                    "raw_path": os.path.relpath(data_root, root),
                    "raw_md5": raw_md5,
                    "processed_path": os.path.relpath(sfolder, root),
                    "series": series,
                    "detector": name,
                    "family": family,
                    "params": cell["params"],
                    "tuned": is_tuned,
                    "figures_key": series_figures_key,
                    "step_seconds": step,
                    "git_commit": commit,
                    "git_dirty": dirty,
                    "processed_md5": processed_md5,
                    "processed_files": processed_files,
                    "code_version": versions[name],
                    "torch_threads": cell.get("torch_threads"),
                }
                path = cell_path(folder, kind, series, name)
                jobs.append(
                    {
                        "path": str(path),
                        "series_folder": str(sfolder),
                        "cell": cell,
                        "row": row,
                        "tuning": tuning,
                        "preparation": preparation,
                        "protocol": protocol,
                    }
                )
        ahead = estimate(jobs, cfg.cluster)  # said before the first cell starts
        progress(f"benchmark: {len(plan)} series, {len(jobs)} cells (series x detectors and peers); {ahead}")
        progress(f"benchmark: cells run {describe(cfg.cluster)}")
        counts = {"reused": 0, "refigured": 0, "computed": 0}
        by_path, started = {}, time.perf_counter()

        def stored(result: tuple[dict, str]) -> None:
            row, how = result
            counts[how] += 1
            by_path[row["kind"], row["series"], row["detector"]] = row
            if how == "computed":
                what = row["status"] if row["status"] == "ok" else f"FAILED ({row['error'][:120]})"
                progress(
                    f"[{len(by_path)}/{len(jobs)}] {row['kind']}:{row['series']} {row['detector']}: {what} in "
                    f"{row['seconds']:.1f} s; {eta(started, counts['computed'], len(jobs) - len(by_path))}"
                )

        common = {"stamp": stamp, "study": study, "alerting": alerting, "vus_window": window}
        inputs = [{"job": j, **common} for j in jobs]
        if cfg.cluster.distributed:  # a task per cell on the cluster's workers, stored as each finishes
            with handed_over(benchmark_cell, inputs, stored) as work:
                fan_out.with_options(task_runner=task_runner(cfg.cluster))(f"benchmark: {len(jobs)} cells", work)
        else:  # here, one after another, in order
            for kwargs in inputs:
                stored(benchmark_cell.fn(**kwargs))
        # the report's rows in the plan's order, however the workers finished them
        order = {(j["row"]["kind"], j["row"]["series"], j["row"]["detector"]): i for i, j in enumerate(jobs)}
        rows = [by_path[k] for k in sorted(by_path, key=order.__getitem__)]
        computed = counts["computed"]
        progress(
            f"benchmark: {computed} cell(s) computed, {len(rows) - computed} reused from {folder} "
            f"({counts['refigured']} of them refigured from their stored scores under the new alert rules) "
            f"in {(time.perf_counter() - started) / 60:.1f} min"
        )
        reg = cfg.registry
        with checkout_lock(root, wait=True):  # the MLflow store is created and migrated under the run lock
            logged = log_to_mlflow(rows, storage_url(reg.tracking_uri, root), bc.experiment, root / reg.artifact_root)
        meta = {
            # the commit of the code and parameters that made it (the run's own, unless only the
            # reports and locks changed since): a rerun at a later commit writes the same report
            "git_commit": last_commit_of(root, list(REPORT_INPUTS)) if commit != "none" else commit,
            "git_dirty": dirty,
            "tuned": {
                "detectors": tuned_on,
                "n_trials": n_trials,
                "objective": cfg.tuning.objective,
            },
            "folder": str(bc.folder),
            "skipped": skipped,
            "protocol": protocol,
        }  # nothing of this run's own (its wall time, what it computed): a rerun writes the same report
        # a partial run's report is a scratch report: the committed one (and README's section,
        # generated from it) always covers every series
        out_dir = root / (ONLY_REPORTS if only else "reports")
        reports = write_reports(rows, meta, out_dir, root, plots=bc.plots, alerting=alerting)
    return {"computed": computed, "reused": len(rows) - computed, "logged": logged, "reports": reports, "rows": rows}
