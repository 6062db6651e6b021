"""One task over many inputs on the Dask cluster of the ``cluster`` section (`tasks.cluster`):
the benchmark's cells, the tuning's studies, the scoring's batches of series. A flow hands them
to this sub-flow with the cluster as its task runner
(``fan_out.with_options(task_runner=task_runner(cfg.cluster))(name, work)``, ``work`` from
`tasks.cluster.handed_over`), so the flow keeps its own runner wherever it is started from (the
command line, `dvc repro`, a deployment)."""

from __future__ import annotations

from prefect import flow

from tasks.cluster import taken


@flow(name="on cluster", flow_run_name="{name}")
def fan_out(name: str, work: str) -> None:
    """The task handed over under ``work`` (`tasks.cluster.handed_over`) submitted once for
    each of its inputs; its ``on_result`` called with each result as it finishes (in the
    calling process, so it may print or count)."""
    from prefect.futures import as_completed

    task, inputs, on_result = taken(work)
    futures = [task.submit(**kwargs) for kwargs in inputs]
    for future in as_completed(futures):
        on_result(future.result())
