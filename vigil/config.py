"""params.yaml, typed. Unknown keys and bad values fail here with the path to the offending key."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from components.alerting import RULES_NEED_LABELS, SMOOTHING, AlertSettings
from components.datasets import DATASET_KINDS, DatasetSource
from components.detectors import DETECTORS, ParamError, get_detector
from components.metrics import SELECTION_METRICS, TUNING_OBJECTIVES


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


class SKABConfig(_Strict):
    train: Literal["head", "anomaly_free"] = "head"  # head: SKAB's protocol, the first train_rows of each file
    train_rows: int = Field(400, ge=2)


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
    skab: SKABConfig = SKABConfig()
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


Smoothing = tuple[Literal[SMOOTHING], Annotated[int, Field(ge=1, le=10_000)]]
RuleName = Literal[tuple(RULES_NEED_LABELS)]


class RuleChoice(_Strict):
    rule: RuleName
    smoothing: Literal[SMOOTHING] = "none"
    window: int = Field(1, ge=1, le=10_000)

    @classmethod
    def of(cls, choice: tuple[str, str, int]) -> RuleChoice:
        """An `AlertSettings` (rule, smoothing, window) triple as a params section."""
        rule, smoothing, window = choice
        return cls(rule=rule, smoothing=smoothing, window=window)


class ThresholdConfig(_Strict):
    """How each model's alert rule is chosen (`components.evaluation.AlertSettings`)."""

    method: Literal[("nested", *RULES_NEED_LABELS)] = "nested"
    rules: list[RuleName] = Field(default_factory=lambda: list(AlertSettings.rules), min_length=1)
    smoothing: list[Smoothing] = Field(default_factory=lambda: list(AlertSettings.smoothing), min_length=1)
    fallback: RuleChoice = RuleChoice.of(AlertSettings.fallback)
    label_free: RuleChoice = RuleChoice.of(AlertSettings.label_free)
    pot_q: float = Field(1e-3, gt=0, lt=1)
    pot_level: float = Field(0.98, gt=0, lt=1)
    tail_p: float = Field(1e-3, gt=0, lt=1)

    @model_validator(mode="after")
    def _label_free_rule(self):
        if RULES_NEED_LABELS[self.label_free.rule]:
            raise ValueError(f"label_free.rule: {self.label_free.rule} needs labels; choose a label-free rule")
        return self


class IncidentsConfig(_Strict):
    merge_gap: int = Field(50, ge=1, le=100_000)  # flagged steps fewer than this apart are one incident
    min_steps: int = Field(2, ge=1, le=100_000)  # shorter incidents are kept as points, not raised


class EvaluationConfig(_Strict):
    vus_window: int = Field(20, ge=0)


class RegistryConfig(_Strict):
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: Path = Path("mlflow/artifacts")
    experiment: str = "vigil"
    model_name: str | None = None  # default: vigil-<dataset name>
    selection_metric: Literal[SELECTION_METRICS] = "vus_pr"  # on the validation split
    # where validation holds no label: the rule the benchmark found best, or one named
    label_free_rule: Literal["benchmark", "consensus", "prior", "prior_all"] = "benchmark"
    benchmark_summary: Path = Path("reports/benchmark_summary.json")  # the benchmark's figures for the priors


class ParamRange(_Strict):
    """One hyper-parameter's search space, as Optuna draws it: ``choices`` (categorical), or
    ``low``..``high`` of ``type`` int or float, on a log scale or in steps of ``step``."""

    type: Literal["int", "float", "categorical"] | None = None  # default: categorical with choices, else float
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[str | int | float | bool | None] | None = None

    @model_validator(mode="after")
    def _coherent(self) -> ParamRange:
        kind = self.kind
        if kind == "categorical":
            if not self.choices:
                raise ValueError("choices: give at least one value")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("choices cannot be mixed with low/high/step/log")
            return self
        if self.choices is not None:
            raise ValueError(f"choices cannot be mixed with type {kind}")
        if self.low is None or self.high is None:
            raise ValueError(f"a {kind} range needs low and high")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log: needs low > 0 and no step")
        if self.step is not None and self.step <= 0:
            raise ValueError("step must be positive")
        if kind == "int" and any(v is not None and v != int(v) for v in (self.low, self.high, self.step)):
            raise ValueError("an int range needs whole low, high and step")
        return self

    @property
    def kind(self) -> str:
        return self.type or ("categorical" if self.choices is not None else "float")

    def spec(self) -> dict:
        """The plain form `tasks/tune.py` takes."""
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        cast = int if self.kind == "int" else float
        step = None if self.step is None else cast(self.step)
        return {"type": self.kind, "low": cast(self.low), "high": cast(self.high), "log": self.log, "step": step}

    def edge_values(self) -> list:
        """The values to check against the detector's own rules: both ends, every choice."""
        if self.kind == "categorical":
            return list(self.choices)
        cast = int if self.kind == "int" else float
        return [cast(self.low), cast(self.high)]


