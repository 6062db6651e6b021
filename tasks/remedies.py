"""Remedies proposed for each incident, ranked by a model learned from the operators'
feedback (`components.remedies`), and that model versioned in MLflow.

The ranker is a function of the feedback in force (the latest outcome of each remedy tried on
each incident, `tasks.alerts.latest_outcomes`) and of its settings: `current_advisor` fits it
on exactly that, hashes both into a digest, and registers a new version of
``remedies.model_name`` only where no version carries that digest yet. So replaying the same
feedback gives the same model and no new version, whichever order it arrived in. Its state is
a JSON artifact (no pickle), loaded back from the version that serves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from components.remedies import (
    IncidentContext,
    Observation,
    Ranker,
    Remedy,
    applicable,
    explain,
    get_ranker,
    incident_features,
    ranker_from_dict,
    reward,
)

from .alerts import INCIDENTS, RANKINGS, dumps, latest_outcomes, now, write_rankings

ALIAS = "current"  # the version that ranks new incidents
DIGEST_TAG = "vigil.feedback_digest"


@dataclass(frozen=True)
class RemedySettings:
    """What ranking needs of params.yaml's ``remedies`` section, as plain values."""

    catalogue: tuple[Remedy, ...]
    ranker: str = "linucb"
    ranker_params: dict = field(default_factory=dict)
    time_scale: float = 60.0  # minutes: the reward of a fix that took this long is 0.5
    dim: int = 64  # incident feature length
    model_name: str = "vigil-remedies"
    experiment: str = "vigil-remedies"

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.catalogue]


def remedy_settings(section, root: Path) -> RemedySettings:
    """params.yaml's ``remedies`` section (its ranker and parameters checked when it was
    parsed) as plain values: the catalogue read, from its file where it names one (relative to
    ``root``)."""
    catalogue = tuple(
        Remedy(e.name, e.description, tuple(e.kinds), tuple(e.detectors), tuple(e.metrics))
        for e in section.entries(root)
    )
    return RemedySettings(
        catalogue=catalogue,
        ranker=section.ranker.name,
        ranker_params=dict(section.ranker.params),
        time_scale=section.time_scale_minutes,
        dim=section.features,
        model_name=section.model_name,
        experiment=section.experiment,
    )


def context_of(incident: dict, kind: str) -> IncidentContext:
    """What the ranker sees of an incident row of the alerts store."""
    threshold = float(incident["threshold"])
    margin = (float(incident["peak_score"]) - threshold) / (abs(threshold) + 1e-12)
    top = incident["top_metrics"]
    top = json.loads(top) if isinstance(top, str) else top
    start = incident["start"]
    return IncidentContext(
        kind=kind,
        detector=incident["detector"],
        top_metrics=tuple((str(m), float(s)) for m, s in top),
        margin=margin,
        hour=int(start[11:13]) + int(start[14:16]) / 60,
    )


def _context_json(ctx: IncidentContext) -> dict:
    return {
        "kind": ctx.kind,
        "detector": ctx.detector,
        "top_metrics": [list(t) for t in ctx.top_metrics],
        "margin": round(ctx.margin, 6),
        "hour": round(ctx.hour, 4),
    }


def _context_from_json(d: dict) -> IncidentContext:
    return IncidentContext(
        d["kind"], d["detector"], tuple((m, float(s)) for m, s in d["top_metrics"]), d["margin"], d["hour"]
    )


