"""What `benchmarks/spread.py` and `benchmarks/uae_combine.py` share: every series of the
configured datasets prepared as the benchmark prepares it, and the table of a per-dataset
choice by its mean VUS-PR over the validation heads that hold a label (the test tails printed
beside it, never the basis of the choice)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from components.benchmark import PreparedSeries, prepare_series
from components.datasets.kinds import load_dataset
from tasks.benchmark import plan_series


def each_prepared_series(cfg, repo: Path, names: list[str] | None) -> Iterator[tuple[str, PreparedSeries]]:
    """(dataset name, prepared series) of every series of ``benchmark.datasets`` (those
    ``names`` only, when given); a dataset that is absent is said and skipped."""
    chosen = {n: d for n, d in cfg.benchmark.datasets.items() if not names or n in names}
    plan, skipped = plan_series(chosen, repo, None)
    for why in skipped:
        print(why)
    preparation = cfg.preprocessing.model_dump()  # validation fraction, scaler, clip: as the benchmark prepares
    for dataset, source, _ in plan:
        yield dataset, prepare_series(source.kind, load_dataset(source), **preparation)


def print_choice_table(what: str, choices: list[str], figures: dict[str, dict[str, list[list[float]]]]) -> None:
    """``figures``: dataset -> split -> one row of VUS-PRs (one per choice) per series; each
    dataset's choice is the one with the highest mean on the validation heads."""
    width = max(6, *map(len, choices))
    print(f"{'dataset':8} {'split':24} " + " ".join(f"{c:>{width}}" for c in choices) + f"  {what} (validation)")
    for dataset, splits in figures.items():
        val = np.mean(splits.get("validation", [[np.nan] * len(choices)]), axis=0)
        best = choices[int(np.nanargmax(val))] if np.isfinite(val).any() else choices[0]
        for split, rows in sorted(splits.items(), reverse=True):  # validation, then test
            mean = np.mean(rows, axis=0)
            label = f"{split} ({len(rows)} series)" + (" *" if split == "test" else "")
            chosen = f"  {best}" if split == "validation" else ""
            print(f"{dataset:8} {label:24} " + " ".join(f"{v:{width}.3f}" for v in mean) + chosen)
    print("* the test tails: context only, never the basis of the choice")