class LabelFreeConfig(_Strict):
    holdout_fraction: float = Field(0.2, gt=0, lt=1)  # tail of train, assumed normal, that anomalies are planted in
    n_anomalies: int = Field(10, ge=1)  # planted, of the generator's five kinds in turn (fewer in a short tail)
    seed: int = 0


class TuningConfig(_Strict):
    """Optuna tuning of every detector (`vigil tune`, the `tune` DVC stage), on train and the
    validation head only; the test tail is never read."""

    enabled: bool = False  # the pipeline tunes first, and train fits the best trial's parameters
    objective: Literal[TUNING_OBJECTIVES] = "vus_pr"  # labelled (validation head) or label_free (planted train tail)
    n_trials: int | None = Field(20, ge=1)  # finished trials per study (resumed studies count the ones before)
    timeout: float | None = Field(None, gt=0)  # seconds per detector per run
    pruner: Literal["median", "hyperband", "none"] = "median"  # torch detectors, on validation loss per epoch
    seed: int = 0  # sampler seed: the same trials on CPU for one worker
    storage: str = "sqlite:///.vigil/optuna.db"  # any SQLAlchemy URL; relative SQLite paths from the checkout
    concurrency: int = Field(1, ge=1)  # detectors tuned at once by one flow run (torch fits take turns in one process)
    label_free: LabelFreeConfig = LabelFreeConfig()
    spaces: dict[str, dict[str, ParamRange]] = Field(default_factory=dict)  # detector -> parameter -> range

    def plain_space(self, detector: str) -> dict[str, dict]:
        """The detector's search space as plain values (empty: not tuned)."""
        return {k: r.spec() for k, r in self.spaces.get(detector, {}).items()}

    def study_arguments(self) -> dict:
        """What `tasks.tune.run_study` takes of this section, besides the storage and budget."""
        return {
            "objective": self.objective,
            "timeout": self.timeout,
            "pruner": self.pruner,
            "seed": self.seed,
            "label_free": self.label_free.model_dump(),
        }

    def study_settings(self, detector: str, n_trials: int) -> dict:
        """Everything that decides a study's outcome for ``detector``: a benchmark cell tuned under
        other settings is another cell."""
        space = {k: r.model_dump() for k, r in self.spaces.get(detector, {}).items()}
        return {**self.study_arguments(), "n_trials": n_trials, "space": space}  # keys sorted where hashed

    @model_validator(mode="after")
    def _budget(self) -> TuningConfig:
        if self.n_trials is None and self.timeout is None:
            raise ValueError("give n_trials, timeout or both: a study needs a budget")
        return self


class BenchmarkDataset(_Strict):
    kind: Literal[tuple(DATASET_KINDS)]
    root: Path  # read in place; an absent folder is skipped, saying so
    series: list[str] | None = None  # default: every series the root holds
    options: dict[str, Any] = Field(default_factory=dict)  # the kind's reading options (csv: column names)
    peers: list[str] | None = None  # the peers run on this dataset (default: benchmark.peers)
    # a configured detector -> the parameters that differ on this dataset (its labelling, say)
    detectors: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def detector_params(self, name: str, configured: dict[str, Any]) -> dict[str, Any]:
        """``configured`` (the detectors section's parameters of ``name``) with this
        dataset's own values on top."""
        return {**configured, **self.detectors.get(name, {})}


class TunedRows(_Strict):
    """Rows "<detector> (tuned)" beside the configured ones: each detector tuned on each series
    of its datasets (train and validation head only, the tuning section's space and objective)."""

    # a key of `detectors` -> the benchmark.datasets it is tuned on (null: all); `--tuned`: all, everywhere
    detectors: dict[str, list[str] | None] = Field(default_factory=dict)
    n_trials: int | None = Field(None, ge=1)  # per series (default: tuning.n_trials)


