"""Names of flow runs in the Prefect UI: what a run is about (the dataset and series, the
landing folder, the benchmark's series) instead of Prefect's random adjective-animal. Each is a
``flow_run_name`` callable, read from the run's parameters: a `Config` when a command calls the
flow, its JSON form when a deployment starts it."""

from __future__ import annotations

from collections.abc import Callable

LONGEST = 120  # characters: a run name is a line in a table


def _field(obj, *path):
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
        if obj is None:
            return None
    return obj


def _parameters() -> dict:
    from prefect.runtime import flow_run

    return flow_run.parameters or {}


def _short(name: str) -> str:
    return name if len(name) <= LONGEST else name[: LONGEST - 1] + "…"


def dataset_run(flow: str) -> Callable[[], str]:
    """``<flow> <kind>:<series>``, e.g. ``pipeline smd:machine-1-2``."""

    def name() -> str:
        cfg = _parameters().get("cfg")
        kind, series = _field(cfg, "dataset", "kind"), _field(cfg, "dataset", "name")
        return _short(f"{flow} {kind}:{series}") if kind else flow

    return name


def score_run() -> str:
    """``score <landing folder>``."""
    landing = _field(_parameters().get("cfg"), "scoring", "landing")
    return _short(f"score {landing}") if landing else "score"


def benchmark_run() -> str:
    """``benchmark every series``, or the series of a partial run (``only``)."""
    only = _parameters().get("only")
    return _short("benchmark " + (", ".join(only) if only else "every series"))