def observations(conn, settings: RemedySettings, kind: str) -> list[Observation]:
    """One observation per (incident, remedy) the operators reported an outcome for: the
    incident's context as it was ranked (else as the store has it, with ``kind``), the remedy,
    and the reward of its latest outcome."""
    outcomes = latest_outcomes(conn)
    ids = sorted({o["incident"] for o in outcomes})
    if not ids:
        return []
    rows = {r["id"]: dict(r) for r in conn.execute(sa.select(INCIDENTS).where(INCIDENTS.c.id.in_(ids))).mappings()}
    ranked = {
        r["incident"]: json.loads(r["context"])
        for r in conn.execute(
            sa.select(RANKINGS.c.incident, RANKINGS.c.context).where(RANKINGS.c.incident.in_(ids))
        ).mappings()
    }
    out = []
    for o in outcomes:
        i = o["incident"]
        ctx = _context_from_json(ranked[i]) if i in ranked else context_of(rows[i], kind)
        resolved = bool(o["resolved"])
        out.append(
            Observation(
                i,
                o["remedy"],
                reward(resolved, o["minutes"], settings.time_scale),
                incident_features(ctx, settings.dim),
                resolved,
                o["minutes"],
            )
        )
    return out


def feedback_digest(settings: RemedySettings, obs: list[Observation]) -> str:
    """sha256 of the ranker's settings and the feedback it learns from, in a fixed order."""
    data = {
        "ranker": settings.ranker,
        "params": settings.ranker_params,
        "time_scale": settings.time_scale,
        "dim": settings.dim,
        "observations": sorted([o.incident, o.remedy, round(o.reward, 12), np.round(o.x, 9).tolist()] for o in obs),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass
class Advisor:
    """A fitted ranker, the feedback it learned from, and the MLflow version it is."""

    settings: RemedySettings
    ranker: Ranker
    observations: list[Observation]
    version: str | None  # None: not registered (no tracking store given)
    digest: str

    def rank(self, incident: dict, kind: str) -> tuple[dict, list[dict]]:
        """The incident's context and its applicable remedies, best first, each with why."""
        ctx = context_of(incident, kind)
        x = incident_features(ctx, self.settings.dim)
        described = {r.name: r.description for r in self.settings.catalogue}
        ranked = self.ranker.rank(x, applicable(list(self.settings.catalogue), ctx), key=int(incident["id"]))
        return _context_json(ctx), [
            {"remedy": name, "score": round(score, 6), "description": described[name]}
            | explain(name, self.observations, x)
            for name, score in ranked
        ]

    def incidents_raised(self, conn, incidents: list[int], kind: str) -> None:
        """A `tasks.alerts.Sink`: rank these incidents' remedies (new ones, inside the caller's
        transaction) and store the rankings."""
        if not incidents:
            return
        rows = conn.execute(sa.select(INCIDENTS).where(INCIDENTS.c.id.in_(incidents))).mappings()
        values = []
        for row in rows:
            ctx, ranking = self.rank(dict(row), kind)
            values.append(
                {
                    "incident": row["id"],
                    "at": now(),
                    "ranker": self.settings.ranker,
                    "ranker_version": self.version,
                    "context": dumps(ctx),
                    "ranking": dumps(ranking),
                }
            )
        write_rankings(conn, values)


def _state(settings: RemedySettings, ranker: Ranker, obs: list[Observation], digest: str) -> dict:
    return {
        "digest": digest,
        "time_scale": settings.time_scale,
        "dim": settings.dim,
        "ranker": ranker.to_dict(),
        "observations": [
            {
                "incident": o.incident,
                "remedy": o.remedy,
                "reward": o.reward,
                "resolved": o.resolved,
                "minutes": o.minutes,
                "x": o.x.tolist(),
            }
            for o in obs
        ],
    }


def advisor_from_state(settings: RemedySettings, state: dict, version: str | None) -> Advisor:
    obs = [
        Observation(o["incident"], o["remedy"], o["reward"], np.asarray(o["x"]), o["resolved"], o["minutes"])
        for o in state["observations"]
    ]
    return Advisor(settings, ranker_from_dict(state["ranker"]), obs, version, state["digest"])


def _in_force(engine: sa.Engine, settings: RemedySettings, kind: str) -> tuple[list[Observation], str]:
    """The outcomes in force now, and their digest."""
    with engine.connect() as conn:
        obs = observations(conn, settings, kind)
    return obs, feedback_digest(settings, obs)


def _fitted(settings: RemedySettings, obs: list[Observation], digest: str) -> Advisor:
    return Advisor(settings, get_ranker(settings.ranker, **settings.ranker_params).fit(obs), obs, None, digest)


def fit_advisor(engine: sa.Engine, settings: RemedySettings, kind: str) -> Advisor:
    """The ranker fitted on the feedback in force now (not registered)."""
    return _fitted(settings, *_in_force(engine, settings, kind))


def current_advisor(
    engine: sa.Engine, tracking_uri: str | None, artifact_root: Path | None, settings: RemedySettings, kind: str
) -> Advisor:
    """The advisor for the feedback in force: the registered version with its digest, loaded
    from MLflow (no refit); where there is none, fitted now and registered as a new version
    (alias ``current``). Before any outcome is reported, or without a tracking store, fitted
    and not registered (an untrained ranker is its prior alone: no model to version yet)."""
    obs, digest = _in_force(engine, settings, kind)
    if tracking_uri is None or not obs:
        return _fitted(settings, obs, digest)
    import mlflow
    import mlflow.artifacts
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = _version_with_digest(client, settings.model_name, digest)
    if found is None:  # new feedback: fit, register, and serve what was registered
        fitted = _fitted(settings, obs, digest)
        fitted.version = _register(client, tracking_uri, artifact_root, settings, fitted)
        return fitted
    if ALIAS not in (found.aliases or []):
        # the feedback in force is that of an earlier version again (a verdict changed back)
        client.set_registered_model_alias(settings.model_name, ALIAS, found.version)
    mlflow.set_tracking_uri(tracking_uri)  # resolves an mlflow-artifacts: source through a tracking server
    state = mlflow.artifacts.load_dict(f"{found.source}/ranker.json")
    return advisor_from_state(settings, state, str(found.version))


def _registered(client, name: str) -> bool:
    return any(m.name == name for m in client.search_registered_models(f"name='{name}'"))


def _version_with_digest(client, name: str, digest: str):
    if not _registered(client, name):
        return None
    versions = [v for v in client.search_model_versions(f"name='{name}'") if v.tags.get(DIGEST_TAG) == digest]
    return max(versions, key=lambda v: int(v.version)) if versions else None


def _register(client, tracking_uri: str, artifact_root: Path, settings: RemedySettings, fitted: Advisor) -> str:
    """Log the fitted ranker's state as a run's JSON artifact and register it as a version;
    returns the version."""
    from .registry import setup_mlflow

    mlflow = setup_mlflow(tracking_uri, settings.experiment, artifact_root)
    obs = fitted.observations
    tags = {
        "mlflow.runName": f"remedy ranker {settings.ranker}",
        "mlflow.note.content": (
            f"{settings.ranker} ranker fitted on {len(obs)} remedy outcome(s) of "
            f"{len({o.incident for o in obs})} incident(s) reported by operators"
        ),
        DIGEST_TAG: fitted.digest,
    }
    with mlflow.start_run(tags=tags) as run:
        mlflow.log_params({"ranker": settings.ranker, "time_scale": settings.time_scale, "dim": settings.dim})
        mlflow.log_params({f"ranker.{k}": v for k, v in settings.ranker_params.items()})
        mlflow.log_metrics(
            {
                "observations": float(len(obs)),
                "incidents": float(len({o.incident for o in obs})),
                "resolved_share": float(np.mean([o.resolved for o in obs])) if obs else 0.0,
            }
        )
        mlflow.log_dict(_state(settings, fitted.ranker, obs, fitted.digest), "ranker/ranker.json")
        source = f"{run.info.artifact_uri}/ranker"
    if not _registered(client, settings.model_name):
        try:
            client.create_registered_model(settings.model_name)
        except Exception:  # another process made it meanwhile
            if not _registered(client, settings.model_name):
                raise
    mv = client.create_model_version(
        settings.model_name, source, run_id=run.info.run_id, tags={DIGEST_TAG: fitted.digest}
    )
    client.set_registered_model_alias(settings.model_name, ALIAS, mv.version)
    return str(mv.version)
