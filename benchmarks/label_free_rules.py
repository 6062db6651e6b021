"""Two label-free alert rules from the field that Vigil measured and did not adopt, and how
far a choice made across SKAB's files gets under SKAB's protocol (README: Benchmark, "Where
thresholds lose"; issue "Alerts an operator can trust"). Reads the stored cells of a finished
benchmark (``benchmark.folder``: `vigil benchmark`, or `dvc pull reports/dvc.yaml:benchmark`)
and refits only kmeans on SKAB's files (seconds); about a minute on 2 cores:

    .venv/bin/python benchmarks/label_free_rules.py [--quantile 0.97] [--window 3000]

**1. An adaptive floor.** A rolling-percentile alert: a step alerts only where its alert score
is above the static threshold *and* above the ``quantile`` of the ``window`` alert scores
before it (causal, step by step; the history starts with the steps before the split, as a
stream carries them). It caps the share a series can flag when its scores drift above the
level the threshold was set on (many NAB and MSL tails are flagged whole by the static rule).
Whether a dataset should use it is asked of the validation heads that hold labels, as
``threshold.label_free`` is chosen: the configured label-free rule with and without the floor
on each such head as if it held none (history: the held-out train tail), as the share of the
head's best point F1. The test tails (each cell's own alert rule, with and without the floor)
are printed beside it as context: retention as the benchmark computes it, capped at 1 per
series (a rule whose threshold moves can beat every fixed threshold on a series).

**2. SKAB's protocol under other label-free rules.** Pooled point F1 over SKAB's files (the
threshold from the held-out train tail alone, as `tasks.benchmark_report.skab_protocol` does)
for rules besides the configured one: POT and the Gaussian tail with other smoothings, the
largest train-tail score, and the rule of SKAB's own Conv-AE notebook (waico/SKAB
``notebooks/Conv_AE.ipynb``: 4/3 of the 0.999 quantile of train's scores), each also with
persistence (a step alerts only where the last ``n`` raw scores all pass, as that notebook
requires of its windows). Every rule is printed for every detector: choosing a rule or a
detector from this table would read the labels it scores, so it is context, not a result.

**3. SKAB, leave one file out.** The honest way to choose from that table: each file is
flagged by the (Vigil detector, rule) with the best pooled F1 on the *other* files, and those
flags are pooled; no file's labels choose what flags it. The threshold still comes from each
file's own train tail. Parameters a dataset chose on these files' validation heads are chosen
here too: kmeans competes at every spread of `benchmarks/spread.py` (refitted at spread 0, the
spread applied to its scores, as the detector applies it), and uae, whose ``combine`` was so
chosen, is left out.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.spread import SPREADS, spread_scores  # noqa: E402
from components.alerting import AlertRule, AlertSettings, smooth  # noqa: E402
from components.detectors import get_detector  # noqa: E402
from components.evaluation import THRESHOLD_RULES, best_achievable_f1, best_f1_threshold  # noqa: E402
from components.metrics import point_prf  # noqa: E402
from components.pooled import PooledCounts  # noqa: E402
from tasks.benchmark import read_series  # noqa: E402
from tasks.benchmark_report import skab_file_arrays  # noqa: E402
from vigil.config import load_config  # noqa: E402


def trailing_quantile(history: np.ndarray, x: np.ndarray, q: float, window: int) -> np.ndarray:
    """At each step of ``x``, the ``q`` quantile (the order statistic at or above it) of the
    ``window`` values before it, ``history`` first; -inf where there is none. Exact, causal,
    one step at a time: a sorted window updated by bisection."""
    past = deque(np.asarray(history, dtype=np.float64)[-window:].tolist())
    ordered = sorted(past)
    out = np.empty(len(x))
    for i, value in enumerate(np.asarray(x, dtype=np.float64)):
        n = len(ordered)
        out[i] = ordered[min(n - 1, math.ceil(q * n) - 1)] if n else -np.inf
        past.append(value)
        bisect.insort(ordered, value)
        if len(past) > window:
            del ordered[bisect.bisect_left(ordered, past.popleft())]
    return out


def f1_share(labels: np.ndarray, flags: np.ndarray, best: float) -> float:
    return min(1.0, point_prf(labels, flags)[2] / best)


def adaptive_floor(cell: Path, row: dict, settings: AlertSettings, q: float, window: int) -> dict:
    """One cell's head criterion (where its head holds labels) and test retention (where its
    test tail does), each without and with the floor."""
    series = read_series(row["dataset"], row["series"], REPO / row["processed_path"])
    z = np.load(cell.with_suffix(".npz"), allow_pickle=False)
    raw_cal, raw_val, raw_test = z["calibration"], z["validation"], z["test"]
    out = {}
    yv, yt = series.validation_labels.astype(bool), series.test_labels.astype(bool)
    rule_name, *smoothing = settings.label_free
    if yv.any() and len(raw_cal):
        c = smooth(raw_cal, *smoothing)
        v = smooth(raw_val, *smoothing, raw_cal)
        best = best_achievable_f1(yv, best_f1_threshold(raw_val, yv)[1], v)
        try:
            t = THRESHOLD_RULES[rule_name][1](v, np.zeros_like(yv), c, settings)
        except ValueError:  # too few train-tail scores for the label-free rule
            t = None
        if best > 0 and t is not None:
            out["head"] = (
                f1_share(yv, v >= t, best),
                f1_share(yv, v >= np.maximum(t, trailing_quantile(c, v, q, window)), best),
            )
    figures = row.get("figures") or {}
    if yt.any() and figures.get("oracle_point_f1") is not None:
        rule = AlertRule.from_dict(row["alert_rule"])  # the cell's own rule, as evaluation applied it
        history = rule.smoothed(np.concatenate([raw_cal, raw_val]))
        test = rule.smoothed(raw_test, raw_val)
        oracle = best_achievable_f1(yt, figures["oracle_point_f1"], test)
        if oracle > 0:
            floor = np.maximum(rule.threshold, trailing_quantile(history, test, q, window))
            out["test"] = (f1_share(yt, test >= rule.threshold, oracle), f1_share(yt, test >= floor, oracle))
    return out


def print_adaptive(found: dict[tuple[str, str], list[dict]], q: float, window: int) -> None:
    print(
        f"\n1. adaptive floor: the {q:g} quantile of the {window} alert scores before each step,"
        " over the static threshold"
    )
    print("head: labelled validation heads as if unlabelled, share of the head's best F1 (chooses);")
    print("test: test tails, each cell's own rule, retention capped at 1 per series (context)")
    print(
        f"{'dataset':8} {'detector':16} {'heads':>5} {'static':>7} {'floor':>7} {'tails':>5} {'static':>7} {'floor':>7}"
    )
    for dataset in sorted({d for d, _ in found}):
        per = {det: cells for (d, det), cells in found.items() if d == dataset}
        for det, cells in sorted(per.items()):
            print(f"{dataset:8} {det:16}" + _pair(cells, "head") + _pair(cells, "test"))
        every = [c for cells in per.values() for c in cells]
        heads = [c["head"] for c in every if "head" in c]
        choice = "floor" if heads and np.mean([h[1] for h in heads]) > np.mean([h[0] for h in heads]) else "static"
        print(
            f"{dataset:8} {'all detectors':16}"
            + _pair(every, "head")
            + _pair(every, "test")
            + f"  -> heads choose {choice}"
        )


def _pair(cells: list[dict], key: str) -> str:
    got = [c[key] for c in cells if key in c]
    if not got:
        return f" {0:5d} {'n/a':>7} {'n/a':>7}"
    return f" {len(got):5d} {np.mean([g[0] for g in got]):7.3f} {np.mean([g[1] for g in got]):7.3f}"


# SKAB's protocol: (name, threshold from the smoothed train-tail scores), then the smoothings
SKAB_RULES = {
    "pot_train": lambda c, s: THRESHOLD_RULES["pot_train"][1](c, None, c, s),
    "gauss_tail": lambda c, s: THRESHOLD_RULES["gauss_tail"][1](c, None, c, s),
    "train max": lambda c, s: float(np.max(c)),
    "skab ucl": lambda c, s: float(np.quantile(c, 0.999)) * 4 / 3,
}
SKAB_SMOOTHING = (("none", 1), ("mean", 20), ("max", 50), ("persist", 10), ("persist", 30))
SHORT = {
    "pot_train": "pot",
    "gauss_tail": "gauss",
    "train max": "tmax",
    "skab ucl": "ucl",
    "mean": "m",
    "max": "x",
    "persist": "p",
}


def skab_flags(raw_cal, raw_scores, rule: str, smoothing: tuple[str, int], settings) -> np.ndarray:
    """The rule's flags on the scores after train. ``persist`` n: the threshold is set on raw
    train-tail scores and a step alerts where its last n raw scores all pass it."""
    kind, n = smoothing
    if kind == "persist":
        t = SKAB_RULES[rule](np.asarray(raw_cal, dtype=np.float64), settings)
        padded = np.concatenate([np.full(n - 1, np.inf), raw_scores])  # the file's first steps: what there is
        return np.lib.stride_tricks.sliding_window_view(padded, n).min(axis=1) >= t
    t = SKAB_RULES[rule](smooth(raw_cal, kind, n), settings)
    return smooth(raw_scores, kind, n) >= t


def skab_candidates(repo: Path, folder: Path, settings: AlertSettings) -> tuple[dict, dict]:
    """(candidate -> series -> (flags, labels), detector -> family) of every stored SKAB cell
    under every rule of `SKAB_RULES` x `SKAB_SMOOTHING`; a candidate is (detector, rule key).
    kmeans is also refitted once per file at spread 0 and taken at every spread of
    `benchmarks/spread.py` (``kmeans spread N``): its stored spread was chosen on these
    files' validation heads, so a choice that must not read a file's labels chooses it too."""
    out: dict = {}
    families = {}

    def add(detector: str, series: str, calibration, scores, labels) -> None:
        for rule in SKAB_RULES:
            for smoothing in SKAB_SMOOTHING:
                key = SHORT[rule] + ("" if smoothing[0] == "none" else f" {SHORT[smoothing[0]]}{smoothing[1]}")
                try:
                    flags = skab_flags(calibration, scores, rule, smoothing, settings)
                except ValueError:  # too few train-tail scores for the rule
                    continue
                out.setdefault((detector, key), {})[series] = (flags, labels)

    for cell in sorted((folder / "cells" / "skab").glob("**/*.json")):
        row = json.loads(cell.read_text())
        if row.get("status") != "ok" or row.get("tuned") or row["family"] not in ("vigil", "peer"):
            continue
        arrays = skab_file_arrays(row, repo, folder)
        if arrays is None:
            continue
        families[row["detector"]] = row["family"]
        add(row["detector"], row["series"], *arrays)
        if row["detector"] == "kmeans":
            series = read_series(row["dataset"], row["series"], repo / row["processed_path"])
            det = get_detector("kmeans", **{**row["params"], "spread": 0}).fit(series.train)
            raw = [det.calibration_scores_, det.score(series.validation), det.score(series.test)]
            for spread in SPREADS:
                cal, val, test = (spread_scores(x, spread) if len(x) else x for x in raw)
                families[f"kmeans spread {spread}"] = "vigil"
                add(f"kmeans spread {spread}", row["series"], cal, np.concatenate([val, test]), arrays[2])
    return out, families


def pooled(flags_and_labels) -> PooledCounts:
    counts = PooledCounts()
    for flags, labels in flags_and_labels:
        counts.add(flags, labels)
    return counts


def leave_one_file_out(candidates: dict) -> tuple[PooledCounts, dict]:
    """Each file flagged by the candidate with the best pooled F1 on the other files (among
    those that scored every file; ties to the first in order), those flags pooled over the
    files: a choice of detector and rule that never reads the labels of the file it is
    applied to. Returns the pooled counts and file -> the candidate that flagged it."""
    files = sorted({s for per in candidates.values() for s in per})
    complete = {c: per for c, per in candidates.items() if len(per) == len(files)}
    picked = {}
    for held_out in files:
        others = [s for s in files if s != held_out]
        picked[held_out] = max(complete, key=lambda c: pooled(complete[c][s] for s in others).figures()["f1"])
    return pooled(complete[c][f] for f, c in picked.items()), picked


def skab_table(repo: Path, folder: Path, settings: AlertSettings) -> None:
    candidates, families = skab_candidates(repo, folder, settings)
    if not candidates:
        print("\n2. SKAB: no stored SKAB cell")
        return
    keys = list(dict.fromkeys(k for _, k in candidates))
    f1 = {c: pooled(per.values()).figures()["f1"] for c, per in candidates.items()}
    detectors = sorted(families, key=lambda d: -max(f1.get((d, k), -1) for k in keys))
    print("\n2. SKAB's protocol (threshold from the held-out train tail alone), pooled point F1 over files, by rule")
    print(f"{'detector':18} {'kind':5}" + "".join(f" {k:>8}" for k in keys))
    for det in detectors:
        cells = [f" {f1[det, k]:8.3f}" if (det, k) in f1 else f" {'n/a':>8}" for k in keys]
        print(f"{det:18} {families[det][:5]:5}" + "".join(cells))
    print(
        "rules: pot = POT, gauss = Gaussian tail, tmax = largest train-tail score, ucl = 4/3 of its 0.999 quantile;"
        " then m20 = trailing mean of 20, x50 = trailing max of 50, p10 / p30 = persisting 10 / 30 raw steps;"
        " kmeans spread N: refitted at spread 0, spread N applied to its scores"
    )
    # the stored kmeans and uae carry parameters chosen on these files' validation heads (kmeans's
    # spread, uae's combine): left out, kmeans competing at every spread instead
    vigil = {c: per for c, per in candidates.items() if families[c[0]] == "vigil" and c[0] not in ("kmeans", "uae")}
    counts, picked = leave_one_file_out(vigil)
    picks = Counter(picked.values())
    e = counts.figures()
    print(
        f"\n3. SKAB, leave one file out: each file flagged by the (Vigil detector, rule) with the best pooled F1"
        f" on the other {e['files'] - 1} files ({len(vigil)} candidates; uae left out, its combine chosen on these"
        f" files' heads). Pooled F1 {e['f1']:.3f}, precision {e['precision']:.3f}, recall {e['recall']:.3f}"
    )
    for (det, key), n in sorted(picks.items(), key=lambda kv: -kv[1]):
        print(f"  {det} · {key}: picked for {n} file(s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quantile", type=float, default=0.97, help="the adaptive floor's quantile")
    ap.add_argument("--window", type=int, default=3000, help="alert scores the adaptive floor reads")
    args = ap.parse_args()
    cfg = load_config(REPO / "params.yaml")
    settings = cfg.alert_settings()
    folder = REPO / cfg.benchmark.folder / "cells"
    t0 = time.perf_counter()
    found: dict[tuple[str, str], list[dict]] = {}
    for cell in sorted(folder.glob("**/*.json")):
        row = json.loads(cell.read_text())
        if row.get("status") != "ok" or row.get("family") != "vigil" or row.get("tuned"):
            continue
        got = adaptive_floor(cell, row, settings, args.quantile, args.window)
        if got:
            found.setdefault((row["dataset"], row["detector"]), []).append(got)
    if not found:
        sys.exit(f"no stored Vigil cell with labels under {folder}: run `vigil benchmark` first")
    print_adaptive(found, args.quantile, args.window)
    skab_table(REPO, REPO / cfg.benchmark.folder, settings)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