class BenchmarkConfig(_Strict):
    """`vigil benchmark` (DVC stage ``benchmark``): every series of each dataset x every
    detector of ``detectors`` (their configured parameters; ``tuned`` adds rows tuned per series)
    and the ``peers``, on identical splits; the threshold and evaluation sections apply as in
    the pipeline."""

    # a name (reports/dvc.yaml's deps use it) -> where
    datasets: dict[str, BenchmarkDataset] = Field(default_factory=dict)
    peers: list[str] = Field(default_factory=list)  # keys of tasks/peers.PEERS and tasks/tsb_peers.TSB_PEERS
    peer_budget_seconds: float = Field(600.0, gt=0)  # a TSB-AD peer slower than this on a series: "over budget"
    # torch's threads while a Vigil cell fits and scores, in every process and Dask worker alike,
    # and part of the cell's key: torch adds in another order with another count, and seeded
    # training drifts apart (README: Benchmark). None: torch's own default (the machine's cores)
    torch_threads: int | None = Field(2, ge=1, le=1024)
    tuned: TunedRows = Field(default_factory=TunedRows)  # tuned rows for a subset (README: Benchmark)
    folder: Path = Path("benchmark")  # processed series, stored cells (resume), their scores
    experiment: str = "vigil-benchmark"  # MLflow: one run per series x detector
    plots: int = Field(2, ge=0)  # score plots per dataset in the HTML report: best and worst series of the best


class ClusterConfig(_Strict):
    """Where the benchmark's cells, the tuning's trials and the scoring's series run (README:
    Scaling out): in the command's own process (the default), on a Dask ``LocalCluster`` of
    ``workers`` processes, or on the running Dask ``scheduler`` named. Every worker must reach
    the checkout's folders and stores by the same paths and URLs (one machine, or a shared file
    system and database servers)."""

    scheduler: str | None = Field(None, pattern=r"^(tcp|tls)://[^\s/]+$")  # e.g. tcp://10.0.0.5:8786
    workers: int = Field(0, ge=0, le=1024)  # a LocalCluster of this many single-thread processes; 0: none
    trials_workers: int = Field(2, ge=1, le=1024)  # tuning: tasks sharing each detector's study
    series_per_task: int = Field(25, ge=1)  # scoring: landing sources per task

    @model_validator(mode="after")
    def _one_place(self):
        if self.scheduler and self.workers:
            raise ValueError("give either scheduler (a running cluster) or workers (a local one), not both")
        return self

    @property
    def distributed(self) -> bool:
        return bool(self.scheduler or self.workers)


HTTP_URL = r"^https?://[^\s/?#@]+(/[^\s?#]*)?$"  # http(s), a host, a path; no credentials, query or fragment


class PrometheusConfig(_Strict):
    """Telemetry pulled from Prometheus before each scoring run (`tasks/prometheus.py`;
    README: Prometheus in)."""

    url: str = Field(pattern=HTTP_URL)  # e.g. http://127.0.0.1:9090
    # feature (a metric the champion was trained on) -> the PromQL query that gives it
    metrics: dict[Annotated[str, Field(min_length=1, max_length=200)], Annotated[str, Field(min_length=1)]] = Field(
        min_length=1
    )
    series_label: str = Field("instance", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")  # its value names the series
    step_seconds: float = Field(60.0, gt=0)
    lookback_minutes: float = Field(60.0, gt=0)  # how far back a pull reaches (a new series, after an outage)
    delay_seconds: float = Field(30.0, ge=0)  # the newest step pulled is this old: scrapes land late
    timeout_seconds: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _reach(self):
        if self.lookback_minutes * 60 < self.step_seconds:
            raise ValueError(f"lookback_minutes ({self.lookback_minutes:g}) is shorter than one step")
        return self


class ScoringConfig(_Strict):
    """`vigil score` / deployment ``vigil-score``: new telemetry scored by the champion into
    the alerts store (README: Operating Vigil)."""

    landing: Path = Path("data/landing")  # <landing>/<source>/*.csv|*.parquet, scored in name order
    time_column: str = "timestamp"  # every arriving file has it, strictly increasing
    model_name: str | None = None  # default: the registry's model (vigil-<dataset>)
    store: str = "sqlite:///.vigil/alerts.db"  # any SQLAlchemy URL (postgresql+psycopg2://...)
    keep_values: bool = True  # store each step's metric values too (the live view plots them)
    experiment: str = "vigil-score"  # MLflow: one run per scoring run, with its counts
    # a file modified less than this long ago may still be being written: it waits for the next
    # run (shippers that write to a hidden or .tmp/.part name and rename need no wait)
    settle_seconds: float = Field(2.0, ge=0)
    prometheus: PrometheusConfig | None = None  # series pulled from Prometheus into the landing folder too


class WebConfig(_Strict):
    host: str = "127.0.0.1"  # `vigil web`; another address exposes the alerts to that network
    port: int = Field(8050, ge=1, le=65535)
    refresh_seconds: float = Field(2.0, gt=0)  # how often the page asks for new points
    # host names the page is served under besides 127.0.0.1, localhost and ::1 (any other
    # Host header gets 400: a DNS-rebinding page cannot reach the alerts through its own name)
    allowed_hosts: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]{1,253}$|^\[?[0-9A-Fa-f:.]+\]?$")]] = Field(
        default_factory=list
    )


