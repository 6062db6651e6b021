"""The two reference analyses Vigil's log telemetry is measured against, reproduced as published
and then read honestly.

`billing_reference`: a logistic regression on dCache store records. Features log(fileSize),
log(transferTime), log(queuingTime) (0 or null queuing time mapped to -10) and the pool one-hot;
an event's initial label is 1 when its status code is non-zero; time is cut into one-hour bins
and every event of an hour is labelled 1 when the hour's mean initial label is at least 0.5;
70% of each hour is sampled; a 70/30 split; ROC AUC and accuracy. Beside those figures it
reports what they measure: the hourly label is a function of the status codes, and a failed
transfer is a short one, so the model learns "this transfer failed", not "an incident is on".

`transfer_reference`: a recurrent network over the last transfers of the same link (9 fields
each) predicts a transfer's duration; a transfer lasting more than the prediction plus 600 s is
an anomaly. Reported: the share of predictions within 3 minutes, the share flagged by that
fixed rule, and by a per-link threshold calibrated on normal data (a quantile of the residuals
on the tail of train), with precision and recall against the labelled incidents.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from components.thresholds import pot_threshold

from .telemetry import Incident

HOUR_MS = 3_600_000
LOG_OF_ZERO = -10.0  # the reference's value for log(0) and a missing queuing time


def _log_or(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, LOG_OF_ZERO)
    positive = np.isfinite(values) & (values > 0)
    out[positive] = np.log(values[positive])
    return out


def in_incident(t_ms: np.ndarray, series: np.ndarray, incidents: list[Incident], end_ms=None) -> np.ndarray:
    """True for each event (at ``t_ms``, running to ``end_ms`` where given) that overlaps an
    incident of its series (or of every series, ``*``)."""
    t_ms = np.asarray(t_ms)
    end_ms = t_ms if end_ms is None else np.asarray(end_ms)
    series = np.asarray(series)
    inside = np.zeros(len(t_ms), dtype=bool)
    for inc in incidents:
        mine = np.ones(len(t_ms), dtype=bool) if inc.series == "*" else series == inc.series
        inside |= mine & (end_ms >= inc.start_ms) & (t_ms < inc.end_ms)
    return inside


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, or None where ``labels`` hold one class only (it is undefined there)."""
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else None


# --- dCache billing: the logistic regression ----------------------------------------------------


def billing_reference(
    events: pd.DataFrame,
    incidents: list[Incident],
    *,
    sample: float = 0.7,
    split: float = 0.7,
    order: str = "time",
    seed: int = 0,
) -> dict:
    """The reference regression on ``events`` (the billing reader's table) and what it measures.
    ``order``: ``time`` samples each hour's first records and splits at a time, ``random``
    draws both with ``seed``."""
    store = events[events["msg_type"] == "store"].sort_values("t_ms", kind="stable").reset_index(drop=True)
    if store.empty:
        raise ValueError("no store records: the reference regression has nothing to learn from")
    initial = (store["status"].to_numpy() != 0).astype(np.int8)
    hour = store["t_ms"].to_numpy() // HOUR_MS
    hour_mean = pd.Series(initial).groupby(hour).transform("mean").to_numpy()
    label = (hour_mean >= 0.5).astype(np.int8)
    pools = pd.get_dummies(store["pool"], prefix="pool", dtype=np.float64)
    features = pd.concat(
        [
            pd.DataFrame(
                {
                    "log_file_size": _log_or(store["file_size"]),
                    "log_transfer_time": _log_or(store["transfer_ms"]),
                    "log_queuing_time": _log_or(store["queuing_ms"]),
                }
            ),
            pools,
        ],
        axis=1,
    )
    rng = np.random.default_rng(seed)
    kept = _sample_each_hour(hour, sample, order, rng)
    cut = int(len(kept) * split)
    if order == "random":
        kept = rng.permutation(kept)
    train, test = kept[:cut], kept[cut:]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    out = {
        "records": int(len(store)),
        "hours": int(len(np.unique(hour))),
        "hours_labelled_1": int(len(np.unique(hour[label == 1]))),
        "train": int(len(train)),
        "test": int(len(test)),
        "order": order,
        "positive_share_train": float(label[train].mean()),
        "positive_share_test": float(label[test].mean()),
    }
    if len(np.unique(label[train])) < 2:
        return {**out, "undefined": "the training part holds one hourly label only: no regression can be fitted"}
    model.fit(features.to_numpy()[train], label[train])
    proba = model.predict_proba(features.to_numpy()[test])[:, 1]
    predicted = (proba >= 0.5).astype(np.int8)
    truth = in_incident(store["t_ms"].to_numpy(), store["pool"].to_numpy(), incidents)[test]
    majority = int(label[train].mean() >= 0.5)
    return {
        **out,
        "roc_auc": _auc(label[test], proba),
        "accuracy": float(accuracy_score(label[test], predicted)),
        # what those figures measure
        "accuracy_of_majority_class": float((label[test] == majority).mean()),
        "roc_auc_of_status_code_alone": _auc(label[test], initial[test]),  # the label's own input as a score
        "roc_auc_against_initial_label": _auc(initial[test], proba),  # "did this transfer fail"
        "roc_auc_against_incidents": _auc(truth.astype(np.int8), proba),  # "is an incident on"
        "incident_share_test": float(truth.mean()),
        "coefficients": dict(zip(features.columns, model[-1].coef_[0].round(4).tolist())),
    }


