"""The benchmark's alerting figures, from its stored cells: how each threshold rule of the
field transfers to the test tail, which label-free and which fallback rule the labelled
validation heads favour, the incident rule's defaults on the validation heads, and telemanom's
event-wise protocol on MSL. Every choice Vigil makes is read off validation; the test-tail
tables compare, never pick.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from components import metrics as M
from components import telemanom
from components.alerting import group_incidents, incident_quality, smooth
from components.evaluation import (
    THRESHOLD_RULES,
    AlertSettings,
    best_achievable_f1,
    choose_alert_rule,
    nested_scores,
    rule_threshold,
)
from components.thresholds import best_f1_threshold

from .benchmark import cell_path, steps_per_day

# smoothings compared on the labelled validation heads for the label-free and fallback defaults
SMOOTHING_CANDIDATES = (
    ("none", 1),
    ("mean", 20),
    ("mean", 50),
    ("ewma", 20),
    ("ewma", 50),
    ("max", 20),
    ("max", 50),
    ("max", 100),
)
TELEMANOM_SMOOTHING = ("mean", 20)  # the head protocol's smoothing (on the stream: telemanom's own EWMA)
INCIDENT_GRID = ((1, 5, 10, 20, 50, 100), (1, 2, 3, 5))  # merge_gap x min_steps on the validation heads


def _key(rule: str, smoothing) -> str:
    kind, window = smoothing
    return rule if kind == "none" else f"{rule} · {kind} {window}"


def _cells(rows: list[dict], repo_root: Path, folder: Path):
    """(row, validation, calibration, test scores, validation and test labels) of every stored
    Vigil cell as configured (not tuned)."""
    for r in rows:
        if r["family"] != "vigil" or r.get("tuned") or r["status"] != "ok":
            continue
        cell = cell_path(folder, r["kind"], r["series"], r["detector"]).with_suffix(".npz")
        processed = repo_root / r["processed_path"]
        if not cell.is_file():
            continue
        with np.load(cell, allow_pickle=False) as z:
            v, c, t = z["validation"], z["calibration"], z["test"]
        yv, yt = (np.load(processed / f"{k}_labels.npy", allow_pickle=False) for k in ("validation", "test"))
        yield r, v, c, t, yv.astype(bool), yt.astype(bool)


def _dataset_means(by_pair: dict) -> dict:
    """pair -> dataset -> values, as pair -> the mean per dataset and their mean over datasets."""
    return {
        k: {d: float(np.mean(v)) for d, v in by.items()} | {"mean": float(np.mean([np.mean(v) for v in by.values()]))}
        for k, by in by_pair.items()
    }


# what the forced-rule table reports of each (rule, smoothing) on the test tails, per cell
FORCED_FIGURES = ("retention", "incidents_per_event", "event_recall", "false_per_day", "time_to_detect")


def alert_analysis(rows: list[dict], repo_root: Path, folder: Path, settings: AlertSettings) -> dict:
    rules_test: dict = defaultdict(lambda: defaultdict(list))  # dataset -> pair -> [FORCED_FIGURES]
    label_free: dict = defaultdict(lambda: defaultdict(list))  # pair -> dataset -> [share of validation oracle]
    fallback: dict = defaultdict(lambda: defaultdict(list))  # pair -> dataset -> [held-out F1 on the head]
    # the labelled rules under every candidate smoothing, each set on one half of a head, scored on the other
    held_out = dataclasses.replace(
        settings,
        rules=tuple(r for r, (needs, _) in THRESHOLD_RULES.items() if needs),
        smoothing=SMOOTHING_CANDIDATES,
    )
    grid: dict = defaultdict(lambda: defaultdict(list))  # dataset -> "gap|min" -> [(ipe, recall, false/1k)]
    # the report's key for each protocol ("telemanom": set on the head; "telemanom_stream") ->
    # detector -> event counts over MSL's channels
    events: dict = defaultdict(lambda: defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "channels": 0}))
    pairs = {(r, s) for r in THRESHOLD_RULES for s in settings.smoothing}
    pairs |= {(rule, tuple(sm)) for rule, *sm in (settings.label_free, settings.fallback)}  # the defaults too
    free_rules = [r for r, (needs, _) in THRESHOLD_RULES.items() if not needs]
    chosen_rules: dict = defaultdict(lambda: defaultdict(int))  # dataset -> rule -> cells
    for row, v, c, t, yv, yt in _cells(rows, repo_root, folder):
        d = row["dataset"]
        rule_text = row.get("alert_rule") or {}
        chosen_rules[d][
            f"{row.get('threshold_rule', '?')} · {rule_text.get('smoothing', 'none')} {rule_text.get('window', 1)}"
        ] += 1
        if yt.any():
            per_day = steps_per_day(row) or math.nan
            oracle = best_f1_threshold(t, yt)[1]
            # the test tail smoothed, and its best F1, once per smoothing: every rule shares them
            smoothed = {sm: smooth(t, *sm, past=v) for sm in {sm for _, sm in pairs}}
            best_f1 = {sm: best_achievable_f1(yt, oracle, s) for sm, s in smoothed.items()}
            for rule, sm in pairs:
                if THRESHOLD_RULES[rule][0] and not yv.any():
                    continue
                try:
                    th = rule_threshold(rule, sm, v, yv, c, settings)
                except ValueError:
                    continue
                s, best = smoothed[sm], best_f1[sm]
                f1 = M.point_prf(yt, s >= th)[2]
                q = incident_quality(yt, group_incidents(s >= th, s, settings.merge_gap, settings.min_steps), per_day)
                rules_test[d][_key(rule, sm)].append(
                    (
                        f1 / best if best > 0 else math.nan,
                        q.incidents_per_event,
                        q.event_recall,
                        q.false_per_day,
                        q.time_to_detect,
                    )
                )
        if yv.any():
            oracle_v = best_f1_threshold(v, yv)[1]
            if oracle_v > 0:
                for sm in SMOOTHING_CANDIDATES:
                    s = smooth(v, *sm)
                    best = best_achievable_f1(yv, oracle_v, s)  # once per smoothing: every rule shares it
                    for rule in free_rules:
                        try:
                            share = M.point_prf(yv, s >= rule_threshold(rule, sm, v, yv, c, settings))[2] / best
                        except ValueError:
                            share = 0.0
                        label_free[_key(rule, sm)][d].append(share)
            for pair, f1 in (nested_scores(v, yv, c, held_out) or {}).items():
                fallback[_key(*pair)][d].append(f1)
            chosen = choose_alert_rule(v, yv, c, settings)
            s = chosen.smoothed(v)
            for gap in INCIDENT_GRID[0]:
                for low in INCIDENT_GRID[1]:
                    q = incident_quality(yv, group_incidents(s >= chosen.threshold, s, gap, low), math.nan)
                    grid[d][f"{gap}|{low}"].append((q.incidents_per_event, q.event_recall, 1000 * q.false / len(v)))
        if row["kind"] == "telemanom" and yt.any():
            # telemanom's dynamic threshold (label-free), sequences counted event-wise: set once on
            # the validation head as Vigil's rules are, and as telemanom sets it, on the stream
            sm = TELEMANOM_SMOOTHING
            th = rule_threshold("dynamic", sm, v, yv, c, settings)
            s = smooth(t, *sm, past=v)
            head = incident_quality(yt, group_incidents(s >= th, s, settings.merge_gap, settings.min_steps), math.nan)
            e_s = telemanom.ewma(np.concatenate([v, t]))  # the head, then the tail: one stream, smoothed from its start
            flags = telemanom.telemanom_flags(e_s, len(v))
            stream = incident_quality(yt, group_incidents(flags, e_s[len(v) :], 1, 2), math.nan)
            for protocol, q in (("telemanom", head), ("telemanom_stream", stream)):
                e = events[protocol][row["detector"]]
                e["tp"] += q.detected
                e["fn"] += q.events - q.detected
                e["fp"] += q.false
                e["channels"] += 1

    def means(items):
        a = np.asarray(items, dtype=float)
        return [float(np.nanmean(a[:, i])) if np.isfinite(a[:, i]).any() else None for i in range(a.shape[1])]

    out = {
        "rules_test": {
            d: {k: dict(zip(FORCED_FIGURES, means(v)), n=len(v)) for k, v in p.items()} for d, p in rules_test.items()
        },
        "label_free": _dataset_means(label_free),
        "fallback": _dataset_means(fallback),
        "incident_grid": {
            d: {k: dict(zip(("incidents_per_event", "event_recall", "false_per_1000"), means(v))) for k, v in g.items()}
            for d, g in grid.items()
        },
        "telemanom": {},
        "chosen": {d: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for d, c in chosen_rules.items()},
        "settings": {
            "label_free": _key(settings.label_free[0], settings.label_free[1:]),
            "fallback": _key(settings.fallback[0], settings.fallback[1:]),
            "merge_gap": settings.merge_gap,
            "min_steps": settings.min_steps,
            "method": settings.method,
        },
    }
    for protocol, dets in events.items():
        out[protocol] = {}
        for det, e in dets.items():
            tp, fp, fn = e["tp"], e["fp"], e["fn"]
            out[protocol][det] = {
                **e,
                "precision": tp / (tp + fp) if tp + fp else None,
                "recall": tp / (tp + fn) if tp + fn else None,
            }
    return out


TELEMANOM_PUBLISHED = (0.875, 0.80)  # event precision, recall on SMAP + MSL (khundman/telemanom README)


def dataset_lines(report: dict, dataset: str) -> list[str]:
    """A dataset's Alerts section: every detector at its alert rule (test tail), then each
    threshold rule forced on Vigil's detectors, and the rules the nested choice picked."""
    from .benchmark_report import ALERT_COLUMNS, DATASET_TITLES, averages_table, fmt, md_table

    a = report.get("alerts") or {}
    title = DATASET_TITLES.get(dataset, dataset)
    lines = [
        "",
        f"### {title}: alerts (test tail, at each cell's alert rule chosen on validation)",
        "",
        *averages_table(report, dataset, [c[1] for c in ALERT_COLUMNS], median=False),
    ]
    forced = (a.get("rules_test") or {}).get(dataset)
    if forced:
        body = sorted(forced.items(), key=lambda kv: (-(kv[1]["retention"] or 0), kv[0]))
        lines += [
            "",
            f"Each threshold rule forced on every Vigil detector of {title} (means over cells; context only, the "
            "test tail never picks a rule; rules that read labels only where the validation head holds some):",
            "",
            *md_table(
                ["rule · smoothing", "cells", "retention", "incidents/event", "event recall", "false/day", "TTD steps"],
                [[k, str(v["n"]), *[fmt(v.get(f)) for f in FORCED_FIGURES]] for k, v in body],
            ),
        ]
    chosen = (a.get("chosen") or {}).get(dataset)
    if chosen:
        lines += [
            "",
            "Rules the cells' alert rules came from (cells): "
            + "; ".join(f"{k}: {n}" for k, n in chosen.items())
            + ".",
        ]
    return lines


