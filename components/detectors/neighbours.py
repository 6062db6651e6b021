"""k-nearest-neighbour distance: the simple baseline that the literature keeps finding hard to
beat on multivariate telemetry (e.g. Sarfraz et al., ICML 2024)."""

from __future__ import annotations

import numpy as np

from .base import check_stop, is_int, normalise_rows, require
from .classical import PointDetector

_CHUNK_CELLS = 2**24  # query rows x reference rows per distance block (64 MB of float32)


class KNNDistance(PointDetector):
    """Distance of each step to its ``n_neighbors``-th nearest neighbour among the train steps
    (``method: kth``), or the mean distance to its ``n_neighbors`` nearest (``mean``).

    With ``window`` > 1 a step is the window of ``window`` steps ending at it, flattened (the
    first steps of a series see an edge-padded past), so a neighbour must match a short
    history, not one instant. At most ``max_train`` train steps, drawn with ``random_state``,
    are kept as the reference set: the cost of scoring grows with it. A metric's contribution
    is its share of the squared distance to the neighbours that set the score.
    """

    name = "knn"

    def __init__(
        self,
        n_neighbors: int = 5,
        window: int = 1,
        method: str = "kth",
        max_train: int = 20000,
        random_state: int = 0,
        calibration_fraction: float = 0.1,
    ):
        self.n_neighbors = n_neighbors
        self.window = window
        self.method = method
        self.max_train = max_train
        self.random_state = random_state
        self.calibration_fraction = calibration_fraction

    def context_steps(self) -> tuple[int, int]:
        return self.window - 1, 0  # a step is the window ending at it

    def validate_params(self) -> None:
        super().validate_params()
        for param, low in (("n_neighbors", 1), ("window", 1), ("max_train", 2)):
            v = getattr(self, param)
            require(is_int(v) and v >= low, self.name, param, f"an integer >= {low}", v)
        require(self.method in ("kth", "mean"), self.name, "method", "'kth' or 'mean'", self.method)
        require(is_int(self.random_state), self.name, "random_state", "an integer", self.random_state)

    def _fit(self, x):
        rows = _windowed(x, self.window)
        if len(rows) <= self.n_neighbors:
            raise ValueError(f"{self.name}: {len(rows)} train steps are too few for n_neighbors={self.n_neighbors}")
        if len(rows) > self.max_train:
            keep = np.random.default_rng(self.random_state).choice(len(rows), self.max_train, replace=False)
            rows = rows[np.sort(keep)]
        self.reference_ = np.ascontiguousarray(rows, dtype=np.float32)

    def score_and_contributions(self, x):
        q = _windowed(self._check(x), self.window)
        ref = self.reference_
        k = min(self.n_neighbors, len(ref))
        ref_sq = np.einsum("ij,ij->i", ref, ref)
        scores = np.empty(len(q))
        contrib = np.empty((len(q), self.n_features_))
        step = max(1, _CHUNK_CELLS // len(ref))
        for lo in range(0, len(q), step):
            check_stop()
            block = q[lo : lo + step]
            # squared distances by |a|^2 + |b|^2 - 2ab: one matrix product per block
            d2 = np.einsum("ij,ij->i", block, block)[:, None] + ref_sq[None, :] - 2.0 * (block @ ref.T)
            np.maximum(d2, 0.0, out=d2)
            nearest = np.argpartition(d2, k - 1, axis=1)[:, :k]
            near_d2 = np.take_along_axis(d2, nearest, axis=1)
            if self.method == "kth":
                pick = nearest[np.arange(len(block)), np.argmax(near_d2, axis=1)][:, None]
                scores[lo : lo + len(block)] = np.sqrt(near_d2.max(axis=1))
            else:
                pick = nearest
                scores[lo : lo + len(block)] = np.sqrt(near_d2).mean(axis=1)
            diff = (block[:, None, :] - ref[pick]) ** 2  # [B, neighbours used, window * F]
            per_metric = diff.reshape(len(block), pick.shape[1], self.window, self.n_features_).sum(axis=(1, 2))
            contrib[lo : lo + len(block)] = per_metric
        return scores, normalise_rows(contrib)

    def score(self, x):
        return self.score_and_contributions(x)[0]

    def contributions(self, x):
        return self.score_and_contributions(x)[1]


def _windowed(x: np.ndarray, window: int) -> np.ndarray:
    """[T, F] -> [T, window * F]: row t holds steps t - window + 1 .. t (edge-padded at the front)."""
    if window == 1:
        return np.asarray(x, dtype=np.float32)
    padded = np.concatenate([np.repeat(x[:1], window - 1, axis=0), x], axis=0)
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # [T, F, window]
    return np.ascontiguousarray(views.transpose(0, 2, 1).reshape(len(x), -1), dtype=np.float32)
