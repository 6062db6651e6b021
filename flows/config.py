"""params.yaml, typed. Unknown keys and bad values fail here with the path to the offending key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from components.datasets import DATASET_KINDS, DatasetSource
from components.detectors import DETECTORS, ParamError, get_detector
from components.metrics import SELECTION_METRICS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticConfig(_Strict):
    seed: int = 0
    n_train: int = Field(4000, ge=100)
    n_test: int = Field(4000, ge=100)
    n_metrics: int = Field(12, ge=2)
    n_anomalies: int = Field(12, ge=1)
    period: int = Field(288, ge=2)


class CSVConfig(_Strict):
    test_file: str | None = None  # with it, `name` is train and this is test
    time_column: str | None = "timestamp"
    label_column: str | None = "label"
    train_fraction: float = Field(0.5, gt=0, lt=1)


class DatasetConfig(_Strict):
    """Where the raw input lives and how to read it.

    ``root`` is the folder DVC tracks as the raw data version. ``name`` picks inside it: the
    SMD machine, the telemanom channel, the NAB series, the CSV file (unused for synthetic,
    which is generated into ``root``).
    """

    kind: Literal[tuple(DATASET_KINDS)] = "synthetic"
    root: Path = Path("data/raw/synthetic")
    name: str = "synthetic"
    synthetic: SyntheticConfig = SyntheticConfig()
    csv: CSVConfig = CSVConfig()
    min_rows: int = Field(50, ge=1)  # validation: fewer rows in train or test is an error
    min_value: float | None = None  # validation: value range of every metric, if known
    max_value: float | None = None

    def source(self) -> DatasetSource:
        """What the dataset components need: kind, root, name, and the options of the section
        named after the kind (``csv``, ``synthetic``), where there is one."""
        section = getattr(self, self.kind, None) if self.kind in type(self).model_fields else None
        options = section.model_dump() if isinstance(section, BaseModel) else {}
        return DatasetSource(self.kind, Path(self.root), self.name, options)


class PreprocessingConfig(_Strict):
    scaler: Literal["minmax", "standard"] = "minmax"
    clip: float | None = Field(5.0, gt=0)
    validation_fraction: float = Field(0.3, gt=0, lt=1)


class ThresholdConfig(_Strict):
    method: Literal["best_f1", "pot"] = "best_f1"
    pot_q: float = Field(1e-3, gt=0, lt=1)
    pot_level: float = Field(0.98, gt=0, lt=1)


class EvaluationConfig(_Strict):
    vus_window: int = Field(20, ge=0)


class RegistryConfig(_Strict):
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: Path = Path("mlflow/artifacts")
    experiment: str = "vigil"
    model_name: str | None = None  # default: vigil-<dataset name>
    selection_metric: Literal[SELECTION_METRICS] = "vus_pr"  # on the validation split


class ScheduleConfig(_Strict):
    cron: str = "0 3 * * *"  # `vigil serve`: when the scheduled pipeline runs (UTC)


class Config(_Strict):
    dataset: DatasetConfig = DatasetConfig()
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    detectors: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"zscore": {}, "pca": {}, "iforest": {}})
    threshold: ThresholdConfig = ThresholdConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    registry: RegistryConfig = RegistryConfig()
    schedule: ScheduleConfig = ScheduleConfig()

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        unknown = sorted(set(v) - set(DETECTORS))
        if unknown:
            raise ValueError(f"unknown detector(s) {unknown}; registered: {sorted(DETECTORS)}")
        if not v:
            raise ValueError("name at least one detector")
        return {k: dict(p or {}) for k, p in v.items()}


def _detector_problems(detectors: dict[str, dict[str, Any]]) -> list[str]:
    """Each detector's parameters against its signature and its own checks, before any data is
    read; one line per problem, with the key path."""
    problems = []
    for name, params in detectors.items():
        allowed = DETECTORS[name]._param_names()
        for key in sorted(set(params) - set(allowed)):
            problems.append(f"  detectors.{name}.{key}: unknown parameter of {name}; known: {allowed}")
        try:
            get_detector(name, **{k: v for k, v in params.items() if k in allowed}).validate_params()
        except ParamError as exc:
            problems.append(f"  detectors.{name}.{exc.param}: {exc.rule}")
    return problems


class ConfigError(ValueError):
    pass


def load_config(path: str | Path = "params.yaml") -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    return parse_config(raw, str(path))


def parse_config(raw: dict, source: str = "params") -> Config:
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {len(exc.errors())} problem(s)"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
    problems = _detector_problems(cfg.detectors)
    if problems:
        raise ConfigError("\n".join([f"{source}: {len(problems)} problem(s)", *problems]))
    return cfg


def params_hash(cfg: Config) -> str:
    """sha256 of the resolved parameters (defaults filled in), stable across key order."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