def _ranked_pairs(report: dict, by_pair: dict, rows: int = 8) -> list[str]:
    """The ``rows`` best (rule, smoothing) pairs of an evidence table (`_dataset_means`), their
    mean per dataset and over datasets, best first."""
    from .benchmark_report import DATASET_TITLES, fmt, md_table

    ranked = sorted(by_pair.items(), key=lambda kv: (-kv[1]["mean"], kv[0]))
    datasets = [d for d in report["datasets"] if any(d in v for _, v in ranked)]
    return md_table(
        ["rule · smoothing", *[DATASET_TITLES.get(d, d) for d in datasets], "mean"],
        [[k, *[fmt(v.get(d)) for d in datasets], fmt(v["mean"])] for k, v in ranked[:rows]],
    )


def summary_lines(report: dict, compact: bool = False) -> list[str]:
    """How the defaults were chosen (validation heads only) and telemanom's protocol on MSL;
    ``compact`` (README) leaves out the grid's rows with min_steps above 2."""
    from .benchmark_report import DATASET_TITLES, fmt, md_table

    a = report.get("alerts") or {}
    if not a:
        return []
    st = a["settings"]
    lines = ["", "## Alert rules: how the defaults were chosen (validation heads only)", ""]
    lines += [
        f"**Label-free rule** (`threshold.label_free`, used where a validation head holds no label): each label-free "
        "rule and smoothing on every labelled validation head as if it had none, as the share of that head's best "
        "point F1 it reaches (Vigil's detectors; mean per dataset, then over datasets). "
        f"Configured: **{st['label_free']}**.",
        "",
        *_ranked_pairs(report, a["label_free"]),
    ]
    if a.get("fallback"):
        lines += [
            "",
            "**Fallback rule** (`threshold.fallback`, used where the validation head's two halves do not both hold "
            "labels): each labelled rule and smoothing on every validation head whose halves both do, its threshold "
            "set on one half and its point F1 measured on the other, both ways (Vigil's detectors; mean per "
            f"dataset, then over datasets). Configured: **{st['fallback']}**.",
            "",
            *_ranked_pairs(report, a["fallback"]),
        ]
    grid = a.get("incident_grid") or {}
    if grid:
        keys = [k for k in next(iter(grid.values())) if not compact or int(k.split("|")[1]) <= 2]
        lines += [
            "",
            "**Incident rule** (`incidents.merge_gap`, `incidents.min_steps`): on every labelled validation head, at "
            "the alert rule chosen there, raised incidents per event caught / event recall / false incidents per "
            f"1,000 steps. Configured: merge_gap {st['merge_gap']}, min_steps {st['min_steps']}.",
            "",
            *md_table(
                ["merge_gap", "min_steps", *[DATASET_TITLES.get(d, d) for d in grid]],
                [
                    [
                        *k.split("|"),
                        *[
                            f"{fmt(g[k]['incidents_per_event'])} / {fmt(g[k]['event_recall'])} / "
                            f"{fmt(g[k]['false_per_1000'])}"
                            for g in grid.values()
                        ],
                    ]
                    for k in keys
                ],
            ),
        ]
    tm, tms = a.get("telemanom") or {}, a.get("telemanom_stream") or {}
    if tm:
        p, r = TELEMANOM_PUBLISHED

        def counts(v: dict | None) -> list[str]:
            if not v:
                return ["", "", "", "", ""]
            return [str(v["tp"]), str(v["fp"]), str(v["fn"]), fmt(v["precision"]), fmt(v["recall"])]

        def rank(kv):  # by event F1 under telemanom's own protocol where it was computed
            v = tms.get(kv[0]) or kv[1]
            prec, rec = v["precision"] or 0, v["recall"] or 0
            return (-(2 * prec * rec / (prec + rec) if prec + rec else 0.0), kv[0])

        lines += [
            "",
            "**Telemanom's protocol on MSL**: its non-parametric dynamic threshold (label-free), anomalous sequences "
            "counted event-wise over all channels: a true event overlapped by a raised incident is a true positive, "
            "an incident on no event a false positive. Two ways of setting the threshold: *on the head*, once on "
            f"each channel's validation head (scores smoothed by a trailing mean of {TELEMANOM_SMOOTHING[1]}; "
            "Vigil's incident rule), as Vigil's alert rules are set; *on the stream*, as telemanom sets it "
            f"(`components/telemanom.py`): scores smoothed by an EWMA of span {telemanom.SPAN}, each batch of "
            f"{telemanom.BATCH} test steps thresholded on the trailing {telemanom.WINDOW} smoothed scores that end "
            f"with it (the validation head first, never judged), flagged steps pulling {telemanom.BUFFER} steps "
            "either side within their batch, sequences of one step dropped. Ordered by event F1 on the stream. "
            "Telemanom's own LSTM reported precision "
            f"{p:.3f} and recall {r:.2f} on SMAP and MSL together, on the stream, over whole test files "
            "(khundman/telemanom README); here only each channel's test tail is judged.",
            "",
            *md_table(
                [
                    "detector",
                    "channels",
                    *[f"{h} ({w})" for w in ("head", "stream") for h in ("TP", "FP", "FN", "precision", "recall")],
                ],
                [[k, str(v["channels"]), *counts(v), *counts(tms.get(k))] for k, v in sorted(tm.items(), key=rank)],
            ),
        ]
    return lines
