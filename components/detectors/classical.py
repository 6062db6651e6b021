"""Point-wise detectors: robust z-score baseline, PCA reconstruction, Isolation Forest."""

from __future__ import annotations

import numpy as np

from .base import Detector, is_int, is_number, normalise_rows, require


class PointDetector(Detector):
    """Detectors that score each time step alone. `fit` checks the parameters, fits on all of
    train, and scores the last ``calibration_fraction`` of train with a copy fitted on the
    rest, so that ``calibration_scores_`` come from steps the scoring model never saw."""

    calibration_fraction: float

    def _fit(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def validate_params(self) -> None:
        f = self.calibration_fraction
        require(is_number(f) and 0 <= f < 1, self.name, "calibration_fraction", "a number in [0, 1)", f)

    def fit(self, train, *, verbose: bool = False):
        self.validate_params()
        x = self._check(train, fitting=True)
        self._fit(x)
        self.calibration_scores_ = self._held_out_scores(x)
        return self

    def _held_out_scores(self, x: np.ndarray) -> np.ndarray:
        tail = int(len(x) * self.calibration_fraction)
        if tail < 1 or tail >= len(x) - 1:
            return np.empty(0)
        head = type(self)(**{**self.get_params(), "calibration_fraction": 0.0}).fit(x[:-tail])
        return head.score(x[-tail:])


class ZScore(PointDetector):
    """Robust per-metric z-score: |x - median| / (1.4826 MAD) against train.

    The baseline every benchmark should carry: a deep model that cannot beat it has learnt
    nothing. ``aggregate`` turns per-metric z into one score: ``max`` or ``mean``.
    """

    name = "zscore"

    def __init__(self, aggregate: str = "max", min_scale: float = 1e-3, calibration_fraction: float = 0.1):
        self.aggregate = aggregate
        self.min_scale = min_scale
        self.calibration_fraction = calibration_fraction

    def validate_params(self) -> None:
        super().validate_params()
        require(self.aggregate in ("max", "mean"), self.name, "aggregate", "'max' or 'mean'", self.aggregate)
        require(
            is_number(self.min_scale) and self.min_scale > 0,
            self.name,
            "min_scale",
            "a positive number",
            self.min_scale,
        )

    def _fit(self, x):
        self.median_ = np.median(x, axis=0)
        mad = 1.4826 * np.median(np.abs(x - self.median_), axis=0)
        # MAD is 0 for metrics that are mostly constant; fall back to the std, then a floor.
        self.scale_ = np.maximum(np.where(mad > 0, mad, x.std(axis=0)), self.min_scale)

    def _z(self, x):
        x = self._check(x)
        return np.abs(x - self.median_) / self.scale_

    def score(self, x):
        z = self._z(x)
        return (z.max(axis=1) if self.aggregate == "max" else z.mean(axis=1)).astype(np.float64)

    def contributions(self, x):
        return normalise_rows(self._z(x))


class PCADetector(PointDetector):
    """Squared reconstruction error after projecting on the principal subspace of train.

    ``n_components``: an int, or a float in (0, 1) for the share of variance to keep; at most
    F - 1 components are kept, so that something is left to score.
    Each metric's contribution is its share of the squared error.
    """

    name = "pca"

    def __init__(self, n_components: float | int = 0.95, calibration_fraction: float = 0.1):
        self.n_components = n_components
        self.calibration_fraction = calibration_fraction

    def validate_params(self) -> None:
        super().validate_params()
        n = self.n_components
        require(
            (is_int(n) and n >= 1) or (is_number(n) and 0 < n < 1),
            self.name,
            "n_components",
            "an integer >= 1 or a share of variance in (0, 1)",
            n,
        )

    def _fit(self, x):
        from sklearn.decomposition import PCA  # here, not at import: checking parameters needs no sklearn

        n = self.n_components
        if isinstance(n, int):
            n = min(n, x.shape[1])
        pca = PCA(n_components=n, svd_solver="full").fit(x)
        # Keep at most F - 1 components: a subspace holding everything reconstructs anything.
        # With one metric this keeps none, and the score is the squared distance from the mean.
        k = min(pca.n_components_, x.shape[1] - 1)
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_[:k].astype(np.float32)

    def _residual(self, x):
        x = self._check(x) - self.mean_
        return x - (x @ self.components_.T) @ self.components_

    def score(self, x):
        r = self._residual(x)
        return np.einsum("ij,ij->i", r, r).astype(np.float64)

    def contributions(self, x):
        return normalise_rows(self._residual(x) ** 2)


class IForest(PointDetector):
    """Isolation Forest (Liu et al., 2008) on single time steps; score = -score_samples.

    Contributions follow DIFFI's idea (Carletti et al., 2023): every split feature on a
    step's path in every tree earns 1 / path depth, so features that isolate the step early
    count most.
    """

    name = "iforest"

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int | str = "auto",
        contamination: float | str = "auto",
        random_state: int = 0,
        n_jobs: int = 1,
        calibration_fraction: float = 0.1,
    ):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.calibration_fraction = calibration_fraction

    def validate_params(self) -> None:
        super().validate_params()
        require(
            is_int(self.n_estimators) and self.n_estimators >= 1,
            self.name,
            "n_estimators",
            "an integer >= 1",
            self.n_estimators,
        )
        m = self.max_samples
        require(
            m == "auto" or (is_int(m) and m >= 2) or (is_number(m) and 0 < m <= 1),
            self.name,
            "max_samples",
            "'auto', an integer >= 2 or a share in (0, 1]",
            m,
        )
        c = self.contamination
        require(
            c == "auto" or (is_number(c) and 0 < c <= 0.5),
            self.name,
            "contamination",
            "'auto' or a number in (0, 0.5]",
            c,
        )
        require(is_int(self.random_state), self.name, "random_state", "an integer", self.random_state)
        require(is_int(self.n_jobs) and self.n_jobs != 0, self.name, "n_jobs", "a non-zero integer", self.n_jobs)

    def _fit(self, x):
        from sklearn.ensemble import IsolationForest

        self.model_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            contamination=self.contamination,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        ).fit(x)

    def score(self, x):
        x = self._check(x)
        return -self.model_.score_samples(x).astype(np.float64)

    def contributions(self, x):
        from scipy import sparse

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
