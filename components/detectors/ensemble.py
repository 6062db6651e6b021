"""A score ensemble: several detectors' scores, each put on one scale, averaged."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Detector, normalise_rows, require


class ScoreEnsemble(Detector):
    """Fits each of ``members`` (registered detector names, with ``member_params[name]`` or
    their defaults) on train and averages their normalised scores.

    Scores of different detectors live on different scales, so each member's score is
    normalised against its own ``calibration_scores_`` (its scores on train it did not learn
    from), fixed at fit time, so that a step scores the same whatever else is scored with it:

    - ``robust_z``: (score - median) / (1.4826 MAD), unbounded above (the default);
    - ``rank``: the share of calibration scores at or below the score, in [0, 1] (robust to
      any monotone distortion, but every score above the calibration maximum ties at 1).

    Contributions are the members' contributions averaged the same way (equal weights), so
    each row still sums to 1. The ensemble's own ``calibration_scores_`` are the members'
    normalised calibration scores over the train tail they share (all end at train's end).
    """

    name = "ensemble"

    def __init__(
        self,
        members: tuple[str, ...] = ("pca", "iforest", "knn"),
        member_params: dict[str, dict[str, Any]] | None = None,
        normalise: str = "robust_z",
    ):
        self.members = members
        self.member_params = member_params
        self.normalise = normalise

    def _members(self) -> list[Detector]:
        from . import get_detector

        params = self.member_params or {}
        return [get_detector(name, **params.get(name, {})) for name in self.members]

    def validate_params(self) -> None:
        from . import DETECTORS

        m = self.members
        require(
            isinstance(m, (list, tuple)) and len(m) >= 1 and all(isinstance(n, str) for n in m),
            self.name,
            "members",
            "a non-empty list of detector names",
            m,
        )
        unknown = [n for n in m if n not in DETECTORS or n == self.name]
        require(not unknown, self.name, "members", f"registered detectors other than {self.name}", m)
        require(len(set(m)) == len(m), self.name, "members", "names without repeats", m)
        p = self.member_params
        require(
            p is None or (isinstance(p, dict) and set(p) <= set(m) and all(isinstance(v, dict) for v in p.values())),
            self.name,
            "member_params",
            "null or a mapping from a member's name to its parameters",
            p,
        )
        require(self.normalise in ("robust_z", "rank"), self.name, "normalise", "'robust_z' or 'rank'", self.normalise)
        for det in self._members():
            det.validate_params()

    def fit(self, train, *, verbose: bool = False):
        self.validate_params()
        x = self._check(train, fitting=True)
        self.members_ = [det.fit(x, verbose=verbose) for det in self._members()]
        self._set_normalisers()
        return self

    def _set_normalisers(self) -> None:
        refs = [np.sort(np.asarray(d.calibration_scores_, dtype=np.float64)) for d in self.members_]
        empty = [n for n, r in zip(self.members, refs) if r.size == 0]
        if empty:
            raise ValueError(
                f"{self.name}: members {empty} kept no held-out train scores to normalise against; lengthen train"
            )
        self.references_ = refs
        centre = np.array([np.median(r) for r in refs])
        mad = np.array([1.4826 * np.median(np.abs(r - c)) for r, c in zip(refs, centre)])
        std = np.array([r.std() for r in refs])
        self.centre_ = centre
        self.scale_ = np.where(mad > 0, mad, np.where(std > 0, std, 1.0))
        shared = min(len(d.calibration_scores_) for d in self.members_)
        self.calibration_scores_ = self._combine([d.calibration_scores_[-shared:] for d in self.members_])

    def _combine(self, member_scores: list[np.ndarray]) -> np.ndarray:
        normalised = []
        for i, s in enumerate(member_scores):
            s = np.asarray(s, dtype=np.float64)
            if self.normalise == "rank":
                normalised.append(np.searchsorted(self.references_[i], s, side="right") / len(self.references_[i]))
            else:
                normalised.append((s - self.centre_[i]) / self.scale_[i])
        return np.mean(normalised, axis=0)

    def score_and_contributions(self, x):
        x = self._check(x)
        parts = [d.score_and_contributions(x) for d in self.members_]
        return self._combine([s for s, _ in parts]), normalise_rows(np.mean([c for _, c in parts], axis=0))

    def score(self, x):
        return self.score_and_contributions(x)[0]

    def context_steps(self) -> tuple[int, int]:
        needs = [d.context_steps() for d in self._members()]  # parameters only: no fit needed
        return max(p for p, _ in needs), max(f for _, f in needs)

    def contributions(self, x):
        return self.score_and_contributions(x)[1]

    # --- persistence: each member's own state, under a prefix ------------------------------
    def _state(self):
        arrays: dict[str, np.ndarray] = {
            "centre_": self.centre_,
            "scale_": self.scale_,
            "calibration_scores_": self.calibration_scores_,
        }
        states = []
        for i, det in enumerate(self.members_):
            member_arrays, member_values = det._state()
            arrays.update({f"member{i}.{k}": v for k, v in member_arrays.items()})
            arrays[f"reference{i}"] = self.references_[i]
            states.append(member_values)
        return arrays, {"n_features_": self.n_features_, "member_states": states}

    def _set_state(self, arrays, values):
        self.n_features_ = int(values["n_features_"])
        self.centre_, self.scale_ = arrays["centre_"], arrays["scale_"]
        self.calibration_scores_ = arrays["calibration_scores_"]
        self.members_, self.references_ = [], []
        for i, (det, state) in enumerate(zip(self._members(), values["member_states"])):
            prefix = f"member{i}."
            det._set_state({k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}, state)
            self.members_.append(det)
            self.references_.append(arrays[f"reference{i}"])
