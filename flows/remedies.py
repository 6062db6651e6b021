"""The ``remedies`` section of params.yaml as the plain values ranking needs
(`tasks.remedies.RemedySettings`), for every command that ranks remedies: `vigil score`,
`vigil web`, `vigil feedback`, `vigil stream predict`. A module of its own, so that the DVC
stages of those commands depend on it and not on one another's code."""

from __future__ import annotations

from pathlib import Path

from components.remedies import RANKERS, Remedy
from tasks.remedies import RemedySettings

from .config import Config, ConfigError


def remedy_settings(cfg: Config, root: Path) -> RemedySettings:
    """The ``remedies`` section as plain values: the catalogue read (from its file where it
    names one) and the ranker checked against the registry and its parameters."""
    rem = cfg.remedies
    if rem.ranker.name not in RANKERS:
        raise ConfigError(f"remedies.ranker.name: {rem.ranker.name!r} is not one of {sorted(RANKERS)}")
    allowed = RANKERS[rem.ranker.name].param_names()
    unknown = sorted(set(rem.ranker.params) - set(allowed))
    if unknown:
        raise ConfigError(f"remedies.ranker.params: {unknown} unknown to {rem.ranker.name}; known: {allowed}")
    catalogue = tuple(
        Remedy(e.name, e.description, tuple(e.kinds), tuple(e.detectors), tuple(e.metrics)) for e in rem.entries(root)
    )
    return RemedySettings(
        catalogue=catalogue,
        ranker=rem.ranker.name,
        ranker_params=dict(rem.ranker.params),
        time_scale=rem.time_scale_minutes,
        dim=rem.features,
        model_name=rem.model_name,
        experiment=rem.experiment,
    )
