"""Telemetry pulled from a real Prometheus (Debian's, its TSDB backfilled with promtool, on a
loopback port in a temporary folder) into the landing folder: what lands, what waits, what is
refused, and the messages that say so. That the landed files score exactly as the same
telemetry landed as CSV is tests/test_scoring.py's."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from support.servers import free_port, running_prometheus

import tasks.scoring  # noqa: F401  (Prefect sets up logging as it is imported: before caplog's handler, not over it)
from tasks.prometheus import PrometheusError, PrometheusSource, pull, query_range

T0 = 1_790_000_040  # a minute's start (2026-09-21 UTC)


def sample(name: str, labels: str, values: dict[int, str]) -> list[str]:
    return [f"{name}{{{labels}}} {v} {T0 + 60 * i}" for i, v in sorted(values.items())]


BACKFILL = "\n".join([
    "# TYPE cpu gauge",
    *sample("cpu", 'instance="web-1"', {i: f"{i}.5" for i in range(10)}),
    *sample("cpu", 'instance="web-2"', {i: "1" for i in range(10) if i != 4}),  # a gap at step 4
    *sample("cpu", 'instance="db/1"', {i: "1" for i in range(10)}),  # not a series name
    *sample("cpu", 'job="orphan"', {i: "1" for i in range(10)}),  # no instance label
    "# TYPE mem gauge",
    *sample("mem", 'instance="web-1"', {i: str(100 + i) for i in range(10)}),
    *sample("mem", 'instance="web-2"', {i: "NaN" if i == 7 else "2" for i in range(10)}),
    *sample("mem", 'instance="db/1"', {i: "1" for i in range(10)}),
    "# EOF",
]) + "\n"  # fmt: skip


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), BACKFILL, free_port()) as url:
        yield url


def source(url: str, **metrics) -> PrometheusSource:
    reach = 60 * 24 * 365  # minutes: a year back, to the backfilled samples
    return PrometheusSource(
        url, metrics or {"cpu": "cpu", "mem": "mem"}, step_seconds=60, lookback_minutes=reach, delay_seconds=0
    )


def test_a_pull_lands_each_series_once_in_the_champions_column_order(prometheus, tmp_path, caplog):
    now = T0 + 60 * 9
    with caplog.at_level(logging.WARNING):
        landed = pull(source(prometheus), tmp_path, {}, "timestamp", ["mem", "cpu"], now=now)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in landed) == [
        f"web-1/prometheus-{now:012d}.csv", f"web-2/prometheus-{now:012d}.csv"]  # fmt: skip
    web1 = pd.read_csv(tmp_path / "web-1" / f"prometheus-{now:012d}.csv")
    assert list(web1.columns) == ["timestamp", "mem", "cpu"]
    assert web1["cpu"].tolist() == [i + 0.5 for i in range(10)] and web1["timestamp"][0] == "2026-09-21T14:14:00"
    web2 = pd.read_csv(tmp_path / "web-2" / f"prometheus-{now:012d}.csv")
    assert web2["cpu"].isna().tolist() == [i == 4 for i in range(10)]  # left empty: validation quarantines it
    assert web2["mem"].isna().tolist() == [i == 7 for i in range(10)]
    said = caplog.text
    assert "'db/1'" in said and "not a series name" in said and "without the label 'instance'" in said
    # the next pull starts after the waiting files: nothing new, nothing landed twice
    assert pull(source(prometheus), tmp_path, {}, "timestamp", ["mem", "cpu"], now=now) == []


def test_a_pull_starts_after_the_watermark_and_waits_for_a_missing_metric(prometheus, tmp_path, caplog):
    marks = {"web-1": "2026-09-21 14:20:00"}  # step 6
    landed = pull(source(prometheus), tmp_path, marks, "timestamp", ["cpu", "mem"], now=T0 + 60 * 9)
    web1 = pd.read_csv([p for p in landed if p.parent.name == "web-1"][0])
    assert web1["cpu"].tolist() == [7.5, 8.5, 9.5]
    with caplog.at_level(logging.WARNING):
        none = pull(source(prometheus, cpu="cpu", mem='mem{instance!="web-1"}'), tmp_path / "x", {}, "timestamp",
                    ["cpu", "mem"], now=T0 + 60 * 9)  # fmt: skip
    assert "web-1" not in {p.parent.name for p in none}
    assert "returned nothing for instance='web-1'" in caplog.text and "wait for the next pull" in caplog.text


def test_a_query_prometheus_refuses_names_server_query_and_range(prometheus, tmp_path):
    with pytest.raises(PrometheusError) as refused:
        query_range(source(prometheus), "rate(", T0, T0 + 600)
    said = str(refused.value)
    assert prometheus in said and "query 'rate('" in said and "2026-09-21T14:14:00" in said and "bad_data" in said
    with pytest.raises(PrometheusError, match="names no query for \\['disk'\\]"):
        pull(source(prometheus), tmp_path, {}, "timestamp", ["cpu", "disk"], now=T0 + 600)
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusError, match=f"Prometheus {nobody}: query 'up' from .* Connection refused"):
        query_range(PrometheusSource(nobody, {}), "up", T0, T0 + 60)


def test_a_long_range_is_read_in_chunks_prometheus_accepts(prometheus):
    src = PrometheusSource(prometheus, {}, step_seconds=0.04)  # 15,001 steps over 10 minutes: past its 11,000
    [series] = query_range(src, "vector(1)", T0, T0 + 600)
    times = [round(float(t) * 1000) for t, _ in series["values"]]
    assert times == list(range(T0 * 1000, (T0 + 600) * 1000 + 1, 40))
