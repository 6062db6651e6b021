"""Scaling fitted on train only, and the time-ordered validation cut."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .datasets.base import Anomaly, Dataset

SCALERS = ("minmax", "standard")


@dataclass
class Scaler:
    """Per-metric scaler fitted on train alone.

    ``minmax`` maps train to [0, 1]; ``standard`` to zero mean and unit variance. Test values
    far outside train are clipped to ``[-clip, clip]`` (minmax: ``[-clip, 1 + clip]``) so that
    one wild value cannot swamp a model; ``clip=None`` keeps them. A metric that is constant
    in train gets scale 1, so its deviations in test still show.
    """

    kind: str = "minmax"
    clip: float | None = 5.0
    offset_: np.ndarray | None = field(default=None, repr=False)
    scale_: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in SCALERS:
            raise ValueError(f"unknown scaler {self.kind!r}; choose one of {SCALERS}")
        if self.clip is not None and self.clip <= 0:
            raise ValueError(f"clip must be positive or None, got {self.clip}")

    def fit(self, train: np.ndarray) -> Scaler:
        x = _as_2d(train)
        if self.kind == "minmax":
            self.offset_, scale = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
        else:
            self.offset_, scale = x.mean(axis=0), x.std(axis=0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.offset_ is None:
            raise RuntimeError("Scaler.transform called before fit")
        x = _as_2d(x)
        if x.shape[1] != self.offset_.shape[0]:
            raise ValueError(f"scaler was fitted on {self.offset_.shape[0]} metrics, got {x.shape[1]}")
        z = (x - self.offset_) / self.scale_
        if self.clip is not None:
            upper = 1.0 + self.clip if self.kind == "minmax" else self.clip
            np.clip(z, -self.clip, upper, out=z)
        return z.astype(np.float32)

    def fit_transform(self, train: np.ndarray) -> np.ndarray:
        return self.fit(train).transform(train)

    def to_dict(self) -> dict:
        if self.offset_ is None:
            raise RuntimeError("Scaler.to_dict called before fit")
        return {"kind": self.kind, "clip": self.clip, "offset": self.offset_.tolist(), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        s = cls(d["kind"], d["clip"])
        s.offset_, s.scale_ = np.asarray(d["offset"], dtype=np.float64), np.asarray(d["scale"], dtype=np.float64)
        return s


def _as_2d(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"expected a [time, metrics] array, got shape {x.shape}")
    return x


def split_validation(dataset: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
    """Cut ``dataset.test`` in time order: the first ``fraction`` becomes the validation set
    (for thresholds and model choice), the rest the test set. Train is shared; nothing is shuffled."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    cut = int(round(len(dataset.test) * fraction))
    if cut == 0 or cut == len(dataset.test):
        raise ValueError(f"{dataset.name}: {len(dataset.test)} test rows are too few to cut at {fraction}")

    def part(lo: int, hi: int, suffix: str) -> Dataset:
        causes = [
            Anomaly(max(a.start, lo) - lo, min(a.end, hi) - lo, a.metrics)
            for a in dataset.causes
            if a.start < hi and a.end > lo
        ]
        return replace(
            dataset,
            name=f"{dataset.name}:{suffix}",
            test=dataset.test.iloc[lo:hi],
            labels=dataset.labels[lo:hi],
            causes=causes,
        )

    return part(0, cut, "validation"), part(cut, len(dataset.test), "test")
