"""Remedies for an incident, ranked by what has worked: the catalogue, an incident's features,
and the rankers (one registry, `RANKERS`).

An operator's feedback on an incident is a list of remedies tried, each resolved or not and
how long it took. Each becomes an `Observation`: the incident's features, the remedy (the
bandit's arm) and a reward, `reward(resolved, minutes)`: 0 if it did not resolve the
incident, else 1 / (1 + minutes / time_scale), so a fix that works sooner counts for more.

Rankers share the detectors' base (`components.estimator.Estimator`): every parameter an
explicit keyword of ``__init__``, no logic there, learned state ending in ``_``, state as JSON
(`to_dict` / `ranker_from_dict`, or a file through `save` / `Ranker.load`; nothing is
pickled). ``fit`` starts from nothing and takes the observations in (incident, remedy) order,
so the same feedback always gives the same ranker, whichever order it arrived in; ``update``
adds one observation (the simulation's online loop).

- ``linucb``: disjoint LinUCB (Li et al., WWW 2010): per remedy a ridge regression of reward on
  the incident's features, ranked by prediction plus ``alpha`` times its uncertainty, so a
  remedy rarely tried on incidents like this one is still proposed now and then;
- ``thompson``: linear Thompson sampling (Agrawal & Goyal, ICML 2013) on the same statistics,
  the draw seeded by the incident, so one incident always gets the same ranking;
- ``success_rate``: the baseline, most often successful so far (context-free, Laplace-smoothed);
- ``catalogue_order`` and ``random``: the references a learned ranking has to beat.
"""

from __future__ import annotations

import fnmatch
import math
import zlib
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .estimator import Estimator

# --- the catalogue ----------------------------------------------------------------------------

MIN_SHARE = 0.05  # a top metric below this share of the incident is noise: it makes no remedy applicable


@dataclass(frozen=True)
class IncidentContext:
    """What a ranker sees of an incident: where it happened, what saw it, what it looked like."""

    kind: str  # the data source's kind (a dataset kind: synthetic, dcache_billing, ...)
    detector: str
    top_metrics: tuple[tuple[str, float], ...]  # (metric, share), largest first
    margin: float  # how far the peak score is over the threshold, relative to it
    hour: float  # hour of day (UTC) the incident started, 0-24


@dataclass(frozen=True)
class Remedy:
    """One catalogue entry. ``kinds``, ``detectors``: where it applies (empty: anywhere);
    ``metrics``: shell patterns (``error*``, ``cpu_*``) of which one must match one of the
    incident's top metrics carrying at least `MIN_SHARE` of it (empty: any incident)."""

    name: str
    description: str
    kinds: tuple[str, ...] = ()
    detectors: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    def applies(self, ctx: IncidentContext) -> bool:
        if self.kinds and ctx.kind not in self.kinds:
            return False
        if self.detectors and ctx.detector not in self.detectors:
            return False
        if self.metrics:
            names = [m for m, share in ctx.top_metrics if share >= MIN_SHARE]
            return any(fnmatch.fnmatchcase(m, p) for m in names for p in self.metrics)
        return True


def applicable(catalogue: list[Remedy], ctx: IncidentContext) -> list[str]:
    """The names of the remedies that apply to the incident, in catalogue order."""
    return [r.name for r in catalogue if r.applies(ctx)]


def reward(resolved: bool, minutes: float | None, time_scale: float) -> float:
    """0 if the remedy did not resolve the incident; else 1 / (1 + minutes / time_scale), with
    an unrecorded time counted as ``time_scale`` (reward 0.5)."""
    if not resolved:
        return 0.0
    t = time_scale if minutes is None else max(0.0, float(minutes))
    return 1.0 / (1.0 + t / time_scale)


# --- features ---------------------------------------------------------------------------------

DENSE = 4  # bias, margin, hour as sine and cosine


def _bucket(token: str, dim: int) -> int:
    # crc32, not hash(): the same token must land in the same slot in every process
    return DENSE + zlib.crc32(token.encode()) % (dim - DENSE)


def incident_features(ctx: IncidentContext, dim: int = 64) -> np.ndarray:
    """A fixed-length vector: bias, the peak's margin (log-scaled, capped), the hour on a
    circle, and hashed tokens: the source kind, the detector, each top metric and its group
    (the name before its first ``_``) weighted by its share. Hashing keeps the length fixed as
    new metrics and sources appear; collisions only blur."""
    x = np.zeros(dim)
    x[0] = 1.0
    x[1] = min(math.log1p(max(ctx.margin, 0.0)), 3.0) / 3.0
    angle = 2 * math.pi * (ctx.hour % 24) / 24
    x[2], x[3] = 0.5 * math.sin(angle), 0.5 * math.cos(angle)
    x[_bucket(f"kind={ctx.kind}", dim)] += 1.0
    x[_bucket(f"detector={ctx.detector}", dim)] += 0.5
    total = sum(s for _, s in ctx.top_metrics) or 1.0
    for metric, share in ctx.top_metrics:
        x[_bucket(f"metric={metric}", dim)] += share / total
        x[_bucket(f"group={metric.split('_')[0]}", dim)] += share / total
    return x