class FeedbackConfig(_Strict):
    """Operators' verdicts on incidents, turned into labels for the next run (`vigil feedback`,
    DVC stage ``feedback``; README: Feedback and remedies)."""

    folder: Path = Path("data/feedback")  # the exported dataset: <model>/<series>.csv + feedback.json (DVC output)
    context_steps: int = Field(60, ge=1)  # steps either side of a reviewed incident exported with it
    who: str | None = None  # the operator `vigil feedback` records (null: the login name)


class RemedyConfig(_Strict):
    """One catalogue entry: where it applies (empty: anywhere)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str
    kinds: list[str] = Field(default_factory=list)  # dataset kinds of the source (synthetic, dcache_billing, ...)
    detectors: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)  # shell patterns; one must match a top metric of the incident


class RankerConfig(_Strict):
    name: str = "linucb"  # a key of components/remedies.RANKERS
    params: dict[str, Any] = Field(default_factory=dict)


class RemediesConfig(_Strict):
    """The remedy catalogue and the ranker learned from feedback (README: Feedback and remedies)."""

    catalogue: list[RemedyConfig] | Path = Field(default_factory=list)  # the entries, or a YAML file holding them
    ranker: RankerConfig = RankerConfig()
    time_scale_minutes: float = Field(60.0, gt=0)  # reward of a fix: 1 / (1 + minutes / time_scale)
    features: int = Field(64, ge=8)  # incident feature length (hashed metric and source names)
    model_name: str = "vigil-remedies"  # MLflow: a version per distinct feedback, alias @current
    experiment: str = "vigil-remedies"

    @field_validator("catalogue")
    @classmethod
    def _unique(cls, v):
        if isinstance(v, list):
            names = [r.name for r in v]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"remedy names must be unique; given more than once: {twice}")
        return v

    def entries(self, root: Path = Path(".")) -> list[RemedyConfig]:
        """The catalogue's entries, read from its file where it names one (relative to ``root``)."""
        if isinstance(self.catalogue, list):
            return self.catalogue
        path = self.catalogue if self.catalogue.is_absolute() else Path(root) / self.catalogue
        if not path.is_file():
            raise ConfigError(f"remedies.catalogue: {path} does not exist")
        raw = yaml.safe_load(path.read_text()) or []
        try:
            return RemediesConfig(catalogue=raw).catalogue
        except ValidationError as exc:
            where = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{path}: {where}") from None


class TrainDeployment(_Strict):
    cron: str = "0 3 * * 0"  # vigil-train: the pipeline, weekly by default (UTC)


class PoolDeployment(_Strict):
    pool: str = "gpu"  # the work pool its runs wait on (workers: `prefect worker start --pool gpu`)


class ScoreDeployment(_Strict):
    interval_minutes: float = Field(5, gt=0)  # vigil-score: how often the landing folder is scored


class NotifyConfig(_Strict):
    """Incidents to the operator's alerting (README: Alertmanager). Each raised incident is
    queued in the alerts store with it, and delivered after each scoring run: as firing while
    it is open (re-sent every run, as Prometheus re-sends its alerts), then once as resolved."""

    alertmanager: str | None = Field(None, pattern=HTTP_URL)  # its base URL (API v2), e.g. http://127.0.0.1:9093
    webhook: str | None = Field(None, pattern=HTTP_URL)  # any URL: each incident as JSON, firing and resolved
    page_url: str = Field("http://127.0.0.1:8050", pattern=HTTP_URL)  # the live page an alert links to
    # how long Alertmanager keeps an incident firing that Vigil has not re-sent (vigil-score
    # re-sends every run): a Vigil that stopped leaves no alert firing for ever
    firing_minutes: float = Field(20.0, gt=0)
    timeout_seconds: float = Field(10.0, gt=0)
    attempts: int = Field(3, ge=1, le=10)  # per delivery and run; what still fails is sent again next run


