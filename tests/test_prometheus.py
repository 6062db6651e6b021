"""Telemetry pulled from a real Prometheus (Debian's, its TSDB backfilled with promtool, on a
loopback port in a temporary folder) into the landing folder: what lands, what waits, what is
refused, and the messages that say so. That the landed files score exactly as the same
telemetry landed as CSV is tests/test_scoring.py's."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from support.servers import free_port, running_prometheus

import tasks.scoring  # noqa: F401  (Prefect sets up logging as it is imported: before caplog's handler, not over it)
from tasks.prometheus import PrometheusError, PrometheusSource, export, pull, query_range

T0 = 1_790_000_040  # a minute's start (2026-09-21 UTC)


def sample(name: str, labels: str, values: dict[int, str]) -> list[str]:
    return [f"{name}{{{labels}}} {v} {T0 + 60 * i}" for i, v in sorted(values.items())]


BACKFILL = "\n".join([
    "# TYPE cpu gauge",
    *sample("cpu", 'instance="web-1"', {i: f"{i}.5" for i in range(10)}),
    *sample("cpu", 'instance="web-2"', {i: "1" for i in range(10) if i != 4}),  # a gap at step 4
    *sample("cpu", 'instance="db/1"', {i: "1" for i in range(10)}),  # not a series name
    *sample("cpu", 'instance="web-3"', {i: "1" for i in range(3, 10)}),  # a rate() that starts late
    *sample("cpu", 'job="orphan"', {i: "1" for i in range(10)}),  # no instance label
    "# TYPE mem gauge",
    *sample("mem", 'instance="web-1"', {i: str(100 + i) for i in range(10)}),
    *sample("mem", 'instance="web-2"', {i: "NaN" if i == 7 else "2" for i in range(10)}),
    *sample("mem", 'instance="db/1"', {i: "1" for i in range(10)}),
    *sample("mem", 'instance="web-3"', {i: "1" for i in range(10)}),
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
        f"{name}/prometheus-{now:012d}.csv" for name in ("web-1", "web-2", "web-3")]  # fmt: skip
    web1 = pd.read_csv(tmp_path / "web-1" / f"prometheus-{now:012d}.csv")
    assert list(web1.columns) == ["timestamp", "mem", "cpu"]
    assert web1["cpu"].tolist() == [i + 0.5 for i in range(10)] and web1["timestamp"][0] == "2026-09-21T14:14:00"
    web2 = pd.read_csv(tmp_path / "web-2" / f"prometheus-{now:012d}.csv")
    assert web2["cpu"].isna().tolist() == [i == 4 for i in range(10)]  # left empty: validation quarantines it
    assert web2["mem"].isna().tolist() == [i == 7 for i in range(10)]
    web3 = pd.read_csv(tmp_path / "web-3" / f"prometheus-{now:012d}.csv")  # from its first step with every metric
    assert web3["timestamp"][0] == "2026-09-21T14:17:00" and len(web3) == 7
    said = caplog.text
    assert "a series not read (no label 'instance'): {'__name__': 'cpu', 'job': 'orphan'}" in said
    assert [ln for ln in said.splitlines() if "'db/1'" in ln and "a series not read" in ln]
    # the next pull starts after the waiting files, and after those quarantined: nothing twice
    refused = tmp_path / "quarantine" / "web-2"
    refused.mkdir(parents=True)
    (tmp_path / "web-2" / f"prometheus-{now:012d}.csv").rename(refused / f"prometheus-{now:012d}.csv")
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


def test_an_export_is_a_dataset_of_kind_prometheus_and_never_overwrites_a_users_folder(prometheus, tmp_path):
    from components.datasets import DataError, DatasetSource, load_dataset

    out = tmp_path / "data"
    assert export(source(prometheus), out, T0, T0 + 540, train_fraction=0.5) == ["web-1", "web-2", "web-3"]
    web1 = load_dataset(DatasetSource("prometheus", out, "web-1"))
    assert web1.features == ["cpu", "mem"] and len(web1.train) == 5 and len(web1.test) == 5
    assert web1.train["cpu"].tolist() == [0.5, 1.5, 2.5, 3.5, 4.5] and web1.labels.sum() == 0
    with pytest.raises(DataError, match="NaN or infinite"):  # web-2's gap and NaN: named, never filled in
        load_dataset(DatasetSource("prometheus", out, "web-2"))
    stamp = json.loads((out / "telemetry.json").read_text())
    assert stamp["source"] == "prometheus" and stamp["metrics"] == {"cpu": "cpu", "mem": "mem"}
    doubled = source(prometheus, cpu="cpu", mem="mem * 2")
    assert export(doubled, out, T0, T0 + 540) == ["web-1", "web-2", "web-3"]  # the earlier export replaced
    assert load_dataset(DatasetSource("prometheus", out, "web-1")).train["mem"].tolist()[0] == 200
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="no telemetry.json of one"):
        export(source(prometheus), mine, T0, T0 + 540)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_vigil_prometheus_export_reads_the_queries_of_params(prometheus, tmp_path):
    import subprocess

    import yaml
    from support import REPO
    from support.workspace import VIGIL

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "none.yaml").write_text(yaml.safe_dump(params))
    refused = subprocess.run([VIGIL, "prometheus", "export", "--params", str(tmp_path / "none.yaml"), "--minutes",
                              "5", "--out", str(tmp_path / "x")], capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "scoring.prometheus is not set" in refused.stderr
    params["scoring"]["prometheus"] = {"url": prometheus, "metrics": {"cpu": "cpu", "mem": "mem"}, "step_seconds": 60}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = subprocess.run([VIGIL, "prometheus", "export", "--params", str(tmp_path / "params.yaml"), "--start",
                          "2026-09-21T14:14:00", "--end", "2026-09-21T14:23:00", "--out", str(tmp_path / "data")],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "exported 3 series" in out.stdout and (tmp_path / "data" / "web-1" / "train.csv").is_file()


def test_a_query_giving_two_series_for_one_name_is_not_read(prometheus, tmp_path, caplog):
    ambiguous = source(prometheus, cpu='{__name__=~"cpu|mem"}', mem="mem")  # two series an instance: cpu, mem
    with caplog.at_level(logging.WARNING):
        landed = pull(ambiguous, tmp_path, {}, "timestamp", ["cpu", "mem"], now=T0 + 540)
    assert landed == []
    assert "returned more than one series for instance='web-1'" in caplog.text and "sum by (instance)" in caplog.text
