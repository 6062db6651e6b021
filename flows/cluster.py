"""One task over many inputs, in this process or on the Dask cluster of the ``cluster`` section
(`tasks.cluster`): the benchmark's cells, the tuning's studies, the scoring's batches of series.
On a cluster the inputs go to a sub-flow whose task runner is the cluster's, so a flow keeps its
own runner wherever it is started from (the command line, `dvc repro`, a deployment)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prefect import flow

from tasks.cluster import task_runner


@flow(name="on cluster", flow_run_name="{name}", validate_parameters=False)
def fan_out(name: str, task, inputs: list[dict], on_result: Callable) -> None:
    """``task`` submitted once for each of ``inputs``; ``on_result`` called with each result as
    it finishes (in the calling process, so it may print or count)."""
    from prefect.futures import as_completed

    futures = [task.submit(**kwargs) for kwargs in inputs]
    for future in as_completed(futures):
        on_result(future.result())


def each_result(name: str, task, inputs: Iterable[dict], cluster, on_result: Callable) -> None:
    """``on_result`` of ``task`` run on each of ``inputs`` (keyword arguments): on ``cluster``'s
    Dask workers where it names any (a `vigil.config.ClusterConfig`), results in the order they
    finish; else called here, one after another, in order, with no task run around each."""
    runner = task_runner(cluster)
    if runner is None:
        for kwargs in inputs:
            on_result(task.fn(**kwargs))
        return
    fan_out.with_options(task_runner=runner)(name, task, list(inputs), on_result)
