"""The evidence behind uae's ``combine`` per dataset (params.yaml's
``benchmark.datasets.<name>.detectors``): for each way of combining the per-metric errors into
one score, the mean VUS-PR over the series whose validation head holds a label, and, for context
only, over the test tails.

How a fleet's metrics drift after train is a property of the fleet rather than of one series,
so, like kmeans's spread (`benchmarks/spread.py`), the combination is chosen per dataset on the
validation heads only; the test-tail rows are never the basis of a choice. Each series is
prepared as the benchmark prepares it, uae (its configured parameters) is fitted on train once,
and the validation head and test tail are each scored alone, as a benchmark cell scores them;
each combination then combines the same per-metric errors, exactly as `UnivariateAE` does with
that ``combine`` (and ``recent``, for ``gauss_dynamic``).

    .venv/bin/python benchmarks/uae_combine.py [--datasets smd msl ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.per_dataset_choice import each_prepared_series, print_choice_table  # noqa: E402
from components.detectors import get_detector  # noqa: E402
from components.metrics import vus_pr  # noqa: E402
from vigil.config import load_config  # noqa: E402

# (combine, recent): recent is read by gauss_dynamic only
CHOICES = (("gauss", None), ("mean", None), ("max", None)) + tuple(
    ("gauss_dynamic", r) for r in (500, 1000, 2000, 5000)
)


def label(choice: tuple[str, int | None]) -> str:
    combine, recent = choice
    return combine if recent is None else f"{combine} {recent}"


def combined(det, parts: np.ndarray, kept: np.ndarray, choice: tuple[str, int | None]) -> np.ndarray:
    """The score ``det`` would give with this combination: its fitted static statistics, and
    for gauss_dynamic the last ``recent`` of the held-out tail's errors ``kept`` by a fit with
    the longest ``recent`` (training does not depend on ``combine``)."""
    combine, recent = choice
    det.set_params(combine=combine, **({"recent": recent} if recent else {}))
    det.recent_errors_ = kept[-recent:] if recent else kept[:0]
    return det._combine(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="*", help="names of benchmark.datasets (default: all)")
    args = ap.parse_args()
    cfg = load_config(REPO / "params.yaml")
    # one fit keeps the longest tail of errors any choice reads; each choice then combines alike
    longest = max(r for _, r in CHOICES if r)
    params = {**cfg.detectors["uae"], "combine": "gauss_dynamic", "recent": longest}
    window = cfg.evaluation.vus_window
    figures: dict[str, dict[str, list[list[float]]]] = {}  # dataset -> split -> one row of choices per series
    t0 = time.perf_counter()
    for dataset, series in each_prepared_series(cfg, REPO, args.datasets):
        det = get_detector("uae", **params).fit(series.train)
        kept = det.recent_errors_
        for split, x, labels in (
            ("validation", series.validation, series.validation_labels),
            ("test", series.test, series.test_labels),
        ):
            if labels.any():
                parts = det._step_parts(x)[0]
                row = [vus_pr(labels, combined(det, parts, kept, c), window) for c in CHOICES]
                figures.setdefault(dataset, {}).setdefault(split, []).append(row)
    fitted = {k: v for k, v in params.items() if k not in ("combine", "recent")}
    print(f"uae ({fitted}), mean VUS-PR by combine, {time.perf_counter() - t0:.0f} s")
    print_choice_table("chosen", [label(c) for c in CHOICES], figures)


if __name__ == "__main__":
    main()
