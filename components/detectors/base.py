"""The interface every detector keeps, scikit-learn style.

Hyper-parameters are the explicit keyword arguments of ``__init__``, stored unchanged (no
checks there: `fit` checks them, through `validate_params`) and returned by `get_params`;
`set_params` changes them. Fitted state ends in ``_``. ``fit(train[T, F])`` learns normal
behaviour; ``score(x[T, F])`` gives one score per time step, aligned with x, higher meaning
more anomalous; ``contributions(x)`` gives each metric's share of that score (rows sum to 1).

Every fitted detector also holds ``calibration_scores_``: its scores on a tail of train that
the fitted model did not learn from (the torch detectors' early-stopping tail; the point-wise
ones score a tail with a copy fitted on the head). They are what a threshold is calibrated
on when no labelled anomaly is available. ``save``/``load`` round-trip a fitted detector.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..estimator import Estimator, FormatError

FORMAT_VERSION = 2  # 1 was a pickle; 2 is .npz arrays + a JSON header
HEADER = "__vigil__"
__all__ = ["FORMAT_VERSION", "Detector", "FormatError", "NotFittedError", "ParamError", "TrainingStopped", "require"]


class NotFittedError(RuntimeError):
    pass


class TrainingStopped(Exception):
    """A fit or scoring loop was asked to stop (Ctrl-C): whatever it was building is dropped."""


_STOP = threading.Event()  # process-wide: a loop in any thread sees it at its next batch


def request_stop() -> None:
    """Make every running fit and scoring loop stop at its next batch (Ctrl-C sets it)."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def check_stop() -> None:
    if _STOP.is_set():
        raise TrainingStopped("stopped on request")


class ParamError(ValueError):
    """A hyper-parameter refused by `Detector.validate_params`: which one, and the rule."""

    def __init__(self, detector: str, param: str, rule: str):
        super().__init__(f"{detector}: {param} {rule}")
        self.param = param
        self.rule = rule


class Detector(Estimator, ABC):
    name: ClassVar[str]
    n_features_: int | None = None

    FILE_FORMAT: ClassVar[int] = FORMAT_VERSION
    FILE_KIND: ClassVar[str] = "detector"
    FILE_HEADER: ClassVar[str] = HEADER
    RETRAIN: ClassVar[str] = "retrain (`vigil run --step train`)"

    @classmethod
    def registry(cls) -> dict[str, type[Detector]]:
        from . import DETECTORS

        return DETECTORS

    @abstractmethod
    def validate_params(self) -> None:
        """Raise ValueError naming the first hyper-parameter of a wrong type or out of range.
        Called by `fit`; cheap, so configuration can call it before any data is read."""

    # --- the contract ----------------------------------------------------------------
    @abstractmethod
    def fit(self, train: np.ndarray, *, verbose: bool = False) -> Detector:
        """Learn from ``train``; ``verbose`` shows progress where fitting takes a while."""

    @abstractmethod
    def score(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def contributions(self, x: np.ndarray) -> np.ndarray: ...

    def score_and_contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both at once; detectors that get both from one pass override this."""
        return self.score(x), self.contributions(x)

    def context_steps(self) -> tuple[int, int]:
        """(past, future): how many steps before and after a step its score reads. Scoring a
        stream in batches gives the scores of one pass when each batch is scored with the
        ``past`` steps before it, and a step is final once ``future`` steps follow it
        (`components.streaming`). Point-wise detectors read neither."""
        return 0, 0

    # --- input checks shared by all ----------------------------------------------------
    def _check(self, x: np.ndarray, fitting: bool = False, min_length: int = 1) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise ValueError(f"{self.name}: expected a [time, metrics] array, got shape {x.shape}")
        if x.shape[0] < min_length:
            raise ValueError(
                f"{self.name}: series of {x.shape[0]} steps is shorter than the window length {min_length}"
            )
        if not np.isfinite(x).all():
            rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
            raise ValueError(f"{self.name}: input holds NaN or infinite values at rows {rows[:5].tolist()}")
        if fitting:
            self.n_features_ = x.shape[1]
        elif self.n_features_ is None:
            raise NotFittedError(f"{self.name}: call fit before score")
        elif x.shape[1] != self.n_features_:
            raise ValueError(f"{self.name}: fitted on {self.n_features_} metrics, got {x.shape[1]}")
        return x


def require(ok: bool, detector: str, param: str, must: str, value: Any) -> None:
    """The one way a detector refuses a hyper-parameter: name, rule and the value given."""
    if not ok:
        raise ParamError(detector, param, f"must be {must}, got {value!r}")


def is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def spread_to_neighbours(scores: np.ndarray, contributions: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Each step takes the highest score within ``steps`` steps either side of it, with the
    contributions of the step that holds it (the first, where several tie).

    Why: an anomaly's labelled span often reaches past the steps whose score rises (NAB's
    windows open before the fault; an operator marks the whole episode), and a ranking metric
    counts each labelled step. The price is latency: a step's score is final ``steps`` steps
    later (`Detector.context_steps`)."""
    if steps == 0 or len(scores) == 0:
        return scores, contributions
    padded = np.concatenate([np.full(steps, -np.inf), np.asarray(scores, dtype=np.float64), np.full(steps, -np.inf)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * steps + 1)  # window t: steps t - s .. t + s
    held = np.arange(len(scores)) - steps + windows.argmax(axis=1)
    return np.asarray(scores)[held], contributions[held]


def normalise_rows(c: np.ndarray) -> np.ndarray:
    """Rows scaled to sum 1; an all-zero row becomes uniform (no metric stands out)."""
    c = np.abs(np.asarray(c, dtype=np.float64))
    total = c.sum(axis=1, keepdims=True)
    uniform = np.full_like(c, 1.0 / c.shape[1])
    return np.divide(c, total, out=uniform, where=total > 0)
