"""Point-wise detectors: robust z-score baseline, PCA reconstruction, Isolation Forest."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from .base import Detector, normalise_rows


class ZScore(Detector):
    """Robust per-metric z-score: |x - median| / (1.4826 MAD) against train.

    The baseline every benchmark should carry: a deep model that cannot beat it has learnt
    nothing. ``aggregate`` turns per-metric z into one score: ``max`` or ``mean``.
    """

    name = "zscore"

    def __init__(self, aggregate: str = "max", min_scale: float = 1e-3):
        if aggregate not in ("max", "mean"):
            raise ValueError(f"zscore: aggregate must be 'max' or 'mean', got {aggregate!r}")
        self.aggregate = aggregate
        self.min_scale = min_scale

    def fit(self, train):
        x = self._check(train, fitting=True)
        self.median_ = np.median(x, axis=0)
        mad = 1.4826 * np.median(np.abs(x - self.median_), axis=0)
        # MAD is 0 for metrics that are mostly constant; fall back to the std, then a floor.
        self.scale_ = np.maximum(np.where(mad > 0, mad, x.std(axis=0)), self.min_scale)
        return self

    def _z(self, x):
        x = self._check(x)
        return np.abs(x - self.median_) / self.scale_

    def score(self, x):
        z = self._z(x)
        return (z.max(axis=1) if self.aggregate == "max" else z.mean(axis=1)).astype(np.float64)

    def contributions(self, x):
        return normalise_rows(self._z(x))


class PCADetector(Detector):
    """Squared reconstruction error after projecting on the principal subspace of train.

    ``n_components``: an int, or a float in (0, 1) for the share of variance to keep; at most
    F - 1 components are kept, so that something is left to score.
    Each metric's contribution is its share of the squared error.
    """

    name = "pca"

    def __init__(self, n_components: float | int = 0.95):
        self.n_components = n_components

    def fit(self, train):
        x = self._check(train, fitting=True)
        n = self.n_components
        if isinstance(n, int):
            n = min(n, x.shape[1])
        pca = PCA(n_components=n, svd_solver="full").fit(x)
        # Keep at most F - 1 components: a subspace holding everything reconstructs anything.
        # With one metric this keeps none, and the score is the squared distance from the mean.
        k = min(pca.n_components_, x.shape[1] - 1)
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_[:k].astype(np.float32)
        return self

    def _residual(self, x):
        x = self._check(x) - self.mean_
        return x - (x @ self.components_.T) @ self.components_

    def score(self, x):
        r = self._residual(x)
        return np.einsum("ij,ij->i", r, r).astype(np.float64)

    def contributions(self, x):
        return normalise_rows(self._residual(x) ** 2)


class IForest(Detector):
    """Isolation Forest (Liu et al., 2008) on single time steps; score = -score_samples.

    Contributions follow DIFFI's idea (Carletti et al., 2023): every split feature on a
    step's path in every tree earns 1 / path depth, so features that isolate the step early
    count most.
    """

    name = "iforest"

    def __init__(self, n_estimators: int = 100, max_samples: int | str = "auto",
                 contamination: float | str = "auto", random_state: int = 0, n_jobs: int = 1):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, train):
        x = self._check(train, fitting=True)
        self.model_ = IsolationForest(
            n_estimators=self.n_estimators, max_samples=self.max_samples, contamination=self.contamination,
            random_state=self.random_state, n_jobs=self.n_jobs,
        ).fit(x)
        return self

    def score(self, x):
        x = self._check(x)
        return -self.model_.score_samples(x).astype(np.float64)

    def contributions(self, x):
        x = self._check(x)
        total = np.zeros((x.shape[0], x.shape[1]))
        for tree, feats in zip(self.model_.estimators_, self.model_.estimators_features_):
            t = tree.tree_
            path = tree.decision_path(x[:, feats]).tocsr()  # [steps, nodes]
            depth = np.asarray(path.sum(axis=1)).ravel()
            internal = t.feature >= 0
            node_feat = sparse.csr_matrix(
                (np.ones(internal.sum()), (np.flatnonzero(internal), feats[t.feature[internal]])),
                shape=(t.node_count, x.shape[1]),
            )
            total += (path @ node_feat).toarray() / depth[:, None]
        return normalise_rows(total)