@dataclass(frozen=True)
class Observation:
    """One remedy tried on one incident, and what came of it."""

    incident: int
    remedy: str
    reward: float
    x: np.ndarray = field(compare=False, repr=False)
    resolved: bool = False
    minutes: float | None = None


# --- rankers ----------------------------------------------------------------------------------


class Ranker(Estimator):
    """A remedy ranking policy. ``rank`` orders ``arms`` (the applicable remedies) for an
    incident with features ``x``; ``key`` (the incident id) seeds any randomness, so one
    incident is always ranked the same by one state."""

    name = ""
    FILE_FORMAT: ClassVar[str] = "vigil-ranker/1"
    FILE_KIND: ClassVar[str] = "ranker"

    @classmethod
    def registry(cls) -> dict[str, type[Ranker]]:
        return RANKERS

    def fit(self, observations: list[Observation]) -> Ranker:
        self._reset()
        for obs in sorted(observations, key=lambda o: (o.incident, o.remedy)):
            self.update(obs)
        return self

    def _reset(self) -> None:
        """Learned state as before any observation (subclasses add theirs)."""
        self.n_observations_ = 0

    def _ready(self) -> None:
        # an unfitted ranker ranks and learns from its prior: its state is made on first use
        if not hasattr(self, "n_observations_"):
            self._reset()

    def update(self, obs: Observation) -> None:
        """Learn from one more observation."""
        self._ready()
        self.n_observations_ += 1
        self._learn(obs)

    def _learn(self, obs: Observation) -> None:
        pass

    def scores(self, x: np.ndarray, arms: list[str], key: int) -> np.ndarray:
        raise NotImplementedError

    def rank(self, x: np.ndarray, arms: list[str], key: int = 0) -> list[tuple[str, float]]:
        """(remedy, score) best first; ties keep catalogue order."""
        if not arms:
            return []
        self._ready()
        s = np.asarray(self.scores(np.asarray(x, dtype=np.float64), list(arms), key), dtype=np.float64)
        order = np.argsort(-s, kind="stable")
        return [(arms[i], float(s[i])) for i in order]

    def _learned(self) -> dict:
        """The learned state as JSON-ready data (subclasses add theirs)."""
        return {}

    def _restore(self, learned: dict) -> None:
        """Back from `_learned`'s data."""

    # the estimator's file holds the same JSON state as `to_dict`
    def _state(self) -> tuple[dict, dict]:
        self._ready()
        return {}, {"n_observations_": self.n_observations_, "learned": self._learned()}

    def _set_state(self, arrays: dict, values: dict) -> None:
        self._reset()
        self._restore(values.get("learned", {}))
        self.n_observations_ = int(values.get("n_observations_", 0))

    def to_dict(self) -> dict:
        """The ranker as JSON-ready data: name, parameters, learned state."""
        self._ready()
        return {
            "name": self.name,
            "params": self.get_params(),
            "n_observations": self.n_observations_,
            "state": self._learned(),
        }


