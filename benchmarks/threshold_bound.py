"""How much threshold retention a rule with one global parameter could keep at most (README:
Benchmark, issue "Alerts an operator can trust"): where the configured alert rules lose, is it
the rule, or do the scores of the test tail sit elsewhere than those it was set on?

For every stored Vigil cell with a labelled test tail, each cell's own smoothing (its alert
rule's, as stored) is kept and only the threshold varies, set by one of three families, each
with one parameter shared by every series of a dataset:

- ``head quantile``: the ``q`` quantile of the validation head's scores (label-free);
- ``tail quantile``: the ``q`` quantile of the held-out train tail's scores (label-free);
- ``labelled share``: the quantile of the head's scores that flags ``m`` times the share of
  the head's steps that are labelled (heads that hold labels only).

Retention is the benchmark's: point F1 at the threshold on the test tail (smoothed with the
head's steps before it, as a stream would be) over the best achievable F1 (over every threshold,
on the raw scores or on the smoothed ones, whichever is higher: `best_achievable_f1`). The
parameter is then **picked on the test tails themselves**, per dataset and detector: the
figure is a bound that no honest rule of its family can pass, never a rule, and is printed
beside the retention the configured rule keeps on the same series.

Reads the stored cells of a finished benchmark (``benchmark.folder``: `vigil benchmark`, or
`dvc pull reports/dvc.yaml:benchmark`); fits nothing, a few minutes on 2 cores:

    .venv/bin/python benchmarks/threshold_bound.py [--datasets smd msl ...] [--detectors uae kmeans ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.alerting import AlertRule  # noqa: E402
from components.evaluation import best_achievable_f1  # noqa: E402
from components.metrics import point_prf  # noqa: E402
from tasks.benchmark import read_series  # noqa: E402
from vigil.config import load_config  # noqa: E402

QUANTILES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
SHARE_MULTIPLES = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
FAMILIES = ("head quantile", "tail quantile", "labelled share")


def family_thresholds(val: np.ndarray, calibration: np.ndarray, val_labels: np.ndarray) -> dict[tuple, float]:
    """(family, parameter) -> threshold, on scores smoothed as the cell's rule smooths them."""
    out = {("head quantile", q): float(np.quantile(val, q)) for q in QUANTILES}
    if len(calibration):
        out.update({("tail quantile", q): float(np.quantile(calibration, q)) for q in QUANTILES})
    share = float(np.mean(val_labels))
    if share > 0:
        for m in SHARE_MULTIPLES:
            out[("labelled share", m)] = float(np.quantile(val, max(0.0, 1.0 - m * share)))
    return out


def cell_retentions(cell: Path, row: dict, repo: Path) -> tuple[float, dict[tuple, float]] | None:
    """The cell's stored retention and every (family, parameter)'s; None where its test tail
    holds no label or its best achievable F1 is 0."""
    figures = row.get("figures") or {}
    raw_oracle, stored = figures.get("oracle_point_f1"), figures.get("threshold_retention")
    if raw_oracle is None or stored is None:
        return None
    series = read_series(row["dataset"], row["series"], repo / row["processed_path"])
    z = np.load(cell.with_suffix(".npz"), allow_pickle=False)
    rule = AlertRule.from_dict(row["alert_rule"])  # its smoothing, as evaluation applied it
    val = rule.smoothed(z["validation"])
    calibration = rule.smoothed(z["calibration"]) if len(z["calibration"]) else np.empty(0)
    test = rule.smoothed(z["test"], z["validation"])
    y = series.test_labels.astype(bool)
    oracle = best_achievable_f1(y, raw_oracle, test)
    if oracle <= 0:
        return None
    out = {
        key: point_prf(y, test >= t)[2] / oracle
        for key, t in family_thresholds(val, calibration, series.validation_labels).items()
    }
    return float(stored), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="*", help="names of benchmark.datasets (default: all)")
    ap.add_argument("--detectors", nargs="*", help="Vigil detectors (default: every one in the cells)")
    args = ap.parse_args()
    cfg = load_config(REPO / "params.yaml")
    folder = REPO / cfg.benchmark.folder / "cells"
    t0 = time.perf_counter()
    # (dataset, detector) -> list of (stored retention, {(family, parameter): retention})
    found: dict[tuple[str, str], list] = {}
    for cell in sorted(folder.glob("**/*.json")):
        row = json.loads(cell.read_text())
        if row.get("status") != "ok" or row.get("family") != "vigil" or row.get("tuned"):
            continue
        if (args.datasets and row["dataset"] not in args.datasets) or (
            args.detectors and row["detector"] not in args.detectors
        ):
            continue
        got = cell_retentions(cell, row, REPO)
        if got is not None:
            found.setdefault((row["dataset"], row["detector"]), []).append(got)
    if not found:
        sys.exit(f"no stored Vigil cell with a labelled test tail under {folder}: run `vigil benchmark` first")
    print(f"threshold retention (test tails), mean over series; {time.perf_counter() - t0:.0f} s")
    print("configured: each cell's own alert rule; a family: its best parameter for the dataset and detector,")
    print("picked on the test tails (a bound, not a rule), beside the configured rule's figure on the same series")
    head = f"{'dataset':8} {'detector':16} {'series':>6} {'configured':>10}"
    print(head + "".join(f"  {f:>28}" for f in FAMILIES))
    for (dataset, detector), cells in sorted(found.items()):
        line = f"{dataset:8} {detector:16} {len(cells):6d} {np.mean([s for s, _ in cells]):10.3f}"
        for family in FAMILIES:
            params = sorted({p for _, r in cells for f, p in r if f == family})
            rows = [(s, r) for s, r in cells if any(f == family for f, _ in r)]
            if not params:
                line += f"  {'n/a':>28}"
                continue
            means = {p: np.mean([r[(family, p)] for _, r in rows]) for p in params}
            best = max(means, key=means.get)
            configured = np.mean([s for s, _ in rows])
            line += f"  {means[best]:.3f} at {best:<5g} ({len(rows):2d}; {configured:.3f})".rjust(30)
        print(line)


if __name__ == "__main__":
    main()