class DeploymentsConfig(_Strict):
    """What `vigil serve` puts in the Prefect UI: vigil-train and vigil-score served by it on
    their schedules; vigil-tune and vigil-benchmark registered on a work pool, run by hand."""

    train: TrainDeployment = TrainDeployment()
    score: ScoreDeployment = ScoreDeployment()
    tune: PoolDeployment = PoolDeployment()
    benchmark: PoolDeployment = PoolDeployment()


class StreamTopics(_Strict):
    stats: str = "stats"  # web server CPU and memory, once a second
    responsetime: str = "responsetime"  # every request's response time
    aggregate: str = "aggregate"  # per-second records (`vigil stream aggregate`)
    predictions: str = "predictions"  # `vigil stream predict`
    dead_letter: str = "vigil-dead-letter"  # messages set aside (unreadable, stamped too far ahead), as they came


class SimulatorConfig(_Strict):
    """The seeded web-service simulator (components/slo/simulator.py)."""

    duration: int = Field(1800, ge=120)  # simulated seconds in a run
    n_cpu_hogs: int = Field(15, ge=0)  # faults that break the SLO some 25-40 s after injection
    n_memory_leaks: int = Field(35, ge=0)  # faults that fill memory and do not break it
    request_rate: float = Field(50.0, gt=0)  # requests (responsetime messages) per simulated second


class SLODataConfig(_Strict):
    """The recorded aggregates the predictors learn from (`dvc repro slo_record`)."""

    folder: Path = Path("data/slo")
    train_seeds: list[int] = Field(default_factory=lambda: [1, 2, 3])  # labelled runs with faults
    normal_seed: int = 100  # a fault-free run: what the forecaster learns "normal" from
    validation_seed: int = 200  # thresholds and the champion are chosen on this run only


class StreamConfig(_Strict):
    """Real-time prediction of SLO violations over Kafka (`vigil stream`, README: Streaming)."""

    bootstrap_servers: str | None = None  # host:port of a Kafka; null: start a Tansu broker on loopback
    topics: StreamTopics = StreamTopics()
    partitions: int = Field(1, ge=1)  # of the input topics Vigil creates
    rt_limit: float = Field(1.0, gt=0)  # seconds: a response slower than this violates the SLO
    grace: float = Field(2.0, ge=0)  # seconds a message may arrive late and still join its second
    # seconds an event time may lie ahead of the stream's latest (and of the clock) before the
    # message is set aside on topics.dead_letter: one stamp in 2100 would otherwise hold back or
    # fill every second up to it
    max_skew: float = Field(300.0, gt=0)
    lead: int = Field(50, ge=1)  # seconds: a prediction is right when a violation follows within it
    early: int = Field(10, ge=0)  # event-level: violations predicted at least this many seconds ahead
    simulator: SimulatorConfig = SimulatorConfig()
    demo_seed: int = 0  # the run `vigil stream demo` sends through the broker (never trained on)
    data: SLODataConfig = SLODataConfig()
    predictors: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"rt_threshold": {}, "forecast": {}, "classifier": {}}
    )
    model_name: str = "vigil-slo"  # MLflow: versions aliased by predictor name, best as @champion
    experiment: str = "vigil-slo"
    store: str | None = None  # alerts store for the champion's predictions; null: scoring.store

    def bootstrap(self, given: str | None = None) -> str:
        """The Kafka to talk to: ``given`` (--bootstrap), else ``bootstrap_servers``."""
        bootstrap = given or self.bootstrap_servers
        if not bootstrap:
            raise ConfigError(
                "no Kafka to talk to: give --bootstrap HOST:PORT or set stream.bootstrap_servers "
                "(`vigil stream broker` starts one on 127.0.0.1; `vigil stream demo` starts its own)"
            )
        return bootstrap


class BillingGenerator(_Strict):
    """components/logs/dcache.py's generate_billing: pools with their own sizes, bandwidth and
    load, and incidents after the quiet head."""

    seed: int = 0
    days: int = Field(4, ge=2)
    pools: int = Field(6, ge=1)
    rate: float = Field(6.0, gt=0)  # mover records per pool per minute, on average
    n_incidents: int = Field(8, ge=0)  # pool errors, stuck queue, slow disk, outage of all pools, in turn
    quiet_head: float = Field(0.5, ge=0, lt=1)  # share of the span with no incident (train)
    start: str = "2026-01-05"  # first day (UTC)


