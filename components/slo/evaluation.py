"""Judging SLO-violation predictions with a lead window, per second and per violation.

Per second ``t``, with lead window ``L``: a prediction is a true positive when a violation
occurs in ``(t, t + L]`` and a false positive otherwise; no prediction is a false negative when
a violation occurs in that window and a true negative otherwise. A violation event is a run of
violating seconds; its lead time is how long before its first second the predictor first
raised a prediction inside the window, ``L`` at most; violating runs less than ``merge_gap``
seconds apart are one event (a response that happens to be quick does not end an overload).
A false alarm is a run of predicted
seconds none of which is a true positive.
"""

from __future__ import annotations

import numpy as np


def violation_ahead(violation: np.ndarray, lead: int) -> np.ndarray:
    """``out[t]``: a violation occurs in ``(t, t + lead]`` (the label a predictor learns)."""
    v = np.asarray(violation, dtype=bool)
    c = np.concatenate([[0], np.cumsum(v)])
    n = len(v)
    t = np.arange(n)
    hi = np.minimum(t + lead, n - 1)
    return (c[hi + 1] - c[t + 1]) > 0


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def violation_events(violation: np.ndarray, merge_gap: int = 10) -> list[tuple[int, int]]:
    """[start, end) of each violation event: runs of violating seconds, those less than
    ``merge_gap`` seconds apart merged."""
    events: list[tuple[int, int]] = []
    for a, b in _runs(violation):
        if events and a - events[-1][1] < merge_gap:
            events[-1] = (events[-1][0], b)
        else:
            events.append((a, b))
    return events


def evaluate_predictions(
    predicted: np.ndarray,
    violation: np.ndarray,
    lead: int,
    early: int = 10,
    leaks: list[tuple[int, int]] = (),
    merge_gap: int = 10,
) -> dict:
    """The table's row for one predictor over one run of seconds 0..n-1. ``leaks``: [start,
    end) seconds of memory-leak injections, judged apart (a prediction inside one that is not
    a true positive is a false alarm the leak raised)."""
    pred = np.asarray(predicted, dtype=bool)
    viol = np.asarray(violation, dtype=bool)
    if pred.shape != viol.shape:
        raise ValueError(f"predictions for {len(pred)} seconds, violations for {len(viol)}")
    ahead = violation_ahead(viol, lead)
    tp = int((pred & ahead).sum())
    fp = int((pred & ~ahead).sum())
    fn = int((~pred & ahead).sum())
    tn = int((~pred & ~ahead).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    leads = []
    for start, _ in violation_events(viol, merge_gap):
        window = pred[max(0, start - lead) : start]
        hits = np.flatnonzero(window)
        leads.append(len(window) - hits[0] if len(hits) else None)  # seconds before the first violating one
    found = [x for x in leads if x is not None]
    false_alarms = [(a, b) for a, b in _runs(pred) if not (pred[a:b] & ahead[a:b]).any()]
    hours = len(pred) / 3600
    leak_alarms = [bool((pred[a:b] & ~ahead[a:b]).any()) for a, b in leaks]
    return {
        "seconds": len(pred),
        "positives": int(ahead.sum()),  # seconds with a violation ahead: the base rate
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / len(pred) if len(pred) else 0.0,
        "violations": len(leads),
        "predicted_violations": len(found),
        "lead_mean": float(np.mean(found)) if found else None,
        "lead_p10": float(np.percentile(found, 10)) if found else None,
        "lead_median": float(np.median(found)) if found else None,
        "lead_p90": float(np.percentile(found, 90)) if found else None,
        f"share_ahead_{early}s": sum(1 for x in found if x >= early) / len(leads) if leads else None,
        "false_alarms_per_hour": len(false_alarms) / hours if hours else 0.0,
        "leaks": len(leaks),
        "leaks_with_false_alarm": int(sum(leak_alarms)),
        # any prediction at all inside a leak, a right one included (a CPU hog may overlap it)
        "leaks_with_any_prediction": int(sum(bool(pred[a:b].any()) for a, b in leaks)),
    }


def evaluate_demo(records: list[dict], predictions: list[dict], injections, lead: int, early: int) -> dict:
    """Per predictor (and an always-predict reference): the lead-window figures on a run sent
    through the services: the aggregate topic's ``records``, the predictions topic's
    ``predictions`` (with their latency from aggregate to prediction) and the run's simulated
    ``injections`` (memory leaks: the negative cases)."""
    from .simulator import MEMORY_LEAK

    seconds = [r["second"] for r in records]
    s0 = seconds[0]
    violation = np.array([r["violation"] for r in records], dtype=bool)
    leaks = [(i.start - s0, i.end - s0) for i in injections if i.kind == MEMORY_LEAK]
    by_model: dict[str, dict[int, bool]] = {}
    latency: dict[str, list[float]] = {}
    for p in predictions:
        by_model.setdefault(p["model"], {})[p["second"]] = p["predicted"]
        latency.setdefault(p["model"], []).append(p["produced_ms"] - p["aggregate_ts"])
    rows = {}
    for model, preds in by_model.items():
        pred = np.array([preds.get(s, False) for s in seconds], dtype=bool)
        lat = np.array(latency[model])
        rows[model] = {
            **evaluate_predictions(pred, violation, lead, early, leaks),
            "missing": sum(s not in preds for s in seconds),
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p99": float(np.percentile(lat, 99)),
        }
    rows["(always predict)"] = evaluate_predictions(np.ones(len(seconds), bool), violation, lead, early, leaks)
    return rows
