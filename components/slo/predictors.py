"""Predictors of SLO violations from the per-second aggregates.

Each reads the last ``history()`` seconds of the signals and gives a score for "a violation
comes within the lead window"; its threshold, chosen on a validation run, is registered with it
in one MLflow model (a prediction is ``score >= threshold``), so the evaluation and the live
predictor use one object.

- ``rt_threshold``: the current maximum response time, the baseline every operator has.
- ``forecast``: a ridge forecaster of the next ``horizon`` seconds of every signal, fitted on a
  fault-free run; each forecast step is scored by how far it lies from normal (|z| per signal)
  and the score is the largest over the horizon. It knows nothing of the SLO: any fault that
  moves a signal, a memory leak included, raises it.
- ``classifier``: logistic regression on each signal's level, recent means, trend and spread,
  trained on labelled runs for "a violation within the next ``lead`` seconds". The labels come
  from the SLO itself (a response slower than the limit), so no operator has to label anything.

Predictors share the detectors' base (`components.estimator.Estimator`): explicit keyword
parameters, fitted state ending in ``_``, state as arrays and JSON (`save` / `load_predictor`),
never pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from ..estimator import Estimator
from .evaluation import violation_ahead

SIGNALS = ("rt_mean", "rt_max", "cpu", "mem", "n")
FORMAT = "vigil-slo-predictor/1"


def signal_matrix(records: list[dict], last: np.ndarray | None = None) -> np.ndarray:
    """[seconds, SIGNALS] from aggregate records; a second with no response or no stats
    carries the last value seen forward (from ``last`` before the first record; 0 where None).
    The live predictor calls it a record at a time, with its previous row as ``last``."""
    x = np.array([[np.nan if r.get(s) is None else r[s] for s in SIGNALS] for r in records], dtype=np.float64)
    return _carry_forward(x.reshape(len(records), len(SIGNALS)), last)


def frame_signals(frame) -> np.ndarray:
    """`signal_matrix` of a DataFrame of aggregate records (missing values as NaN or None)."""
    return _carry_forward(frame[list(SIGNALS)].to_numpy(dtype=np.float64, copy=True), None)


def _carry_forward(x: np.ndarray, last: np.ndarray | None) -> np.ndarray:
    last = np.zeros(x.shape[1]) if last is None else last
    for i in range(len(x)):
        bad = np.isnan(x[i])
        x[i, bad] = last[bad]
        last = x[i]
    return x


def _windows(x: np.ndarray, width: int) -> np.ndarray:
    """[n, width, k]: for each second the ``width`` seconds ending at it, the first second
    repeated before the start."""
    pad = np.concatenate([np.repeat(x[:1], width - 1, axis=0), x])
    return np.lib.stride_tricks.sliding_window_view(pad, width, axis=0).transpose(0, 2, 1)


class SLOPredictor(Estimator):
    name = ""
    FILE_FORMAT: ClassVar[str] = FORMAT
    FILE_KIND: ClassVar[str] = "predictor"
    FILE_HEADER: ClassVar[str] = "header"
    RETRAIN: ClassVar[str] = "retrain (`vigil stream train`)"

    @classmethod
    def registry(cls) -> dict[str, type[SLOPredictor]]:
        return PREDICTORS

    def history(self) -> int:
        raise NotImplementedError

    def score_with_contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per second of ``x`` [seconds, SIGNALS]: the score, and each signal's share in it."""
        raise NotImplementedError

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.score_with_contributions(x)[0]


class ResponseTimeThreshold(SLOPredictor):
    name = "rt_threshold"

    def __init__(self):
        pass

    def history(self) -> int:
        return 1

    def fit(self, runs: list[tuple[np.ndarray, np.ndarray]], normal: np.ndarray, lead: int) -> ResponseTimeThreshold:
        return self

    def score_with_contributions(self, x):
        c = np.zeros_like(x)
        c[:, SIGNALS.index("rt_max")] = 1.0
        return x[:, SIGNALS.index("rt_max")].copy(), c


