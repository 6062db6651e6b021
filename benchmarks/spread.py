"""The evidence behind a detector's ``spread`` per dataset (params.yaml's
``benchmark.datasets.<name>.detectors``): for each spread, the mean VUS-PR over the series whose
validation head holds a label, and, for context only, over the test tails.

A spread is a choice about how a dataset labels its anomalies (NAB's windows open well before
the fault; SMD's segments are the fault's own steps), so it is chosen per dataset, on the
validation heads only: the test-tail column is never the basis of a choice. Each series is
prepared as the benchmark prepares it, the detector (its configured parameters, spread 0) is
fitted on train once, and the validation head and test tail are each scored alone, as a
benchmark cell scores them; a spread is then exactly `spread_to_neighbours` of those scores.

    .venv/bin/python benchmarks/spread.py [--detector kmeans] [--datasets nab msl ...]
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
from components.detectors.base import spread_to_neighbours  # noqa: E402
from components.metrics import vus_pr  # noqa: E402
from vigil.config import load_config  # noqa: E402

SPREADS = (0, 10, 25, 50, 100, 200)


def spread_scores(scores: np.ndarray, steps: int) -> np.ndarray:
    return spread_to_neighbours(scores, np.zeros((len(scores), 1)), steps)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", default="kmeans")
    ap.add_argument("--datasets", nargs="*", help="names of benchmark.datasets (default: all)")
    args = ap.parse_args()
    cfg = load_config(REPO / "params.yaml")
    params = {**cfg.detectors[args.detector], "spread": 0}
    window = cfg.evaluation.vus_window
    figures: dict[str, dict[str, list[list[float]]]] = {}  # dataset -> split -> one row of spreads per series
    t0 = time.perf_counter()
    for dataset, series in each_prepared_series(cfg, REPO, args.datasets):
        det = get_detector(args.detector, **params).fit(series.train)
        for split, x, labels in (
            ("validation", series.validation, series.validation_labels),
            ("test", series.test, series.test_labels),
        ):
            if labels.any():
                scores = det.score(x).astype(np.float64)
                row = [vus_pr(labels, spread_scores(scores, k), window) for k in SPREADS]
                figures.setdefault(dataset, {}).setdefault(split, []).append(row)
    print(f"{args.detector} ({params}), mean VUS-PR by spread, {time.perf_counter() - t0:.0f} s")
    print_choice_table("chosen", [str(k) for k in SPREADS], figures)


if __name__ == "__main__":
    main()
