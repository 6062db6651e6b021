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

import inspect
import json
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

FORMAT_VERSION = 2  # 1 was a pickle; 2 is .npz arrays + a JSON header
HEADER = "__vigil__"
ZIP_MAGIC = b"PK\x03\x04"  # .npz files are zip archives


class FormatError(ValueError):
    """A detector file Vigil refuses to load: not its format, or an old one."""


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


class Detector(ABC):
    name: ClassVar[str]
    n_features_: int | None = None

    # --- parameters -----------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # skip self
        return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> Detector:
        unknown = sorted(set(params) - set(self._param_names()))
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; known: {self._param_names()}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    @abstractmethod
    def validate_params(self) -> None:
        """Raise ValueError naming the first hyper-parameter of a wrong type or out of range.
        Called by `fit`; cheap, so configuration can call it before any data is read."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

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

    # --- persistence: arrays and JSON, never pickle --------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The fitted state: arrays, and JSON-able values (numbers, strings, lists, dicts).
        The default takes every attribute ending in ``_``; override where that is not enough."""
        arrays, values = {}, {}
        for k, v in self.__dict__.items():
            if k.endswith("_"):
                (arrays if isinstance(v, np.ndarray) else values)[k] = v.item() if isinstance(v, np.generic) else v
        return arrays, values

    def _set_state(self, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> None:
        self.__dict__.update(arrays)
        self.__dict__.update(values)

    def save(self, path: str | Path) -> None:
        """One ``.npz`` file: a JSON header (format, detector, parameters, small state) and the
        state's arrays. Loading it runs no code (`load` reads it with ``allow_pickle=False``)."""
        arrays, values = self._state()
        header = {"format": FORMAT_VERSION, "detector": self.name, "params": self.get_params(), "state": values}
        blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with Path(path).open("wb") as fh:
            np.savez(fh, **{HEADER: blob}, **{f"state.{k}": v for k, v in arrays.items()})

    @classmethod
    def load(cls, path: str | Path) -> Detector:
        """Load a detector written by `save`. The format is checked before anything is read,
        and nothing in the file is executed: a pickle (Vigil's format before version 2, or a
        crafted file) is refused unread."""
        from . import DETECTORS

        path = Path(path)
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic[:1] == b"\x80":
            raise FormatError(
                f"{path}: a pickle, which Vigil no longer loads (loading a pickle can run code); "
                f"if Vigil wrote it, it is a model of the old format: retrain (`vigil run --step train`)"
            )
        if magic != ZIP_MAGIC:
            raise FormatError(f"{path}: not a Vigil detector file (expected a .npz written by Detector.save)")
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z[HEADER]).decode()) if HEADER in z.files else None
                arrays = {k.removeprefix("state."): z[k] for k in z.files if k.startswith("state.")}
        except (ValueError, OSError, UnicodeDecodeError) as exc:  # object arrays, a damaged zip, bad JSON
            raise FormatError(f"{path}: not a readable Vigil detector file ({exc})") from None
        if not isinstance(header, dict):
            raise FormatError(f"{path}: a .npz without Vigil's header: not a Vigil detector file")
        if header.get("format") != FORMAT_VERSION:
            raise FormatError(
                f"{path}: detector file format {header.get('format')!r}, this Vigil reads "
                f"{FORMAT_VERSION}: retrain (`vigil run --step train`)"
            )
        name = header.get("detector")
        if name not in DETECTORS:
            raise FormatError(f"{path}: unknown detector {name!r}; registered: {sorted(DETECTORS)}")
        klass = DETECTORS[name]
        if cls is not Detector and not issubclass(klass, cls):
            raise FormatError(f"{path}: holds a {name!r} detector, not {cls.name!r}")
        try:
            det = klass(**header["params"])
        except TypeError as exc:
            raise FormatError(f"{path}: parameters {header['params']} do not fit {name} ({exc})") from None
        det._set_state(arrays, header["state"])
        return det


def require(ok: bool, detector: str, param: str, must: str, value: Any) -> None:
    """The one way a detector refuses a hyper-parameter: name, rule and the value given."""
    if not ok:
        raise ParamError(detector, param, f"must be {must}, got {value!r}")


def is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def normalise_rows(c: np.ndarray) -> np.ndarray:
    """Rows scaled to sum 1; an all-zero row becomes uniform (no metric stands out)."""
    c = np.abs(np.asarray(c, dtype=np.float64))
    total = c.sum(axis=1, keepdims=True)
    uniform = np.full_like(c, 1.0 / c.shape[1])
    return np.divide(c, total, out=uniform, where=total > 0)