class TransferGenerator(_Strict):
    """components/logs/rucio.py's generate_transfers: links with drifting bandwidth shared by
    concurrent transfers, and incidents after the quiet head."""

    seed: int = 0
    days: int = Field(4, ge=2)
    links: int = Field(6, ge=1, le=42)  # of the 42 ordered pairs of its 7 sites
    rate: float = Field(3.0, gt=0)  # transfers per link per minute, on average
    n_incidents: int = Field(9, ge=0)  # congested link, failure burst, stuck queue, in turn
    quiet_head: float = Field(0.5, ge=0, lt=1)
    start: str = "2026-01-05"


class BillingSource(_Strict):
    logs: Path = Path("data/raw/dcache_billing")  # billing-YYYY-MM-DD.json (+ incidents.json, where labelled)
    out: Path = Path("data/telemetry/dcache_billing")  # one series per pool; dataset.root of kind dcache_billing
    generate: BillingGenerator | None = BillingGenerator()  # null: `logs` is a user's folder, only read


class TransferSource(_Strict):
    logs: Path = Path("data/raw/rucio_transfers")  # transfers-YYYY-MM-DD.json (+ incidents.json)
    out: Path = Path("data/telemetry/rucio_transfers")  # one series per link; dataset.root of kind rucio_transfers
    generate: TransferGenerator | None = TransferGenerator()


class BillingReference(_Strict):
    """The reference analysis of billing records (components/logs/reference.py)."""

    sample: float = Field(0.7, gt=0, le=1)  # share of each hour's store records kept
    split: float = Field(0.7, gt=0, lt=1)  # share of the sample the regression is trained on
    order: Literal["time", "random"] = "time"  # how the sample and the split are drawn
    seed: int = 0


class TransferReference(_Strict):
    """The reference duration predictor (components/logs/reference.py): a GRU over the link's
    last ``history`` transfers."""

    history: int = Field(100, ge=2)  # the transfer itself and the ones before it on its link
    hidden: int = Field(32, ge=1)
    epochs: int = Field(4, ge=1)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(3e-3, gt=0)
    fit_fraction: float = Field(0.8, gt=0, lt=1)  # of train: the rest calibrates the thresholds
    within_s: float = Field(180, gt=0)  # "a prediction within 3 minutes"
    fixed_threshold_s: float = Field(600, gt=0)  # the reference's rule: duration > prediction + 600 s
    quantile: float = Field(0.995, gt=0, lt=1)  # the calibrated rule: a link's residual quantile on normal data
    pot_q: float = Field(1e-3, gt=0, lt=1)  # and POT's: the residual a normal transfer exceeds with probability q
    pot_level: float = Field(0.98, gt=0, lt=1)
    seed: int = 0
    device: str = "auto"


class LogReferenceConfig(_Strict):
    billing: BillingReference = BillingReference()
    transfers: TransferReference = TransferReference()
    experiment: str = "vigil-logs-reference"  # MLflow: one run per reference model


class LogsConfig(_Strict):
    """Event logs turned into telemetry (`vigil logs`, DVC stages ``logs_generate`` and ``logs``;
    README: Telemetry from logs)."""

    engine: Literal["duckdb", "spark"] = "duckdb"  # embedded, or Spark for logs that outgrow one machine
    spark_master: str = "local[2]"  # with engine spark: local[N] in this process, or a cluster's URL
    spark_partitions: int = Field(8, ge=1)  # spark.sql.shuffle.partitions
    bin_seconds: int = Field(60, ge=1)  # one telemetry step per series
    # a folder's events may lie at most this many days apart: a day file dated a century away
    # is refused by name before the dense telemetry allocates a step for every bin between
    max_span_days: int = Field(366, ge=1)
    train_fraction: float = Field(0.5, gt=0, lt=1)  # leading share of each series' bins that is train
    dcache_billing: BillingSource = BillingSource()
    rucio_transfers: TransferSource = TransferSource()
    reference: LogReferenceConfig = LogReferenceConfig()

    def source(self, log_format: str) -> BillingSource | TransferSource:
        return getattr(self, log_format)

    def generator_settings(self, log_format: str) -> dict | None:
        """The format's generator settings as plain values (None: its logs are not generated)."""
        gen = self.source(log_format).generate
        return None if gen is None else gen.model_dump()


LOG_SOURCES = ("dcache_billing", "rucio_transfers")  # the log formats with a section in `logs`


