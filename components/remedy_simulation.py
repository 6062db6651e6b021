"""A simulated operator on generated incidents, to measure how well a ranker learns remedies
from feedback (benchmarks/remedies.py, tests/test_feedback.py).

Each incident kind has a source kind, the metrics that stand out when it happens, and a true
outcome for every remedy: the chance it resolves the incident and the usual minutes it takes.
For each incident the ranker ranks the applicable remedies; the operator tries them in that
order, up to ``max_attempts``, each attempt taking a lognormal time around the remedy's usual
minutes, and escalates (``escalation_minutes`` more) when none worked. Feedback is noisy as in
a real team: for a share of incidents nothing is recorded (``p_missing``), and a share of the
recorded outcomes is wrong (``p_wrong``: resolved and unresolved swapped).

Every policy sees the same incidents and the same luck (each incident's draws come from its
own seeded generator), so differences between policies are the policies'. Measured per
incident: regret (the expected reward of the best applicable remedy less that of the one
ranked first), NDCG@3 of the ranking against the true expected rewards, and the time to
resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .remedies import IncidentContext, Observation, Ranker, Remedy, applicable, incident_features, reward


@dataclass(frozen=True)
class IncidentKind:
    name: str
    kind: str  # the source kind
    metrics: tuple[str, ...]  # the metrics that stand out, most telling first
    outcomes: dict  # remedy -> (chance it resolves, usual minutes)
    detectors: tuple[str, ...] = ("pca", "conv_bigru_ae", "knn")
    night: bool = False  # mostly at night (batch jobs, backups)


DEFAULT_FAILURE = (0.05, 60.0)  # a remedy that does not address the incident


def default_world() -> list[IncidentKind]:
    """Incident kinds of Vigil's own telemetry (synthetic server metrics, dCache pools, Rucio
    links), over the remedy names of params.yaml's catalogue. The generic remedies (restart the
    service, scale out) help a little everywhere, so catalogue order is not a straw man."""
    return [
        IncidentKind("cpu_hog", "synthetic", ("cpu_user", "load_1m", "cpu_system"),
                     {"kill_runaway_process": (0.85, 10), "scale_out": (0.6, 25), "restart_service": (0.5, 20)}),
        IncidentKind("memory_leak", "synthetic", ("mem_used", "mem_cache"),
                     {"restart_service_maintenance": (0.9, 40), "restart_service": (0.55, 15),
                      "scale_out": (0.2, 25)}),
        IncidentKind("disk_filling", "synthetic", ("disk_util", "disk_write", "disk_read"),
                     {"clean_disk": (0.85, 20), "restart_service": (0.1, 20)}, night=True),
        IncidentKind("network_saturation", "synthetic", ("net_in", "net_out", "tcp_conn", "latency_ms"),
                     {"scale_out": (0.8, 30), "restart_service": (0.25, 20), "kill_runaway_process": (0.15, 10)}),
        IncidentKind("pool_errors", "dcache_billing", ("errors", "error_rate", "events"),
                     {"restart_pool": (0.85, 15), "drain_pool_read_only": (0.6, 60), "check_pool_disk": (0.3, 45)}),
        IncidentKind("slow_disk", "dcache_billing", ("transfer_p95", "transfer_p50", "gbytes"),
                     {"check_pool_disk": (0.8, 45), "drain_pool_read_only": (0.7, 60), "restart_pool": (0.15, 15)}),
        IncidentKind("stuck_queue", "dcache_billing", ("queuing_p95", "queuing_p50", "events"),
                     {"restart_pool": (0.75, 15), "drain_pool_read_only": (0.3, 60)}),
        IncidentKind("link_congestion", "rucio_transfers", ("duration_p95", "mbps_p50", "duration_p50"),
                     {"lower_link_concurrency": (0.85, 20), "route_other_source": (0.6, 40)}),
        IncidentKind("transfer_failures", "rucio_transfers", ("failures", "failure_rate", "transfers"),
                     {"route_other_source": (0.8, 30), "lower_link_concurrency": (0.2, 20)}, night=True),
    ]  # fmt: skip


@dataclass(frozen=True)
class SimulationConfig:
    n_incidents: int = 1000
    seed: int = 0
    max_attempts: int = 3
    escalation_minutes: float = 240.0
    time_scale: float = 60.0  # the reward's (remedies.reward)
    time_spread: float = 0.4  # sigma of an attempt's log-minutes
    p_missing: float = 0.15  # incidents with no feedback at all
    p_wrong: float = 0.05  # recorded outcomes that are wrong
    p_bystander: float = 0.5  # incidents whose top metrics include one unrelated metric of their source
    dim: int = 64


@dataclass
class SimulatedIncident:
    id: int
    kind: IncidentKind
    context: IncidentContext
    rng_seed: tuple


def generate_incidents(world: list[IncidentKind], cfg: SimulationConfig) -> list[SimulatedIncident]:
    """``cfg.n_incidents`` incidents of the world's kinds, drawn uniformly, each with a context
    an operator's scoring service would give: its kind's metrics in a shuffled share order
    (the most telling one usually first), often with a bystander (a metric of the same source
    that moved by chance), a detector, a margin and an hour."""
    rng = np.random.default_rng([cfg.seed, 1])
    by_source: dict[str, list[str]] = {}
    for k in world:
        by_source.setdefault(k.kind, []).extend(m for m in k.metrics if m not in by_source.get(k.kind, []))
    out = []
    for i in range(cfg.n_incidents):
        kind = world[int(rng.integers(len(world)))]
        shares = np.sort(rng.dirichlet(np.ones(len(kind.metrics)) * 2.0))[::-1]
        names = list(kind.metrics)
        if rng.random() < 0.3:  # not always the most telling metric first
            names = list(rng.permutation(names))
        others = [m for m in by_source[kind.kind] if m not in names]
        if others and rng.random() < cfg.p_bystander:  # a metric that moved by chance, with a small share
            names, shares = [*names, others[int(rng.integers(len(others)))]], np.r_[shares * 0.85, 0.15]
        hour = float(rng.normal(3.0, 2.0) % 24) if kind.night else float(rng.uniform(0, 24))
        ctx = IncidentContext(
            kind=kind.kind,
            detector=str(kind.detectors[int(rng.integers(len(kind.detectors)))]),
            top_metrics=tuple((m, round(float(s), 4)) for m, s in zip(names, shares)),
            margin=float(rng.lognormal(0.0, 0.7)),
            hour=hour,
        )
        out.append(SimulatedIncident(i + 1, kind, ctx, (cfg.seed, 2, i)))
    return out


def expected_reward(kind: IncidentKind, remedy: str, time_scale: float) -> float:
    """The reward a remedy earns on this kind of incident on average (its chance to resolve
    times the reward of its usual time)."""
    p, minutes = kind.outcomes.get(remedy, DEFAULT_FAILURE)
    return p * reward(True, minutes, time_scale)


def ndcg_at(ranked: list[str], relevance: dict[str, float], k: int = 3) -> float:
    """NDCG@k of ``ranked`` against graded relevance (1.0 where the ideal order is shown)."""
    gains = [relevance[r] for r in ranked[:k]]
    ideal = sorted(relevance.values(), reverse=True)[:k]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 1.0


def simulate(ranker: Ranker, catalogue: list[Remedy], incidents: list[SimulatedIncident], cfg: SimulationConfig):
    """Run the operator through ``incidents`` with ``ranker`` learning from the recorded
    feedback after each one. Returns per-incident arrays: regret, ndcg3, minutes (time to
    resolution, escalation included), resolved (by a remedy)."""
    ranker.fit([])
    regret, ndcg, minutes, resolved = [], [], [], []
    for inc in incidents:
        arms = applicable(catalogue, inc.context)
        x = incident_features(inc.context, cfg.dim)
        ranked = [r for r, _ in ranker.rank(x, arms, key=inc.id)]
        truth = {r: expected_reward(inc.kind, r, cfg.time_scale) for r in arms}
        regret.append(max(truth.values()) - truth[ranked[0]])
        ndcg.append(ndcg_at(ranked, truth))
        rng = np.random.default_rng(inc.rng_seed)
        luck = {r: (rng.random(), rng.standard_normal()) for r in arms}  # the same for every policy
        record = rng.random() >= cfg.p_missing
        wrong = {r: rng.random() < cfg.p_wrong for r in arms}
        spent, done, feedback = 0.0, False, []
        for remedy in ranked[: cfg.max_attempts]:
            p, usual = inc.kind.outcomes.get(remedy, DEFAULT_FAILURE)
            works, z = luck[remedy][0] < p, luck[remedy][1]
            took = float(usual * math.exp(cfg.time_spread * z))
            spent += took
            said = works != wrong[remedy]
            feedback.append(Observation(inc.id, remedy, reward(said, took, cfg.time_scale), x, said, round(took, 1)))
            if works:
                done = True
                break
        minutes.append(spent if done else spent + cfg.escalation_minutes)
        resolved.append(done)
        if record:
            for obs in feedback:
                ranker.update(obs)
    return {
        "regret": np.asarray(regret),
        "ndcg3": np.asarray(ndcg),
        "minutes": np.asarray(minutes),
        "resolved": np.asarray(resolved),
    }
