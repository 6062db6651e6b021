"""Sub-sequence k-means: TSB-AD's KMeansAD family (Liu & Paparrizos, NeurIPS 2024, after
TimeEval's implementation), the leaderboard's best multivariate method on MSL, fitted on train
only as Vigil's protocol requires (TSB-AD fits it on the very series it scores)."""

from __future__ import annotations

import numpy as np

from .base import check_stop, is_int, normalise_rows, require, spread_to_neighbours
from .classical import PointDetector

_CHUNK_CELLS = 2**23  # windows x window values per block while scoring (32 MB of float32)


class KMeansSubsequences(PointDetector):
    """Every window of ``window`` steps (all metrics) is a point; k-means with ``n_clusters``
    learns the shapes train holds. A window's score is its distance to the nearest centroid; a
    step's score is the mean over the windows that cover it, as TSB-AD maps window scores back.

    ``normalize``: ``none`` keeps levels (a level shift is far from every centroid);
    ``window`` z-normalises each metric within each window (TSB-AD's default: shapes only,
    blind to level). At most ``max_windows`` train windows, evenly spaced, are clustered.
    A metric's contribution is its share of the squared distance, averaged like the score.

    ``spread``: a step then takes the highest of those scores within ``spread`` steps either
    side (`spread_to_neighbours`), for labels that cover an anomaly's neighbourhood (NAB's
    windows); its score is final ``spread`` steps later. 0 (the default) keeps the mean.
    """

    name = "kmeans"

    def __init__(
        self,
        window: int = 40,
        n_clusters: int = 10,
        normalize: str = "none",
        max_windows: int = 10000,
        n_init: int = 3,
        random_state: int = 0,
        calibration_fraction: float = 0.1,
        spread: int = 0,
    ):
        self.window = window
        self.n_clusters = n_clusters
        self.normalize = normalize
        self.max_windows = max_windows
        self.n_init = n_init
        self.random_state = random_state
        self.calibration_fraction = calibration_fraction
        self.spread = spread

    def context_steps(self) -> tuple[int, int]:
        # windows starting up to window - 1 before, ending after; then the spread's neighbours
        reach = self.window - 1 + self.spread
        return reach, reach

    def validate_params(self) -> None:
        super().validate_params()
        for param, low in (("window", 1), ("n_clusters", 1), ("max_windows", 2), ("n_init", 1), ("spread", 0)):
            v = getattr(self, param)
            require(is_int(v) and v >= low, self.name, param, f"an integer >= {low}", v)
        require(self.normalize in ("none", "window"), self.name, "normalize", "'none' or 'window'", self.normalize)
        require(is_int(self.random_state), self.name, "random_state", "an integer", self.random_state)

    def _min_length(self) -> int:
        return self.window

    def _held_out_scores(self, x: np.ndarray) -> np.ndarray:
        tail = int(len(x) * self.calibration_fraction)
        if tail < self.window or len(x) - tail < self.window + self.n_clusters:
            return np.empty(0)  # too short a tail (or head) for whole windows
        return super()._held_out_scores(x)

    def _fit(self, x):
        from sklearn.cluster import KMeans

        wins = self._windows(x)
        if len(wins) < self.n_clusters:
            raise ValueError(
                f"{self.name}: train holds {len(wins)} windows of {self.window} steps, fewer than "
                f"n_clusters={self.n_clusters}"
            )
        if len(wins) > self.max_windows:  # evenly spaced, so every part of train is represented
            wins = wins[np.linspace(0, len(wins) - 1, self.max_windows).round().astype(int)]
        km = KMeans(self.n_clusters, n_init=self.n_init, random_state=self.random_state).fit(wins)
        self.centroids_ = km.cluster_centers_.astype(np.float32)

    def _windows(self, x: np.ndarray) -> np.ndarray:
        """[T, F] -> [T - window + 1, window * F], step-major (window position, then metric)."""
        v = np.lib.stride_tricks.sliding_window_view(x, self.window, axis=0)  # [N, F, window]
        if self.normalize == "window":
            mean = v.mean(axis=2, keepdims=True)
            std = v.std(axis=2, keepdims=True)
            v = (v - mean) / np.maximum(std, 1e-6)
        return np.ascontiguousarray(v.transpose(0, 2, 1).reshape(len(v), -1), dtype=np.float32)

    def score_and_contributions(self, x):
        x = self._check(x, min_length=self._min_length())
        n, w, f = len(x) - self.window + 1, self.window, self.n_features_
        c = self.centroids_
        c_sq = np.einsum("ij,ij->i", c, c)
        win_score = np.empty(n)
        win_part = np.empty((n, f))
        step = max(1, _CHUNK_CELLS // (w * f))
        for lo in range(0, n, step):
            check_stop()
            # windows of this block only: x[lo : lo + block + w - 1]
            block = self._windows(x[lo : min(n, lo + step) + w - 1])
            d2 = np.einsum("ij,ij->i", block, block)[:, None] + c_sq[None, :] - 2.0 * (block @ c.T)
            nearest = np.argmin(d2, axis=1)
            diff2 = ((block - c[nearest]) ** 2).reshape(len(block), w, f)
            win_part[lo : lo + len(block)] = diff2.sum(axis=1)
            win_score[lo : lo + len(block)] = np.sqrt(diff2.sum(axis=(1, 2)))
        scores = _mean_over_covering_windows(win_score, w)
        parts = normalise_rows(_mean_over_covering_windows(win_part, w))
        return spread_to_neighbours(scores, parts, self.spread)

    def score(self, x):
        return self.score_and_contributions(x)[0]

    def contributions(self, x):
        return self.score_and_contributions(x)[1]


def _mean_over_covering_windows(values: np.ndarray, window: int) -> np.ndarray:
    """Per-window values [N, ...] (window j covers steps j .. j + window - 1) -> per-step means
    [N + window - 1, ...] over the windows that cover each step, by differences of a cumulative
    sum: O(N), whatever the window."""
    n = len(values)
    t = n + window - 1
    csum = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)], axis=0)
    steps = np.arange(t)
    first = np.maximum(steps - window + 1, 0)  # windows first .. last cover step t
    last = np.minimum(steps, n - 1)
    total = csum[last + 1] - csum[first]
    count = (last - first + 1).astype(np.float64)
    return total / count.reshape(-1, *([1] * (values.ndim - 1)))