class LinUCB(Ranker):
    name = "linucb"

    def __init__(self, alpha: float = 0.4, ridge: float = 1.0):
        self.alpha = alpha
        self.ridge = ridge

    def _reset(self) -> None:
        super()._reset()
        self.a_inv_: dict[str, np.ndarray] = {}  # per remedy: (ridge I + sum x x^T)^-1
        self.b_: dict[str, np.ndarray] = {}  # per remedy: sum reward x

    def _arm(self, arm: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """The remedy's statistics; a remedy never tried has the ridge prior alone."""
        if arm not in self.a_inv_:
            return np.eye(dim) / self.ridge, np.zeros(dim)
        return self.a_inv_[arm], self.b_[arm]

    def _learn(self, obs: Observation) -> None:
        a_inv, b = self._arm(obs.remedy, len(obs.x))
        self.a_inv_[obs.remedy], self.b_[obs.remedy] = a_inv, b
        v = a_inv @ obs.x  # Sherman-Morrison: the inverse after adding x x^T
        a_inv -= np.outer(v, v) / (1.0 + obs.x @ v)
        b += obs.reward * obs.x

    def _mean_and_width(self, x: np.ndarray, arm: str) -> tuple[float, float]:
        a_inv, b = self._arm(arm, len(x))
        theta = a_inv @ b
        return float(theta @ x), float(math.sqrt(max(x @ a_inv @ x, 0.0)))

    def scores(self, x, arms, key):
        out = []
        for arm in arms:
            mean, width = self._mean_and_width(x, arm)
            out.append(mean + self.alpha * width)
        return out

    def _learned(self) -> dict:
        return {arm: {"a_inv": self.a_inv_[arm].tolist(), "b": self.b_[arm].tolist()} for arm in sorted(self.a_inv_)}

    def _restore(self, learned: dict) -> None:
        self._reset()
        for arm, s in learned.items():
            self.a_inv_[arm] = np.asarray(s["a_inv"], dtype=np.float64)
            self.b_[arm] = np.asarray(s["b"], dtype=np.float64)


class LinearThompson(LinUCB):
    name = "thompson"

    def __init__(self, v: float = 0.25, ridge: float = 1.0, seed: int = 0):
        self.v = v
        self.ridge = ridge
        self.seed = seed

    def scores(self, x, arms, key):
        rng = np.random.default_rng([self.seed, int(key) & 0xFFFFFFFF])
        out = []
        for arm in arms:
            mean, width = self._mean_and_width(x, arm)
            # x . theta with theta ~ N(mean, v^2 A^-1) is normal with this mean and v * width
            out.append(mean + self.v * width * rng.standard_normal())
        return out


class SuccessRate(Ranker):
    name = "success_rate"

    def __init__(self, prior_successes: float = 1.0, prior_failures: float = 1.0):
        self.prior_successes = prior_successes
        self.prior_failures = prior_failures

    def _reset(self) -> None:
        super()._reset()
        self.tries_: dict[str, int] = {}
        self.successes_: dict[str, int] = {}

    def _learn(self, obs: Observation) -> None:
        self.tries_[obs.remedy] = self.tries_.get(obs.remedy, 0) + 1
        self.successes_[obs.remedy] = self.successes_.get(obs.remedy, 0) + int(obs.resolved)

    def scores(self, x, arms, key):
        a, b = self.prior_successes, self.prior_failures
        return [(self.successes_.get(r, 0) + a) / (self.tries_.get(r, 0) + a + b) for r in arms]

    def _learned(self) -> dict:
        return {"tries": dict(sorted(self.tries_.items())), "successes": dict(sorted(self.successes_.items()))}

    def _restore(self, learned: dict) -> None:
        self._reset()
        self.tries_ = {k: int(v) for k, v in learned.get("tries", {}).items()}
        self.successes_ = {k: int(v) for k, v in learned.get("successes", {}).items()}


class CatalogueOrder(Ranker):
    name = "catalogue_order"

    def __init__(self):
        pass

    def scores(self, x, arms, key):
        return [-float(i) for i in range(len(arms))]


class RandomOrder(Ranker):
    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def scores(self, x, arms, key):
        return np.random.default_rng([self.seed, int(key) & 0xFFFFFFFF]).random(len(arms))


RANKERS: dict[str, type[Ranker]] = {
    cls.name: cls for cls in (LinUCB, LinearThompson, SuccessRate, CatalogueOrder, RandomOrder)
}


def get_ranker(name: str, **params) -> Ranker:
    if name not in RANKERS:
        raise ValueError(f"unknown ranker {name!r}; registered: {sorted(RANKERS)}")
    return RANKERS[name](**params)


def ranker_from_dict(data: dict) -> Ranker:
    """A ranker from `Ranker.to_dict`'s data (JSON read back)."""
    ranker = get_ranker(data["name"], **data["params"])
    ranker._set_state({}, {"n_observations_": data["n_observations"], "learned": data["state"]})
    return ranker


# --- why ----------------------------------------------------------------------------------------


def similar_past(x: np.ndarray, tried: list[Observation], k: int = 3) -> list[dict]:
    """The ``k`` incidents of ``tried`` (one remedy's observations) most like this one, by
    cosine similarity of features, with what came of it: the reason shown beside a ranking."""
    if not tried:
        return []
    xs = np.stack([o.x for o in tried])
    sims = xs @ x / (np.linalg.norm(xs, axis=1) * np.linalg.norm(x) + 1e-12)
    order = np.argsort(-sims, kind="stable")[:k]
    return [
        {
            "incident": tried[i].incident,
            "similarity": round(float(sims[i]), 3),
            "resolved": bool(tried[i].resolved),
            "minutes": tried[i].minutes,
        }
        for i in order
    ]


def explain(remedy: str, observations: list[Observation], x: np.ndarray) -> dict:
    """How often ``remedy`` was tried and worked, and on which past incidents most like this one."""
    mine = [o for o in observations if o.remedy == remedy]
    return {
        "tried": len(mine),
        "resolved": sum(o.resolved for o in mine),
        "like_this": similar_past(x, mine),
    }