def _sample_each_hour(hour: np.ndarray, share: float, order: str, rng: np.random.Generator) -> np.ndarray:
    """Row indices (in time order) of ``share`` of each hour's rows: its first ones (``time``)
    or a seeded draw (``random``)."""
    kept = []
    starts = np.flatnonzero(np.r_[True, hour[1:] != hour[:-1]])
    ends = np.r_[starts[1:], len(hour)]
    for s, e in zip(starts, ends):
        n = math.ceil((e - s) * share)
        rows = np.arange(s, e)
        kept.append(rows[:n] if order == "time" else np.sort(rng.choice(rows, n, replace=False)))
    return np.concatenate(kept)


# --- Rucio transfers: the duration predictor ------------------------------------------------------

N_FIELDS = 9


class DurationGRU(torch.nn.Module):
    """A GRU over a transfer's link history (oldest first, the transfer itself last) whose last
    state predicts ln(1 + duration in seconds)."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.gru = torch.nn.GRU(N_FIELDS, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1]).squeeze(-1)


class LinkHistory:
    """Each transfer's sequence: the ``history - 1`` transfers of its link that had ended before
    it started (what an operator knows when it starts), then the transfer itself with its
    outcome unknown. Nine fields a step: ln(1 + size in MB), ln(1 + duration), ln(1 + queue
    time), failed, activity and protocol (codes scaled to [0, 1]), the hour of its start (sine,
    cosine), ln(1 + seconds from its end to the start of the transfer predicted; 0 for it)."""

    def __init__(self, events: pd.DataFrame, history: int, activities: list[str], protocols: list[str]):
        ev = events.reset_index(drop=True)
        self.k = history - 1
        self.start = ev["started_ms"].to_numpy(np.int64)
        links = ev["link"].to_numpy()
        static = np.column_stack(
            [
                np.log1p(ev["file_size"].to_numpy() / 1e6),
                np.log1p(ev["duration_s"].to_numpy()),
                np.log1p(ev["queue_s"].to_numpy()),
                ev["failed"].to_numpy(np.float64),
                _codes(ev["activity"], activities),
                _codes(ev["protocol"], protocols),
                np.sin(2 * np.pi * (self.start % 86_400_000) / 86_400_000),
                np.cos(2 * np.pi * (self.start % 86_400_000) / 86_400_000),
            ]
        ).astype(np.float32)
        self.current = static.copy()
        self.current[:, 1] = 0.0  # its duration and outcome are what is predicted
        self.current[:, 3] = 0.0
        # the history pool: every transfer, by link, in order of its end
        by_end = np.lexsort((ev["ended_ms"].to_numpy(), links))
        self.pool = static[by_end]
        self.pool_end = ev["ended_ms"].to_numpy(np.int64)[by_end]
        sorted_links = links[by_end]
        self.n_before = np.zeros(len(ev), dtype=np.int64)  # index into the pool of the first transfer not yet ended
        self.link_start = np.zeros(len(ev), dtype=np.int64)
        for link in np.unique(links):
            lo, hi = np.searchsorted(sorted_links, link, "left"), np.searchsorted(sorted_links, link, "right")
            mine = np.flatnonzero(links == link)
            self.n_before[mine] = lo + np.searchsorted(self.pool_end[lo:hi], self.start[mine], "left")
            self.link_start[mine] = lo
        self.target = np.log1p(ev["duration_s"].to_numpy()).astype(np.float32)

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        offsets = np.arange(-self.k, 0)
        idx = self.n_before[rows, None] + offsets[None, :]
        valid = idx >= self.link_start[rows, None]
        idx = np.where(valid, idx, 0)
        past = self.pool[idx]
        recency = np.log1p(np.maximum(self.start[rows, None] - self.pool_end[idx], 0) / 1000.0).astype(np.float32)
        steps = np.concatenate([past, recency[..., None]], axis=2)
        steps[~valid] = 0.0
        own = np.concatenate([self.current[rows], np.zeros((len(rows), 1), np.float32)], axis=1)
        return torch.from_numpy(np.concatenate([steps, own[:, None, :]], axis=1))


def _codes(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    index = {v: i + 1 for i, v in enumerate(vocabulary)}  # 0: a value train never saw
    return values.map(index).fillna(0).to_numpy(np.float64) / max(len(vocabulary), 1)


def transfer_reference(
    events: pd.DataFrame,
    incidents: list[Incident],
    *,
    train_fraction: float = 0.5,
    fit_fraction: float = 0.8,
    history: int = 100,
    hidden: int = 32,
    epochs: int = 4,
    batch_size: int = 512,
    lr: float = 3e-3,
    within_s: float = 180.0,
    fixed_threshold_s: float = 600.0,
    quantile: float = 0.995,
    pot_q: float = 1e-3,
    pot_level: float = 0.98,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Fit the duration predictor on the first ``fit_fraction`` of train (the leading
    ``train_fraction`` of the span, assumed normal), calibrate per-link thresholds on the rest of
    train, and report on the test part only. Durations are predicted for successful transfers."""
    from components.detectors.base import check_stop
    from components.detectors.torch_loop import resolve_device

    ev = events.sort_values("started_ms", kind="stable").reset_index(drop=True)
    t = ev["started_ms"].to_numpy()
    train_end = t.min() + (t.max() - t.min()) * train_fraction
    fit_end = t.min() + (train_end - t.min()) * fit_fraction
    done = ev["failed"].to_numpy() == 0
    fit_rows = np.flatnonzero(done & (t < fit_end))
    cal_rows = np.flatnonzero(done & (t >= fit_end) & (t < train_end))
    test_rows = np.flatnonzero(done & (t >= train_end))
    fit_part = ev.iloc[fit_rows]
    seqs = LinkHistory(
        ev, history, sorted(fit_part["activity"].unique().tolist()), sorted(fit_part["protocol"].unique().tolist())
    )
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model = DurationGRU(hidden).to(dev)
    centre = float(seqs.target[fit_rows].mean())
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    losses = []
    model.train()
    for _ in range(epochs):
        order, total = rng.permutation(fit_rows), 0.0
        for start in range(0, len(order), batch_size):
            check_stop()  # Ctrl-C stops the fit at the next batch, as every Vigil fit does
            rows = order[start : start + batch_size]
            x = seqs.batch(rows).to(dev)
            y = torch.from_numpy(seqs.target[rows] - centre).to(dev)
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(rows)
        losses.append(total / max(len(fit_rows), 1))

    def predict(rows: np.ndarray) -> np.ndarray:
        model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(rows), 4096):
                out.append(model(seqs.batch(rows[s : s + 4096]).to(dev)).cpu().numpy())
        return np.expm1(np.concatenate(out) + centre) if out else np.zeros(0)

    actual = ev["duration_s"].to_numpy()
    links = ev["link"].to_numpy()
    residual_cal = actual[cal_rows] - predict(cal_rows)
    residual = actual[test_rows] - predict(test_rows)
    rules = {
        "calibrated": _link_thresholds(links[cal_rows], residual_cal, lambda r: float(np.quantile(r, quantile))),
        "pot": _link_thresholds(links[cal_rows], residual_cal, lambda r: pot_threshold(r, pot_q, pot_level)),
    }
    ended = ev["ended_ms"].to_numpy()[test_rows]

    def touched(spans: list[Incident]) -> np.ndarray:
        return in_incident(t[test_rows], links[test_rows], spans, ended)

    truth = touched(incidents)
    # by kind; and early in an incident against later, as the link's history catches up with it
    early = [replace(i, end_ms=min(i.end_ms, i.start_ms + EARLY_MS)) for i in incidents]
    late = [replace(i, start_ms=i.start_ms + EARLY_MS) for i in incidents if i.end_ms > i.start_ms + EARLY_MS]
    kinds = {}
    for kind in sorted({i.kind for i in incidents}):
        kinds[kind] = touched([i for i in incidents if i.kind == kind])
        kinds[f"{kind} first 30 min"] = touched([i for i in early if i.kind == kind])
        kinds[f"{kind} after 30 min"] = touched([i for i in late if i.kind == kind])
    return {
        "transfers": {"fit": len(fit_rows), "calibration": len(cal_rows), "test": len(test_rows)},
        "train_loss_per_epoch": [round(v, 5) for v in losses],
        "device": str(dev),
        "split": "figures on the test part (after train); thresholds from the calibration tail of train",
        "within_s": within_s,
        "share_within": float(np.mean(np.abs(residual) <= within_s)),
        "median_abs_error_s": float(np.median(np.abs(residual))),
        "incident_share_test": float(truth.mean()),
        "fixed": {"threshold_s": fixed_threshold_s, **_flag_figures(residual > fixed_threshold_s, truth, kinds)},
        **{
            name: {
                "rule": f"quantile {quantile} of the link's residuals"
                if name == "calibrated"
                else f"POT (q {pot_q}, level {pot_level}) of the link's residuals",
                "thresholds_s": {k: round(v, 1) for k, v in sorted(th.items())},
                **_flag_figures(residual > np.array([th.get(x, th["*"]) for x in links[test_rows]]), truth, kinds),
            }
            for name, th in rules.items()
        },
    }


