"""A task for the tests of `flows.cluster.fan_out`, importable by the workers a test's
`LocalCluster` spawns (they inherit its PYTHONPATH)."""

from prefect import task
from prefect.cache_policies import NO_CACHE


@task(cache_policy=NO_CACHE)
def length_of(i: int, payload: str) -> tuple[int, int]:
    return i, len(payload)
