"""The Dask cluster a flow's tasks run on (``cluster`` section; README: Scaling out): Prefect's
`DaskTaskRunner` from prefect-dask, on a `LocalCluster` of N single-thread worker processes on
127.0.0.1, or on a running scheduler (the sub-flow `flows.cluster.fan_out` runs on it).

A worker runs Vigil's tasks by importing them, so it needs Vigil installed, and it reads and
writes only through paths and URLs every worker reaches (the flow passes absolute ones)."""

from __future__ import annotations

import contextlib
import uuid

# work handed to the fan-out flow in this process, by key (`handed_over`)
_HANDED: dict[str, tuple] = {}


def task_runner(cluster):
    """The `DaskTaskRunner` for ``cluster`` (a `vigil.config.ClusterConfig`), or None for the
    flow's default (its tasks run in the flow's own process)."""
    if not cluster.distributed:
        return None
    from prefect_dask import DaskTaskRunner

    if cluster.scheduler:
        return DaskTaskRunner(address=cluster.scheduler)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": cluster.workers,
            "threads_per_worker": 1,  # torch and BLAS threads: one process a core, not threads that contend
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",  # loopback, any free port: two clusters side by side
        },
    )


def describe(cluster) -> str:
    """Where a run's tasks go, for its first progress line."""
    if cluster.scheduler:
        return f"on the Dask cluster at {cluster.scheduler}"
    if cluster.workers:
        return f"on a local Dask cluster of {cluster.workers} worker process(es)"
    return "in this process"


@contextlib.contextmanager
def handed_over(task, inputs: list[dict], on_result):
    """A key under which `flows.cluster.fan_out`, called in this process, finds ``task``, its
    ``inputs`` and ``on_result``. They never become the flow run's parameters: Prefect sends
    those to its API (which refused the full benchmark's 1,940 cells, 4.7 MB, past its 512 KB)
    and copies them into the context of every task the flow submits (as a closure over the
    list, 1,940 copies: 7.8 GB held by the command)."""
    key = uuid.uuid4().hex
    _HANDED[key] = (task, inputs, on_result)
    try:
        yield key
    finally:
        _HANDED.pop(key, None)


def taken(key: str) -> tuple:
    """(task, inputs, on_result) handed over under ``key``."""
    return _HANDED[key]
