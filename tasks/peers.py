"""The benchmark's peers: PyOD's detectors as a user would first try them (library defaults,
one time step per row), behind the small interface the benchmark measures Vigil's detectors
through. PyOD stays out of `components/` (the pure library's dependencies are fixed); this
adapter is all that touches it.

A peer has no per-metric contributions, so HitRate is undefined for it. Its
``calibration_scores_`` come as Vigil's point detectors' do: a copy fitted on the head of
train scores the last ``CALIBRATION_FRACTION`` of it, so the label-free threshold rule treats
peers and Vigil's detectors alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

CALIBRATION_FRACTION = 0.1


def _pyod(module: str, cls: str, **params) -> Callable[[np.ndarray], object]:
    def make(train: np.ndarray):
        import importlib

        return getattr(importlib.import_module(f"pyod.models.{module}"), cls)(**params)

    return make


def standardised_rank(x: np.ndarray) -> int:
    """How many principal components of ``x``, standardised as PyOD's PCA standardises it
    (centred and scaled; a metric constant in train stays 0), have non-zero variance: numpy's
    matrix rank, at least 1."""
    from sklearn.preprocessing import StandardScaler

    z = StandardScaler().fit_transform(np.asarray(x, dtype=np.float64))
    return max(1, int(np.linalg.matrix_rank(z)))


def _pyod_pca(train: np.ndarray):
    """PyOD's PCA with its defaults but ``n_components``: the components of non-zero variance.
    PyOD divides each component's distance by its explained-variance ratio, so with every
    component (its default) a metric constant in train, or metrics that move together as
    SMD's and MSL's do, divide by zero and every score is infinite."""
    from pyod.models.pca import PCA

    return PCA(n_components=standardised_rank(train))


# name -> (constructor from the train it fits, what it is). Defaults as PyOD ships them,
# seeded where it draws.
PEERS: dict[str, tuple[Callable[[np.ndarray], object], str]] = {
    "pyod_iforest": (_pyod("iforest", "IForest", random_state=0), "Isolation Forest"),
    "pyod_pca": (_pyod_pca, "PCA, weighted projection distances, the components of non-zero variance"),
    "pyod_knn": (_pyod("knn", "KNN"), "distance to the 5th nearest neighbour"),
    "pyod_lof": (_pyod("lof", "LOF"), "local outlier factor, 20 neighbours"),
    "pyod_ecod": (_pyod("ecod", "ECOD"), "empirical-CDF outlyingness"),
    "pyod_copod": (_pyod("copod", "COPOD"), "copula-based outlyingness"),
    "pyod_hbos": (_pyod("hbos", "HBOS"), "histogram-based outlier score"),
}


class Peer:
    """One PyOD model with fit / score / score_and_contributions / calibration_scores_."""

    def __init__(self, name: str):
        if name not in PEERS:
            raise ValueError(f"unknown peer {name!r}; known: {sorted(PEERS)}")
        self.name = name

    def _fit_model(self, x: np.ndarray):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyOD's FutureWarnings, not about this data
            return PEERS[self.name][0](x).fit(x)

    def fit(self, train: np.ndarray, verbose: bool = False) -> Peer:
        x = np.asarray(train, dtype=np.float64)
        self.model_ = self._fit_model(x)
        tail = int(len(x) * CALIBRATION_FRACTION)
        head = self._fit_model(x[:-tail]) if 1 <= tail < len(x) - 1 else None
        self.calibration_scores_ = self._decide(head, x[-tail:]) if head is not None else np.empty(0)
        return self

    @staticmethod
    def _decide(model, x: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = np.asarray(model.decision_function(np.asarray(x, dtype=np.float64)), dtype=np.float64)
        if not np.isfinite(s).all():
            rows = np.flatnonzero(~np.isfinite(s))[:5].tolist()
            raise ValueError(f"non-finite scores at rows {rows} (a metric constant in train divides by zero?)")
        return s

    def score(self, x: np.ndarray) -> np.ndarray:
        return self._decide(self.model_, x)

    def score_and_contributions(self, x: np.ndarray) -> tuple[np.ndarray, None]:
        return self.score(x), None


def pyod_version() -> str:
    import pyod

    return pyod.__version__
