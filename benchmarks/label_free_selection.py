"""The planted-anomaly objective as a label-free selection rule, beside the rules the benchmark
compares (README: Benchmark, Label-free selection): which detector to serve on a series whose
validation head holds no label.

``planted`` picks the detector with the best VUS-PR on anomalies planted in a held-out tail of
the series' own train: exactly the label-free objective tuning uses (`components.tuning`:
the generator's five kinds, seeded, ``tuning.label_free``'s tail and count), each detector with
the benchmark's parameters fitted on the rest of train under ``benchmark.torch_threads``. It is
measured as the benchmark measures ``consensus``, ``prior`` and ``prior_all`` (their picks are
recomputed here from the stored cells, with the same functions): on every series whose
validation head holds labels, as if it held none, by the share of the best validation VUS-PR
its pick reaches. ``borda`` aggregates the three kinds of evidence, as Goswami et al.
("Unsupervised Model Selection for Time-series Anomaly Detection", ICLR 2023) aggregate their
surrogate metrics: each detector's rank under ``prior_all`` (skill on other labelled series),
``planted`` (synthetic anomalies) and ``consensus`` (centrality), averaged (a Borda count). The
test tails' VUS-PR of each rule's picks on the heads with no label is
printed beside, as context only: it is never the basis of a choice.

Reads a finished benchmark (``reports/benchmark.json`` and the cells under
``benchmark.folder``: `vigil benchmark`, or `dvc pull reports/dvc.yaml:benchmark`) and fits
every Vigil detector once more per series (about as long as the benchmark's own cells). Each
planted figure is kept in ``.vigil/label_free_selection/``, keyed by its cell's key (data,
detector code and parameters, torch threads), the planting code and settings, so a rerun
fits only what changed:

    .venv/bin/python benchmarks/label_free_selection.py [--datasets smd msl ...] [--detectors uae kmeans ...]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components import metrics as M  # noqa: E402
from components.datasets.base import DataError  # noqa: E402
from components.detectors import get_detector  # noqa: E402
from components.selection import (  # noqa: E402
    LABEL_FREE_RULES,
    consensus_agreements,
    label_free_choice,
    pick_best,
    prior_means,
)
from components.text import one_line  # noqa: E402
from components.tuning import objective_value, tuning_set  # noqa: E402
from tasks.benchmark import _md5_files, stable_hash, torch_threads  # noqa: E402
from tasks.benchmark_report import _validation_arrays  # noqa: E402
from tasks.files import write_atomic  # noqa: E402
from tasks.tune import max_window  # noqa: E402
from vigil.config import load_config  # noqa: E402

PLANTED = "planted"
BORDA = "borda"  # the mean rank under prior_all, planted and consensus
CACHE = REPO / ".vigil" / "label_free_selection"
PLANTING_CODE = [REPO / "components" / "tuning.py", REPO / "components" / "datasets" / "synthetic.py"]


def min_steps(name: str, params: dict) -> int:
    """How long each part of train (the head it is fitted on, the tail planted) must be, as
    `tasks.tune` sets it for a study with no search space: 2 x (the detector's window, with a
    forecaster's target step, + 1)."""
    return 2 * (max_window(name, params, {}) + 1)


def borda_pick(candidates, figures: list[dict[str, float]]) -> str:
    """The candidate with the best mean rank over ``figures`` (one dict per rule, detector ->
    figure, higher better); a NaN or missing figure ranks last; ties go to the first name in
    sorted order."""
    names = sorted(candidates)
    mean_rank = np.zeros(len(names))
    for f in figures:
        v = np.array([f.get(n, np.nan) for n in names], dtype=np.float64)
        mean_rank += rankdata(np.where(np.isfinite(v), v, -np.inf)) / len(figures)
    return names[int(np.argmax(mean_rank))]


def planted_figure(name: str, params: dict, train: np.ndarray, label_free: dict, vus_window: int, steps: int) -> float:
    """VUS-PR of one detector on anomalies planted in the held-out tail of ``train``, fitted on
    the rest: tuning's label-free objective for one trial with these parameters (``steps``:
    `min_steps`)."""
    tset = tuning_set(
        train,
        train[:0],
        np.zeros(0, dtype=np.int8),
        objective="label_free",
        holdout_fraction=label_free["holdout_fraction"],
        n_anomalies=label_free["n_anomalies"],
        seed=label_free["seed"],
        min_steps=steps,
    )
    det = get_detector(name, **params)
    det.fit(tset.fit)
    scores, labels = tset.score(det)
    return objective_value("label_free", labels, scores, vus_window)


def cached_planted_figure(row: dict, label_free: dict, vus_window: int, threads: int | None) -> tuple[float, str]:
    """(the planted figure of a benchmark row's detector on its series, why it is NaN where it
    is), computed once for the row's cell key and the planting code and settings."""
    steps = min_steps(row["detector"], row["params"])
    what = {
        "cell": row["key"],
        "label_free": label_free,
        "vus_window": vus_window,
        "code": _md5_files(PLANTING_CODE),
        "min_steps": steps,
    }
    path = CACHE / (stable_hash(what) + ".json")
    if path.is_file():
        stored = json.loads(path.read_text())
        return (np.nan if stored["figure"] is None else stored["figure"]), stored["why"]
    train = np.load(REPO / row["processed_path"] / "train.npy", allow_pickle=False)
    why = ""
    try:
        with torch_threads(threads):
            figure = planted_figure(row["detector"], row["params"], train, label_free, vus_window, steps)
    except (DataError, ValueError) as exc:  # train too short for the tail, or non-finite scores
        figure, why = np.nan, str(exc)
    stored = {**what, "figure": None if np.isnan(figure) else figure, "why": why}
    write_atomic(path, json.dumps(stored).encode())  # an interrupted run leaves no half-written figure
    return figure, why


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="*", help="benchmark datasets (default: all in the report)")
    ap.add_argument("--detectors", nargs="*", help="Vigil detectors (default: all in the report)")
    args = ap.parse_args()
    cfg = load_config(REPO / "params.yaml")
    folder = REPO / cfg.benchmark.folder
    report = REPO / "reports" / "benchmark.json"
    if not report.is_file():
        sys.exit(f"{report}: no finished benchmark; run `vigil benchmark` or `dvc pull reports/dvc.yaml:benchmark`")
    rows = [
        r
        for r in json.loads(report.read_text())["rows"]
        if r["family"] == "vigil"
        and r["status"] == "ok"
        and not r.get("tuned")
        and (not args.datasets or r["dataset"] in args.datasets)
        and (not args.detectors or r["detector"] in args.detectors)
    ]
    window = cfg.evaluation.vus_window
    label_free = cfg.tuning.label_free.model_dump()
    val_scores: dict[tuple[str, str], dict[str, np.ndarray]] = {}  # (kind, series) -> detector -> scores
    labelled: dict[tuple[str, str], dict[str, float]] = {}  # labelled heads: detector -> validation VUS-PR
    planted: dict[tuple[str, str], dict[str, float]] = {}
    tests: dict[tuple[str, str], dict[str, float]] = {}
    datasets: dict[tuple[str, str], str] = {}
    undefined: list[str] = []  # fits with no planted figure, and why
    t0 = time.perf_counter()
    for i, r in enumerate(sorted(rows, key=lambda r: (r["detector"], r["kind"], r["series"]))):
        arrays = _validation_arrays(REPO, folder, r)
        if arrays is None:
            continue
        key, name = (r["kind"], r["series"]), r["detector"]
        datasets[key] = r["dataset"]
        val_scores.setdefault(key, {})[name] = arrays[0]
        if arrays[1].any():
            labelled.setdefault(key, {})[name] = M.vus_pr(arrays[1], arrays[0], window)
        if (test := (r["figures"] or {}).get("vus_pr")) is not None:  # None: no labelled anomaly in the tail
            tests.setdefault(key, {})[name] = test
        figure, why = cached_planted_figure(r, label_free, window, cfg.benchmark.torch_threads)
        if why:
            undefined.append(one_line(f"{r['dataset']}:{r['series']}:{name}: {why}"))  # names from data folders
        planted.setdefault(key, {})[name] = figure
        done = f"{i + 1}/{len(rows)} planted figures, {time.perf_counter() - t0:.0f} s"
        print(f"\r{done}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    @functools.cache  # each (rule, series) is asked for three times below; consensus ranks every score
    def pick(rule: str, key: tuple[str, str]) -> str | None:
        if rule == PLANTED:  # None where no detector has a planted figure on this series
            return pick_best(planted[key]) if np.isfinite(list(planted[key].values())).any() else None
        if rule == BORDA:  # prior_all's means (never this series'), planted figures, consensus agreements
            parts = [prior_means(labelled, exclude=key), planted[key], consensus_agreements(val_scores[key])]
            return borda_pick(val_scores[key], parts)
        return label_free_choice(rule, key, val_scores[key], labelled)

    rules = (*LABEL_FREE_RULES, PLANTED, BORDA)
    shares: dict[str, dict[str, list[float]]] = {rule: {} for rule in rules}  # share of the best validation VUS-PR
    unlabelled: dict[str, dict[str, list[float]]] = {rule: {} for rule in rules}  # test VUS-PR of the pick
    for key, figs in labelled.items():
        if (best := max(figs.values())) > 0:
            for rule in rules:
                if (p := pick(rule, key)) is not None:
                    shares[rule].setdefault(datasets[key], []).append(figs[p] / best)
    for key in val_scores.keys() - labelled.keys():
        for rule in rules:
            if (p := pick(rule, key)) is not None and p in tests.get(key, {}):
                unlabelled[rule].setdefault(datasets[key], []).append(tests[key][p])
    names = sorted(set(datasets.values()))
    n_lab = {d: sum(datasets[k] == d for k in labelled) for d in names}
    n_free = {d: sum(datasets[k] == d for k in tests.keys() - labelled.keys()) for d in names}  # test labelled
    took = time.perf_counter() - t0
    print(f"{len(rows)} planted figures (stored or fitted) in {took:.0f} s; tuning.label_free: {label_free}")
    print(f"{len(undefined)} fits without a planted figure (the detector is left out of planted's pick there):")
    for why in undefined:
        print(f"  {why}")
    print("\nShare of the best validation VUS-PR that each rule's pick reaches, on the labelled heads as if unlabelled")
    print(f"{'rule':10} " + " ".join(f"{d + f' ({n_lab[d]})':>14}" for d in names) + f" {'mean':>8}")
    for rule in rules:
        per = shares[rule]
        mean = np.mean([v for vs in per.values() for v in vs]) if per else np.nan
        print(f"{rule:10} " + " ".join(f"{np.mean(per.get(d, [np.nan])):14.3f}" for d in names) + f" {mean:8.3f}")
    print("\nWhat each rule picks, per dataset (every series, labelled heads taken as unlabelled)")
    for d in names:
        for rule in rules:
            counts = Counter(p for key in val_scores if datasets[key] == d and (p := pick(rule, key)) is not None)
            print(f"{d:10} {rule:10} " + ", ".join(f"{n} ({k})" for n, k in counts.most_common()))
    print("\n* Test-tail VUS-PR of each rule's pick on the heads with no label (context only, never a basis of choice)")
    print(f"{'rule':10} " + " ".join(f"{d + f' ({n_free[d]})':>14}" for d in names))
    for rule in rules:
        print(f"{rule:10} " + " ".join(f"{np.mean(unlabelled[rule].get(d, [np.nan])):14.3f}" for d in names))


if __name__ == "__main__":
    main()