class Config(_Strict):
    dataset: DatasetConfig = DatasetConfig()
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    detectors: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"zscore": {}, "pca": {}, "iforest": {}})
    threshold: ThresholdConfig = ThresholdConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    registry: RegistryConfig = RegistryConfig()
    tuning: TuningConfig = TuningConfig()
    benchmark: BenchmarkConfig = BenchmarkConfig()
    scoring: ScoringConfig = ScoringConfig()
    notify: NotifyConfig = NotifyConfig()
    web: WebConfig = WebConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    remedies: RemediesConfig = RemediesConfig()
    deployments: DeploymentsConfig = DeploymentsConfig()
    stream: StreamConfig = StreamConfig()
    logs: LogsConfig = LogsConfig()
    cluster: ClusterConfig = ClusterConfig()

    def tuning_jobs(self) -> tuple[dict[str, dict], list[str]]:
        """(detector -> its plain search space) for the configured detectors to tune, and
        those left out for want of a space."""
        spaces = {n: self.tuning.plain_space(n) for n in self.detectors if self.tuning.spaces.get(n)}
        return spaces, [n for n in self.detectors if n not in spaces]

    def alert_settings(self) -> AlertSettings:
        """The plain values `components.evaluation.choose_alert_rule` reads."""
        t, i = self.threshold, self.incidents
        return AlertSettings(
            method=t.method,
            rules=tuple(t.rules),
            smoothing=tuple((k, int(w)) for k, w in t.smoothing),
            fallback=(t.fallback.rule, t.fallback.smoothing, t.fallback.window),
            label_free=(t.label_free.rule, t.label_free.smoothing, t.label_free.window),
            pot_q=t.pot_q,
            pot_level=t.pot_level,
            tail_p=t.tail_p,
            merge_gap=i.merge_gap,
            min_steps=i.min_steps,
        )

    @model_validator(mode="after")
    def _telemetry_root(self) -> Config:
        # a kind made from logs reads what the logs flow writes: one folder, named once
        fmt = DATASET_KINDS[self.dataset.kind].log_format
        if fmt is not None and Path(self.dataset.root) != self.logs.source(fmt).out:
            raise ValueError(
                f"dataset.root ({self.dataset.root}) must be logs.{fmt}.out ({self.logs.source(fmt).out}), "
                f"where the logs flow writes the {fmt} telemetry"
            )
        return self

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        unknown = sorted(set(v) - set(DETECTORS))
        if unknown:
            raise ValueError(f"unknown detector(s) {unknown}; registered: {sorted(DETECTORS)}")
        if not v:
            raise ValueError("name at least one detector")
        return {k: dict(p or {}) for k, p in v.items()}


def _member_problems(family: dict, name: str, params: dict[str, Any] | None, name_at: str, params_at: str) -> list[str]:
    """One configured member of an estimator family (a detector, an SLO predictor, the remedy
    ranker) against the family's registry, its signature and its own checks, before any data is
    read: one line per problem, with the key path. The one place such parameters are checked."""
    if name not in family:
        return [f"  {name_at}: {name!r} is not registered; registered: {sorted(family)}"]
    allowed = family[name].param_names()
    problems = [
        f"  {params_at}.{key}: unknown parameter of {name}; known: {allowed}"
        for key in sorted(set(params or {}) - set(allowed))
    ]
    try:
        family[name](**{k: v for k, v in (params or {}).items() if k in allowed}).validate_params()
    except ParamError as exc:
        problems.append(f"  {params_at}.{exc.param}: {exc.rule}")
    except (TypeError, ValueError) as exc:
        problems.append(f"  {params_at}: {exc}")
    return problems


def _family_problems(cfg: Config) -> list[str]:
    from components.remedies import RANKERS
    from components.slo.predictors import PREDICTORS

    problems = []
    for name, params in cfg.detectors.items():
        problems += _member_problems(DETECTORS, name, params, f"detectors.{name}", f"detectors.{name}")
    for name, params in cfg.stream.predictors.items():
        where = f"stream.predictors.{name}"
        problems += _member_problems(PREDICTORS, name, params, where, where)
    ranker = cfg.remedies.ranker
    problems += _member_problems(RANKERS, ranker.name, ranker.params, "remedies.ranker.name", "remedies.ranker.params")
    return problems + _space_problems(cfg.tuning.spaces, cfg.detectors)


