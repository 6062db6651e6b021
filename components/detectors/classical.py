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
        x = self._check(train, fitting=True, min_length=self._min_length())
        self._fit(x)
        self.calibration_scores_ = self._held_out_scores(x)
        return self

    def _min_length(self) -> int:
        """The fewest steps a series may have (a window's length, for detectors that read windows)."""
        return 1

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
        max_features: float | int = 1.0,
        contamination: float | str = "auto",
        random_state: int = 0,
        n_jobs: int = 1,
        calibration_fraction: float = 0.1,
    ):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
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
        f = self.max_features
        require(
            (is_int(f) and f >= 1) or (is_number(f) and 0 < f <= 1),
            self.name,
            "max_features",
            "an integer >= 1 or a share of the metrics in (0, 1]",
            f,
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

        model = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            # an int above the metrics there are would fail in scikit-learn; it means "all"
            max_features=min(self.max_features, x.shape[1]) if is_int(self.max_features) else self.max_features,
            contamination=self.contamination,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        ).fit(x)
        self._keep_trees(model)

    def _keep_trees(self, model) -> None:
        """Keep the fitted trees as plain arrays (nodes of all trees concatenated; tree t owns
        nodes ``node_offsets_[t]:node_offsets_[t + 1]``), so that a saved forest is data, not
        pickled sklearn objects. Scoring below walks them as scikit-learn's does."""
        trees = [e.tree_ for e in model.estimators_]
        self.node_offsets_ = np.cumsum([0] + [t.node_count for t in trees])
        self.left_ = np.concatenate([t.children_left for t in trees])
        self.right_ = np.concatenate([t.children_right for t in trees])
        self.split_feature_ = np.concatenate([t.feature for t in trees])
        self.split_threshold_ = np.concatenate([t.threshold for t in trees])
        self.node_samples_ = np.concatenate([t.n_node_samples for t in trees])
        self.node_depth_ = np.concatenate([_node_depths(t.children_left, t.children_right) for t in trees])
        self.tree_features_ = np.stack(model.estimators_features_)
        self.subsample_features_ = bool(model._max_features != self.n_features_)
        self.max_samples_ = int(model._max_samples)

    def _trees(self):
        """Per tree: its node arrays and the columns of x it splits on."""
        for t, (a, b) in enumerate(zip(self.node_offsets_[:-1], self.node_offsets_[1:])):
            cols = self.tree_features_[t] if self.subsample_features_ else np.arange(self.n_features_)
            yield (
                self.left_[a:b],
                self.right_[a:b],
                self.split_feature_[a:b],
                self.split_threshold_[a:b],
                self.node_samples_[a:b],
                self.node_depth_[a:b],
                cols,
            )

    def score_and_contributions(self, x):
        """One walk of every tree gives both: the leaf's depth for the score, the splits on the way
        for the contributions."""
        x = self._check(x)
        depths = np.zeros(x.shape[0])
        total = np.zeros((x.shape[0], x.shape[1]))
        for left, right, feature, threshold, samples, depth, cols in self._trees():
            leaf, counts = _walk(x[:, cols], left, right, feature, threshold)
            depths += depth[leaf] + _average_path_length(samples)[leaf] - 1.0
            # nodes on the path, the leaf included (scikit-learn's decision_path length)
            total[:, cols] += counts / (counts.sum(axis=1) + 1)[:, None]
        # 2^(-E[h(x)] / c(max_samples)), summed tree by tree in scikit-learn's order, so that it
        # equals ``-IsolationForest.score_samples`` exactly
        denominator = len(self.node_offsets_[:-1]) * _average_path_length(np.array([self.max_samples_]))[0]
        scores = 2 ** (-np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0))
        return scores, normalise_rows(total)

    def score(self, x):
        return self.score_and_contributions(x)[0]

    def contributions(self, x):
        return self.score_and_contributions(x)[1]


def _walk(x: np.ndarray, left, right, feature, threshold) -> tuple[np.ndarray, np.ndarray]:
    """Each row's leaf in one tree (as ``tree.apply``: go left where ``x <= threshold``), and how
    often each column split the row on its way there."""
    rows = np.arange(x.shape[0])
    node = np.zeros(x.shape[0], dtype=np.int64)
    counts = np.zeros(x.shape, dtype=np.float64)
    inside = left[node] != -1
    while inside.any():
        r, n = rows[inside], node[inside]
        f = feature[n]
        counts[r, f] += 1
        node[r] = np.where(x[r, f] <= threshold[n], left[n], right[n])
        inside = left[node] != -1
    return node, counts


def _node_depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Depth of every node, the root at 1 (scikit-learn's ``compute_node_depths``)."""
    depth = np.zeros(len(left), dtype=np.float64)
    depth[0] = 1.0
    for n in range(len(left)):  # children always come after their parent
        if left[n] != -1:
            depth[left[n]] = depth[right[n]] = depth[n] + 1.0
    return depth


def _average_path_length(n_samples: np.ndarray) -> np.ndarray:
    """c(n): the average path length of an unsuccessful search in a binary tree of n samples
    (Liu et al., 2008), as scikit-learn computes it."""
    n = np.asarray(n_samples, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out