class ForecastPredictor(SLOPredictor):
    name = "forecast"

    def __init__(self, window: int = 30, horizon: int = 7, alpha: float = 1.0):
        self.window = window
        self.horizon = horizon
        self.alpha = alpha

    def history(self) -> int:
        return self.window

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean_) / self.std_
        return _windows(z, self.window).reshape(len(x), -1)

    def fit(self, runs: list[tuple[np.ndarray, np.ndarray]], normal: np.ndarray, lead: int) -> ForecastPredictor:
        from sklearn.linear_model import Ridge

        self.mean_ = normal.mean(axis=0)
        self.std_ = normal.std(axis=0) + 1e-9
        feats = self._inputs(normal)
        z = (normal - self.mean_) / self.std_
        n = len(normal) - self.horizon
        target = np.stack([z[1 + h : 1 + h + n] for h in range(self.horizon)], axis=1).reshape(n, -1)
        model = Ridge(alpha=self.alpha).fit(feats[:n], target)
        self.coef_ = model.coef_.T.astype(np.float64)  # [features, horizon * signals]
        self.intercept_ = model.intercept_.astype(np.float64)
        return self

    def forecast(self, x: np.ndarray) -> np.ndarray:
        """[seconds, horizon, SIGNALS] of standardised forecasts from each second on."""
        return (self._inputs(x) @ self.coef_ + self.intercept_).reshape(len(x), self.horizon, len(SIGNALS))

    def score_with_contributions(self, x):
        per_signal = np.abs(self.forecast(x)).max(axis=1)  # worst forecast step of each signal
        return per_signal.max(axis=1), per_signal


def _features(x: np.ndarray, window: int) -> np.ndarray:
    """Per signal: level, mean of the last 5 and ``window`` seconds, trend over the last 10 and
    ``window`` seconds (least-squares slope per second), spread over the last 10."""
    w = _windows(x, window)  # [n, window, k]

    def slope(a):
        t = np.arange(a.shape[1]) - (a.shape[1] - 1) / 2
        return np.einsum("t,ntk->nk", t, a) / (t**2).sum()

    return np.concatenate([x, w[:, -5:].mean(1), w.mean(1), slope(w[:, -10:]), slope(w), w[:, -10:].std(1)], axis=1)


N_FEATURES_PER_SIGNAL = 6


class ViolationClassifier(SLOPredictor):
    name = "classifier"

    def __init__(self, window: int = 30, C: float = 1.0):
        self.window = window
        self.C = C

    def history(self) -> int:
        return self.window

    def fit(self, runs: list[tuple[np.ndarray, np.ndarray]], normal: np.ndarray, lead: int) -> ViolationClassifier:
        from sklearn.linear_model import LogisticRegression

        feats = np.concatenate([_features(x, self.window) for x, _ in runs])
        labels = np.concatenate([violation_ahead(v, lead) for _, v in runs])
        self.mean_ = feats.mean(axis=0)
        self.std_ = feats.std(axis=0) + 1e-9
        model = LogisticRegression(C=self.C, max_iter=2000).fit((feats - self.mean_) / self.std_, labels)
        self.coef_ = model.coef_[0].astype(np.float64)
        self.intercept_ = float(model.intercept_[0])
        return self

    def score_with_contributions(self, x):
        z = (_features(x, self.window) - self.mean_) / self.std_
        parts = z * self.coef_
        logit = parts.sum(axis=1) + self.intercept_
        # a feature block per signal, in the order _features builds them
        per_signal = parts.reshape(len(x), N_FEATURES_PER_SIGNAL, len(SIGNALS)).sum(axis=1)
        return 1 / (1 + np.exp(-logit)), np.clip(per_signal, 0, None)


PREDICTORS: dict[str, type[SLOPredictor]] = {
    p.name: p for p in (ResponseTimeThreshold, ForecastPredictor, ViolationClassifier)
}


def load_predictor(path: str | Path) -> SLOPredictor:
    """A predictor written by `SLOPredictor.save` (format checked, nothing executed)."""
    return SLOPredictor.load(path)


def best_threshold(scores: np.ndarray, violation: np.ndarray, lead: int) -> tuple[float, float]:
    """The threshold with the best per-second F1 under the lead window, and that F1: every
    distinct score is a candidate, counted in one sorted pass."""
    ahead = violation_ahead(violation, lead)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], ahead[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[s[1:] != s[:-1], True]  # cut after the last copy of each distinct score
    tp, fp, s = tp[last], fp[last], s[last]
    f1 = 2 * tp / (2 * tp + fp + (ahead.sum() - tp))
    i = int(np.argmax(f1))
    return float(s[i]), float(f1[i])
