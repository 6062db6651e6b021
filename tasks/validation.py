"""Great Expectations suites over the raw input, run before any strict loader or write."""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from components.datasets import DataError, DatasetSource, RawTable, raw_tables


class ValidationFailed(DataError):
    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "float16", "float32", "float64"]


def build_suite(table: RawTable, min_rows: int, min_value: float | None, max_value: float | None):
    """The suite for ``table``: its expected columns and row count; per metric present, numeric
    type, no nulls, finite (and within the configured range); time not null and strictly
    increasing; labels 0/1."""
    return _suite(
        table.role,
        tuple(table.columns),
        table.rows,
        tuple(table.metrics),
        table.time_column,
        table.label_column,
        table.time_mostly,
        frozenset(table.frame.columns),
        min_rows,
        min_value,
        max_value,
    )


# Cached: building ~120 expectations costs about a second, and a scoring run validates every
# arriving file of a source against the same suite. Callers only read the suite.
@functools.lru_cache(maxsize=32)
def _suite(role, columns, rows, metrics, time_column, label_column, time_mostly, present, min_rows, lo, hi):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"vigil.{role}")
    suite.add_expectation(gxe.ExpectTableColumnsToMatchOrderedList(column_list=list(columns)))
    if rows is not None:
        suite.add_expectation(gxe.ExpectTableRowCountToEqual(value=rows))
    else:
        suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=min_rows))
    # a finite value range always: infinities fail it; the configured range, where known
    lo = -np.finfo(np.float64).max if lo is None else lo
    hi = np.finfo(np.float64).max if hi is None else hi
    for col in (c for c in metrics if c in present):
        suite.add_expectation(gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMERIC_TYPES))
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=col))
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi))
    if time_column and time_column in present:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=time_column))
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeIncreasing(column=time_column, strictly=True, mostly=time_mostly)
        )
    if label_column and label_column in present:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=label_column))
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=label_column, value_set=[0, 1]))
    return suite


@dataclass
class Problem:
    file: str
    expectation: str
    column: str | None
    rows: list  # 0-based rows of the table
    detail: str
    where: str = ""  # the same rows as a user finds them: "lines [9]" in a text file, else "rows [7]"

    def __str__(self) -> str:
        col = f", column {self.column!r}" if self.column else ""
        where = f", {self.where}" if self.where else ""
        return f"{self.file}: {self.expectation}{col}{where}: {self.detail}"


def _not_numeric_rows(frame: pd.DataFrame, column: str) -> list[int]:
    """The rows of a column that hold something that is not a number (GX reports only the type)."""
    values = frame[column]
    bad = pd.to_numeric(values, errors="coerce").isna() & values.notna()
    return np.flatnonzero(bad.to_numpy()).tolist()


def validate_tables(
    tables: list[RawTable], min_rows: int, min_value=None, max_value=None, *, details: bool = True
) -> dict:
    """Run one suite per table; returns the JSON-able report (``success``, ``problems``, ``results``).

    ``details=False`` asks GX for pass/fail only (no rows, no stored results): several times
    cheaper on large tables, for a caller that reruns with details when a table fails."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    source = context.data_sources.add_pandas("vigil")
    report = {"success": True, "problems": [], "results": []}
    for i, table in enumerate(tables):
        frame = table.frame
        if table.time_column and table.time_column in frame.columns:
            frame = frame.assign(**{table.time_column: pd.to_datetime(frame[table.time_column], errors="coerce")})
        asset = source.add_dataframe_asset(name=f"{table.role}{i}")
        batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
        suite = build_suite(table, min_rows, min_value, max_value)
        result = batch.validate(suite, result_format="COMPLETE" if details else "BOOLEAN_ONLY")
        if not details:
            report["success"] &= bool(result.success)
            continue
        report["results"].append({"file": str(table.path), "role": table.role, "result": result.to_json_dict()})
        wrong_type = {
            r.expectation_config.kwargs.get("column")
            for r in result.results
            if not r.success and r.expectation_config.type == "expect_column_values_to_be_in_type_list"
        }
        for r in result.results:
            if r.success:
                continue
            cfg = r.expectation_config
            res = r.result or {}
            if (
                cfg.kwargs.get("column") in wrong_type
                and res.get("unexpected_count") is None
                and cfg.type != "expect_column_values_to_be_in_type_list"
            ):
                continue  # a value check GX could not evaluate on a column that is not numeric at all
            rows = (res.get("unexpected_index_list") or [])[:5]
            column = cfg.kwargs.get("column")
            if cfg.type == "expect_column_values_to_be_in_type_list" and column in table.frame.columns:
                rows = _not_numeric_rows(table.frame, column)[:5]
            if res.get("observed_value") is not None:  # a table-level expectation
                expected = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "column")}
                detail = f"expected {expected}, observed {res['observed_value']}"
            else:
                values = (res.get("partial_unexpected_list") or [])[:5]
                detail = f"{res.get('unexpected_count')} unexpected values, e.g. {values}"
            where = table.where(rows) if rows else ""
            report["problems"].append(Problem(str(table.path), cfg.type, column, rows, detail, where).__dict__)
        report["success"] &= bool(result.success)
    return report


@task(name="validate raw data")
def validate_raw(
    source: DatasetSource,
    report_path: Path,
    *,
    min_rows: int,
    min_value: float | None = None,
    max_value: float | None = None,
) -> dict:
    """Validate every raw file of ``source``; stop the run on any failure.

    The report is written to ``report_path`` (JSON) either way; nothing else is written."""
    try:
        tables = raw_tables(source)
    except (DataError, ValueError) as exc:
        raise ValidationFailed(f"validation could not read the raw data: {exc}", {"success": False}) from None
    report = validate_tables(tables, min_rows, min_value, max_value)
    report_path = Path(report_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    if not report["success"]:
        lines = [str(Problem(**p)) for p in report["problems"]]
        raise ValidationFailed(
            "raw data failed validation:\n  " + "\n  ".join(lines) + f"\n(report: {report_path})", report
        )
    return report