def _benchmark_problems(cfg: Config, peers: Collection[str] | None) -> list[str]:
    """The benchmark's tuned rows against the configured detectors and benchmark datasets, and
    where ``peers`` (the names of `tasks.peers.PEERS` and `tasks.tsb_peers.TSB_PEERS`) is
    given, its peers against them. The commands that run the benchmark pass the peers' names:
    importing the peers' code here would make every DVC stage depend on it."""
    bc, problems = cfg.benchmark, []
    if peers is not None:
        known = sorted(peers)
        for where, named in [("benchmark.peers", bc.peers)] + [
            (f"benchmark.datasets.{n}.peers", d.peers or []) for n, d in bc.datasets.items()
        ]:
            if unknown := sorted(set(named) - set(known)):
                problems.append(f"  {where}: unknown peer(s) {unknown}; known: {known}")
    for dataset, d in bc.datasets.items():
        for name in d.detectors:
            where = f"benchmark.datasets.{dataset}.detectors.{name}"
            if name not in cfg.detectors:
                problems.append(f"  {where}: not a configured detector; configured: {sorted(cfg.detectors)}")
                continue
            problems += _member_problems(DETECTORS, name, d.detector_params(name, cfg.detectors[name]), where, where)
    for name, datasets in bc.tuned.detectors.items():
        if name not in cfg.detectors:
            configured = sorted(cfg.detectors)
            problems.append(f"  benchmark.tuned.detectors.{name}: not a configured detector; configured: {configured}")
        if unknown := sorted(set(datasets or []) - set(bc.datasets)):
            problems.append(
                f"  benchmark.tuned.detectors.{name}: unknown dataset(s) {unknown}; known: {sorted(bc.datasets)}"
            )
    return problems


def _space_problems(spaces: dict[str, dict[str, ParamRange]], detectors: dict[str, dict[str, Any]]) -> list[str]:
    """Each search space against its detector: known detector, known parameters, and both ends
    (every choice) accepted by the detector's own checks."""
    problems = []
    for name, space in spaces.items():
        if name not in DETECTORS:
            problems.append(f"  tuning.spaces.{name}: unknown detector; registered: {sorted(DETECTORS)}")
            continue
        allowed = DETECTORS[name].param_names()
        fixed = {k: v for k, v in detectors.get(name, {}).items() if k in allowed}
        for param, rng in space.items():
            if param not in allowed:
                problems.append(f"  tuning.spaces.{name}.{param}: unknown parameter of {name}; known: {allowed}")
                continue
            for value in rng.edge_values():
                try:
                    get_detector(name, **{**fixed, param: value}).validate_params()
                except ParamError as exc:
                    problems.append(f"  tuning.spaces.{name}.{param}: {value!r} is not allowed: {exc.rule}")
                    break
    return problems


class ConfigError(ValueError):
    pass


def check_root_is_portable(repo_root: Path, raw_root: Path) -> None:
    """dvc.lock records dataset.root as written: an absolute path into this checkout would tie
    the lock to one machine's folders, so it is refused (a path outside is kept as given)."""
    root = Path(raw_root)
    if root.is_absolute() and root.resolve().is_relative_to(repo_root):
        relative = root.resolve().relative_to(repo_root)
        raise ConfigError(
            f"dataset.root: {root} is inside this checkout; write it relative ({relative}) so that "
            f"dvc.lock stays valid in every clone"
        )


def load_config(path: str | Path = "params.yaml", peers: Collection[str] | None = None) -> Config:
    """params.yaml parsed and checked (`parse_config`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    return parse_config(raw, str(path), peers)


def parse_config(raw: dict, source: str = "params", peers: Collection[str] | None = None) -> Config:
    """The parameters typed and checked, every problem named with its key path: the schema,
    then each estimator family's members, the search spaces and the benchmark's rows (its peers
    too, where the caller names the known ones)."""
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {len(exc.errors())} problem(s)"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
    problems = _family_problems(cfg) + _benchmark_problems(cfg, peers)
    if problems:
        raise ConfigError("\n".join([f"{source}: {len(problems)} problem(s)", *problems]))
    return cfg


def with_cluster(cfg: Config, workers: int | None = None, scheduler: str | None = None) -> Config:
    """``cfg`` with its cluster section replaced where the command line names one (``--workers
    N`` or ``--scheduler URL``, which win over params.yaml's), checked as params.yaml's is."""
    if workers is None and scheduler is None:
        return cfg
    given = {**cfg.cluster.model_dump(), "workers": workers or 0, "scheduler": scheduler}
    try:
        cluster = ClusterConfig.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(f"--{'/--'.join(map(str, e['loc'])) or 'workers'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(problems) from None
    return cfg.model_copy(update={"cluster": cluster})


def params_hash(cfg: Config) -> str:
    """sha256 of the resolved parameters (defaults filled in), stable across key order; where
    the work runs (``cluster``) is no parameter of what it computes."""
    import hashlib
    import json

    what = cfg.model_dump(mode="json", exclude={"cluster"})
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()