EARLY_MS = 30 * 60_000  # "early in an incident": its first 30 minutes
MIN_CALIBRATION = 50  # transfers of a link before its own quantile is trusted; fewer: the global one


def _link_thresholds(links: np.ndarray, residual: np.ndarray, rule) -> dict[str, float]:
    """``rule`` (residuals -> threshold) per link with enough calibration transfers, and over
    all links (``*``) for the rest; a link where the rule cannot be fitted gets ``*``'s."""
    if len(residual) == 0:
        raise ValueError("no successful transfer in the calibration tail of train: lower fit_fraction")
    out = {"*": rule(residual)}
    for link in np.unique(links):
        mine = residual[links == link]
        if len(mine) >= MIN_CALIBRATION:
            with contextlib.suppress(ValueError):  # POT with too few excesses: the link gets *'s
                out[str(link)] = rule(mine)
    return out


def _flag_figures(flagged: np.ndarray, truth: np.ndarray, kinds: dict[str, np.ndarray]) -> dict:
    hits = int((flagged & truth).sum())
    return {
        "flagged_share": float(flagged.mean()),
        "precision": hits / int(flagged.sum()) if flagged.any() else None,
        "recall": hits / int(truth.sum()) if truth.any() else None,
        "recall_by_kind": {k: (float(flagged[m].mean()) if m.any() else None) for k, m in kinds.items()},
    }
