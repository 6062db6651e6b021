"""A task for the tests of `flows.cluster.fan_out`, importable by the workers a test's
`LocalCluster` spawns (they inherit its PYTHONPATH)."""

from prefect import task
from prefect.cache_policies import NO_CACHE


@task(cache_policy=NO_CACHE)
def length_of(i: int, payload: str) -> tuple[int, int, int]:
    """The input's number and length, and how many bytes the flow run's parameters took in the
    context this task run was sent with (Prefect copies them into every task it submits)."""
    import cloudpickle
    from prefect.context import FlowRunContext

    return i, len(payload), len(cloudpickle.dumps(FlowRunContext.get().parameters))
