"""One task over many inputs on the Dask cluster of the ``cluster`` section (`tasks.cluster`):
the benchmark's cells, the tuning's studies, the scoring's batches of series. A flow hands them
to this sub-flow with the cluster as its task runner
(``fan_out.with_options(task_runner=task_runner(cfg.cluster))``), so the flow keeps its own
runner wherever it is started from (the command line, `dvc repro`, a deployment)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prefect import flow


@flow(name="on cluster", flow_run_name="{name}", validate_parameters=False)
def fan_out(name: str, task, inputs: Callable[[], Iterable[dict]], on_result: Callable) -> None:
    """``task`` submitted once for each of ``inputs()``; ``on_result`` called with each result
    as it finishes (in the calling process, so it may print or count).

    ``inputs`` is a function that gives them, not the list: a flow run's parameters go to the
    Prefect API, which refuses more than 512 KB of them, and the full benchmark's 1,940 cells
    are 4.7 MB; a function goes there as ``{}``."""
    from prefect.futures import as_completed

    futures = [task.submit(**kwargs) for kwargs in inputs()]
    for future in as_completed(futures):
        on_result(future.result())
