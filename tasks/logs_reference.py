"""Prefect tasks of the `logs-reference` flow: the reference model of each log format on its
logs (components/logs/reference.py), and its MLflow run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task

from components.logs import read_incidents
from components.logs.formats import get_format

from .logs import day_files

REFERENCE_REPORT = Path("reports/logs_reference.json")  # relative to the checkout


def read_all_events(log_format: str, folder: Path) -> pd.DataFrame:
    """Every event of ``folder``'s day files, in one table (for the reference models)."""
    read_file = get_format(log_format).read_file
    return pd.concat([read_file(path)[0] for path in day_files(log_format, folder)], ignore_index=True)


@task(name="reference model")
def run_reference(log_format: str, folder: Path, settings: dict, train_fraction: float) -> dict:
    """The reference model of ``log_format`` on ``folder``'s logs (components/logs/reference.py):
    for billing records, the regression with the configured ``order`` and with the other one."""
    from components.logs.reference import billing_reference, transfer_reference

    events, incidents = read_all_events(log_format, folder), read_incidents(folder)
    if log_format == "dcache_billing":
        orders = [settings["order"], *({"time", "random"} - {settings["order"]})]
        return {o: billing_reference(events, incidents, **{**settings, "order": o}) for o in orders}
    return transfer_reference(events, incidents, train_fraction=train_fraction, **settings)


def log_reference_run(
    figures: dict, log_format: str, params: dict, tracking_uri: str, experiment: str, artifact_root: Path, tags: dict
) -> str:
    """One MLflow run per reference model: its parameters, every numeric figure (nested keys
    joined by '.'), the whole report as an artifact. Returns the run id."""
    from .registry import process_tags, setup_mlflow

    mlflow = setup_mlflow(tracking_uri, experiment, artifact_root)
    with mlflow.start_run(run_name=f"reference {log_format}", tags={**tags, **process_tags()}) as run:
        mlflow.log_params({k: str(v) for k, v in params.items()})
        mlflow.log_metrics({k.replace("*", "all"): v for k, v in _numbers(figures).items()})
        mlflow.log_dict(figures, f"{log_format}_reference.json")
    return run.info.run_id


def _numbers(tree: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_numbers(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name[:250]] = float(value)
    return out
