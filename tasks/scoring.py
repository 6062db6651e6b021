"""Scoring new telemetry with the champion: landing folder -> validation -> scores, alerts and
incidents in the alerts store (`tasks.alerts`).

Layout: ``<landing>/<source>/*.csv|*.parquet``, one sub-folder per series, its files scored in
name order (name them by time). A file holds the time column and the metrics the model was
trained on. Each file is validated with the training data's Great Expectations suite and
against its source's watermark (its first step must come after the last one accepted); a
file that fails goes to ``<landing>/quarantine/<source>/`` with ``<name>.reason.txt`` and the
next file is scored. A scored file goes to ``<landing>/done/<source>/``. Every file is one
transaction (`tasks.alerts`), and its md5 is recorded in it, so a file found again after a
crash (scored, but not yet moved) is moved, not scored twice.

Hostile or unfinished arrivals (`landing_files`): only regular files delivered into the
landing folder are read. A symbolic link (file or source folder) is refused by name and left
where it is, so nothing outside the folder is read or moved; a source folder whose name has
control characters or is too long is refused likewise. A file still being written is left for
a later run: hidden names (``.name``, which rsync and most shippers write to before renaming)
and temporary suffixes are never read, a file modified in the last ``settle_seconds`` waits,
and a file whose size or modification time changed between reading and storing is neither
stored nor moved (the transaction is rolled back). ``done/`` and ``quarantine/`` must stay
inside the landing folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NO_CACHE

from components.alerting import AlertRule
from components.datasets import DataError, RawTable
from components.streaming import StreamState, score_batch
from components.text import first_line, folder_name_problem, printable

from . import progress, run_logger
from .alerts import (
    SOURCE_MAX,
    Scorer,
    Sink,
    StoreError,
    dumps,
    file_outcome,
    finish_run,
    now,
    read_source,
    record_file,
    start_run,
    store_errors,
    store_id,
    write_source,
    write_steps,
)
from .urls import shown_url
from .validation import Problem, validate_tables

SUFFIXES = (".csv", ".parquet")
SKIP = ("quarantine", "done")  # landing sub-folders that are not sources
TEMPORARY = (".tmp", ".part", ".partial", ".filepart", ".crdownload", ".inprogress", ".swp")  # names being written
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"  # fixed width: stored times sort as strings


@dataclass
class Champion:
    """The registered model scoring new data: the pyfunc's Python model, whose scaler,
    detector and threshold are the ones evaluation used (`tasks.mlflow_model`), and where it
    came from. Only those attributes are read, so a champion logged by an earlier Vigil (its
    model code is stored with it) scores too."""

    name: str
    version: str
    model: object  # tasks.mlflow_model.VigilAnomalyModel

    @property
    def detector(self) -> str:
        return self.model.detector.name

    @property
    def features(self) -> list[str]:
        return list(self.model.features)

    @property
    def rule(self) -> AlertRule:
        """The alert rule evaluation measured; a model logged before rules existed carries its
        threshold only (no smoothing, no merging)."""
        rule = getattr(self.model, "rule", None)
        return rule if isinstance(rule, AlertRule) else AlertRule(float(self.model.threshold))

    def score_batch(self, raw: np.ndarray, state: StreamState):
        """A batch of a stream (raw metrics [T, features]) after ``state``: the steps that
        became final, and the state to carry on (`components.streaming.score_batch`)."""
        detector, scaler = self.model.detector, self.model.scaler
        past, future = detector.context_steps()
        return score_batch(
            lambda rows: detector.score_and_contributions(scaler.transform(rows)), state, raw, past, future
        )


def load_champion(tracking_uri: str, name: str, alias: str = "champion", version: str | None = None) -> Champion:
    """``models:/<name>@<alias>``, pinned to the version the alias names now (through the
    tracking server's REST API where ``tracking_uri`` is http), or that ``version`` (what a
    cluster's workers load: the version their run started with). No such model or alias, or a
    version whose artifacts are gone, is one paragraph saying what to do."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from .registry import load_logged_model

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with registry_errors(tracking_uri):
        try:
            mv = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            raise DataError(
                f"no model {name}@{alias} in the registry {shown_url(tracking_uri)}: run `vigil run` first to "
                f"train and register one (or set scoring.model_name to a registered model with an @{alias})"
            ) from None
        try:
            model = load_logged_model(tracking_uri, mv.source)
        except (MlflowException, OSError) as exc:
            raise DataError(
                f"{name} version {mv.version} (@{alias}) cannot be loaded from {mv.source}: "
                f"{first_line(exc)}; its artifacts are "
                f"gone or unreadable: run `vigil run` to register a new champion, or restore them"
            ) from None
    return Champion(name, str(mv.version), model)


def registry_errors(tracking_uri: str):
    """The MLflow registry out of reach, read-only or broken, as one `StoreError` paragraph."""
    from mlflow.exceptions import MlflowException

    return store_errors(tracking_uri, "the MLflow registry", "registry.tracking_uri", also=(MlflowException,))


def source_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a source (a landing sub-folder), or None."""
    if name in SKIP:
        return f"{SKIP} are not sources"
    return folder_name_problem(name, SOURCE_MAX)


def being_written(name: str) -> bool:
    """A name shippers write to before renaming it into place: hidden, or a temporary suffix."""
    return name.startswith((".", "~")) or name.lower().endswith(TEMPORARY)


@dataclass
class Skipped:
    path: str
    reason: str
    waiting: bool = False  # still being written: scored by a later run


def landing_files(landing: Path, settle_seconds: float = 0.0) -> tuple[dict[str, list[Path]], list[Skipped]]:
    """Source -> its complete files waiting in the landing folder, in name order; and what was
    left where it is, and why (module docstring)."""
    landing = Path(landing)
    out: dict[str, list[Path]] = {}
    skipped: list[Skipped] = []
    if not landing.is_dir():
        return out, skipped
    newest = time.time() - settle_seconds
    for folder in sorted(landing.iterdir()):
        if folder.name in SKIP or being_written(folder.name):
            continue
        if folder.is_symlink():
            skipped.append(Skipped(str(folder), f"a symbolic link (to {os.readlink(folder)}): not read or moved"))
            continue
        if not folder.is_dir():
            continue
        problem = source_name_problem(folder.name)
        if problem:
            skipped.append(Skipped(str(folder), f"not a source name: {problem}"))
            continue
        files = []
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() not in SUFFIXES or being_written(p.name):
                continue
            if p.is_symlink():
                skipped.append(Skipped(str(p), f"a symbolic link (to {os.readlink(p)}): not read or moved"))
            elif p.is_file():
                if p.stat().st_mtime > newest:
                    skipped.append(Skipped(str(p), "modified in the last scoring.settle_seconds: waiting", True))
                else:
                    files.append(p)
        if files:
            out[folder.name] = files
    return out, skipped


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_arrival(path: Path, time_column: str, features: list[str]) -> RawTable:
    """The file read leniently, as the training suite expects a raw table: the time column,
    then the model's metrics, in that order."""
    if path.suffix.lower() == ".parquet":
        frame, first_line = pd.read_parquet(path), None
    else:
        frame, first_line = pd.read_csv(path), 2
    return RawTable(
        path,
        "series",
        frame,
        [time_column, *features],
        time_column=time_column,
        metrics=list(features),
        first_line=first_line,
    )


def read_or_problem(path: Path, time_column: str, features: list[str]) -> tuple[RawTable | None, list[str]]:
    """The arrival read, or why it cannot be (not CSV / Parquet at all, not text, unreadable)."""
    try:
        return read_arrival(path, time_column, features), []
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        return None, [f"{path}: not readable as {path.suffix.lstrip('.')}: {exc}"]


def suite_passes_together(tables: list[RawTable]) -> bool:
    """One validation of the files waiting for a source, stacked: true when the training
    suite passes on all of them at once (so on each: it checks columns, values and rows
    independently, and time increasing, which holds within each file when it holds across
    them). GX's cost per validation is mostly fixed (~1 s for 38 metrics), so this pays it once
    per group; a false answer sends each file to its own validation."""
    if len(tables) < 2 or any(list(t.frame.columns) != list(tables[0].frame.columns) for t in tables):
        return False
    stacked = dataclasses.replace(tables[0], frame=pd.concat([t.frame for t in tables], ignore_index=True))
    return validate_tables([stacked], min_rows=1, details=False)["success"]


def arrival_problems(
    table: RawTable, watermark: str | None, suite_passed: bool = False
) -> tuple[list[str], pd.Series | None]:
    """What is wrong with an arrival, one line each (file, expectation, column, rows): the
    training suite (columns, types, nulls, finite values, time strictly increasing; skipped
    where ``suite_passed`` says it passed on this file already), then its first step against the
    source's watermark. Also its times, parsed, where they are good."""
    report = {"problems": []}
    if not suite_passed:
        report = validate_tables([table], min_rows=1, details=False)
        if not report["success"]:  # again, for the rows and values that fail
            report = validate_tables([table], min_rows=1)
    problems = [str(Problem(**p)) for p in report["problems"]]
    if problems:
        return problems, None
    times = pd.to_datetime(table.frame[table.time_column], errors="coerce")
    if getattr(times.dt, "tz", None) is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    if watermark is not None and times.iloc[0] <= pd.Timestamp(watermark):
        behind = int((times <= pd.Timestamp(watermark)).sum())
        problems.append(
            f"{table.path}: column {table.time_column!r}, {table.where(np.arange(min(behind, 5)))}: "
            f"time goes back: {behind} step(s) at or before {watermark}, the last step already accepted "
            f"for this source (a file scored before, or overlapping one)"
        )
    return problems, times


def quarantine(path: Path, landing: Path, source: str, problems: list[str]) -> Path:
    """Move ``path`` to ``<landing>/quarantine/<source>/`` beside a reason file."""
    target = _move_out(path, landing, "quarantine", source)
    Path(f"{target}.reason.txt").write_text(
        f"{path.name} was not scored ({now()}):\n" + "\n".join(f"  {p}" for p in problems) + "\n"
    )
    return target


def _move_out(path: Path, landing: Path, outcome: str, source: str) -> Path:
    """Move ``path`` to ``<landing>/<outcome>/<source>/``; a name taken there gets a numbered
    suffix, so a file moved there earlier is never overwritten. The folder must resolve inside
    the landing folder (a ``done`` linked elsewhere is refused, naming it)."""
    root, folder = Path(landing).resolve(), Path(landing) / outcome / source
    for checked in (folder.parent, folder):  # before anything is made there, then the folder made
        if not checked.resolve().is_relative_to(root):
            raise DataError(
                f"{checked} leads out of the landing folder {landing} (to {checked.resolve()}): {path} stays"
            )
        checked.mkdir(exist_ok=True)
    target = base = folder / path.name
    n = 1
    while target.exists():
        target = base.with_name(f"{base.stem}.{n}{base.suffix}")
        n += 1
    shutil.move(path, target)
    return target


@dataclass
class FileOutcome:
    source: str
    file: str
    status: str  # scored | quarantined | already scored
    rows: int = 0
    scored: int = 0  # steps that became final (pending steps of earlier files included)
    alerts: int = 0
    incidents: list[int] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)


def _stream_state(src: dict | None, features: list[str]) -> tuple[StreamState, list[str], str]:
    """The source's carried state for this model's features, its pending steps' times, and a
    note where it could not be carried (other features: a new model on other metrics)."""
    empty = StreamState.empty(len(features))
    if src is None:
        return empty, [], ""
    saved = json.loads(src["state"])
    if saved.get("features") != features:
        dropped = saved.get("stream", {}).get("pending", 0)
        return empty, [], f"stream state dropped: the model reads other metrics ({dropped} pending step(s) unscored)"
    return StreamState.from_json(saved["stream"], len(features)), list(saved["times"]), ""


def score_file(
    engine: sa.Engine,
    champion: Champion,
    landing: Path,
    source: str,
    path: Path,
    run: str,
    *,
    table: RawTable | None,
    read_problems: list[str],
    suite_passed: bool,
    keep_values: bool,
    sinks: Sequence[Sink] = (),
    kind: str = "",
    seen: tuple[int, int] | None = None,
) -> FileOutcome:
    """Validate, score and store one file in one transaction, then move it out of the landing
    folder (quarantine or done). ``table``, ``read_problems``: the file as `read_or_problem`
    read it; ``suite_passed``: the training suite passed on it already
    (`suite_passes_together`). ``sinks`` (`tasks.alerts.Sink`, e.g. the remedy ranker) are told
    of each incident raised, in the same transaction, the source being of dataset kind ``kind``.
    ``seen``: the file's size and modification time before it was read (`file_stamp`); where
    they changed since, the file is still being written: nothing is stored or moved."""
    md5 = md5_of(path)
    with engine.connect() as conn:
        if file_outcome(conn, source, md5) == "scored":  # a crash between commit and move
            _move_out(path, landing, "done", source)
            return FileOutcome(source, path.name, "already scored")
        src = read_source(conn, source)
    problems = list(read_problems)
    if not problems:
        problems, times = arrival_problems(table, src["watermark"] if src else None, suite_passed)
    if problems:
        rows = 0 if table is None else len(table.frame)
        if seen is not None and file_stamp(path) != seen:
            return FileOutcome(source, path.name, WAITING)
        with engine.begin() as conn:
            record_file(conn, source, path.name, md5, rows, "quarantined", run, reason="\n".join(problems))
        quarantine(path, landing, source, problems)
        return FileOutcome(source, path.name, "quarantined", rows, reason=problems)
    raw = table.frame[champion.features].to_numpy(dtype=np.float64)
    stamps = times.dt.strftime(TIME_FORMAT).tolist()
    outcome = FileOutcome(source, path.name, "scored", len(raw))
    try:
        with engine.begin() as conn:
            src = read_source(conn, source)  # again, inside the transaction that writes it
            state, pending_times, note = _stream_state(src, champion.features)
            if note:
                run_logger().warning(f"{source}: {note}")
            pending_raw = state.rows[len(state.rows) - state.pending :]  # scored now, before this file's steps
            final, state = champion.score_batch(raw, state)
            all_times = pending_times + stamps
            n = len(final.scores)
            step_times, pending_times = all_times[:n], all_times[n:]
            values = np.concatenate([pending_raw, raw])[:n] if keep_values else None
            open_incident = src["open_incident"] if src else None
            carried = json.loads(src["state"]).get("alerting") if src else None
            if src and src["version"] != champion.version:
                open_incident = carried = None  # an incident, and the scores smoothed, belong to one model version
            scorer = Scorer(champion.name, champion.version, champion.detector, champion.rule, champion.features)
            open_incident, carried, incidents, alerts = write_steps(
                conn, source, scorer, step_times, final.scores, final.contributions, values, open_incident, carried
            )
            for sink in sinks:  # in this transaction: what a sink stores commits with the incidents, or not at all
                sink.incidents_raised(conn, incidents, kind)
            outcome.incidents += incidents
            outcome.alerts += alerts
            saved = {
                "features": champion.features,
                "stream": state.to_json(),
                "times": pending_times,
                "alerting": carried,
            }
            row = {
                "watermark": stamps[-1],
                "steps": (src["steps"] if src else 0) + len(raw),
                "state": dumps(saved),
                "model": champion.name,
                "version": champion.version,
                "open_incident": open_incident,
                "updated": now(),
            }
            write_source(conn, source, row, exists=src is not None)
            record_file(conn, source, path.name, md5, len(raw), "scored", run)
            outcome.scored = n
            if seen is not None and file_stamp(path) != seen:  # written to meanwhile: roll all of it back
                raise _ChangedWhileRead
    except _ChangedWhileRead:
        return FileOutcome(source, path.name, WAITING)
    _move_out(path, landing, "done", source)
    return outcome


WAITING = "still being written"  # a file's outcome where it changed while it was read


class _ChangedWhileRead(Exception):
    """Raised inside a file's transaction to roll it back."""


def file_stamp(path: Path) -> tuple[int, int]:
    """Size and modification time (ns): what changes while a file is being written."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns


GROUP_ROWS = 500_000  # rows of a source's waiting files validated together (memory: ~40 metrics x 8 bytes each)


def _read_in_groups(files: list[Path], time_column: str, features: list[str]):
    """(path, table or None, read problems, suite passed, stamp before reading) per file, in
    order: files read in groups of about GROUP_ROWS rows, each group validated together once
    (`suite_passes_together`)."""
    group: list[tuple[Path, RawTable | None, list[str], tuple[int, int]]] = []
    rows = 0

    def flush():
        tables = [t for _, t, _, _ in group if t is not None]
        passed = len(tables) == len(group) and suite_passes_together(tables)
        yield from ((p, t, why, passed, seen) for p, t, why, seen in group)

    for path in files:
        seen = file_stamp(path)
        table, problems = read_or_problem(path, time_column, features)
        group.append((path, table, problems, seen))  # an unreadable file (None) is quarantined by score_file
        rows += 0 if table is None else len(table.frame)
        if rows >= GROUP_ROWS:
            yield from flush()
            group, rows = [], 0
    yield from flush()


def score_waiting(
    engine: sa.Engine,
    champion: Champion,
    landing: Path,
    run: str,
    time_column: str,
    keep_values: bool,
    sinks: Sequence[Sink] = (),
    kind: str = "",
    settle_seconds: float = 0.0,
    sources: Collection[str] | None = None,
) -> tuple[list[FileOutcome], list[Skipped]]:
    """Every complete file waiting in ``landing`` (of ``sources`` only, where given) scored by
    ``champion`` into the store, in name order per source (`score_file`); and what was left in
    place, and why."""
    log = run_logger()
    outcomes = []
    waiting, skipped = landing_files(Path(landing), settle_seconds)
    if sources is not None:
        waiting = {s: files for s, files in waiting.items() if s in sources}
        skipped = []  # said by the run that lists the whole folder
    for item in skipped:
        log.warning(printable(f"left in the landing folder: {item.path}: {item.reason}"))
    for source, files in waiting.items():
        for path, table, read_problems, passed, seen in _read_in_groups(files, time_column, champion.features):
            out = score_file(
                engine,
                champion,
                Path(landing),
                source,
                path,
                run,
                table=table,
                read_problems=read_problems,
                suite_passed=passed,
                keep_values=keep_values,
                sinks=sinks,
                kind=kind,
                seen=seen,
            )
            progress(  # a line a file, to the run's log and the console: a big backlog takes minutes
                printable(
                    f"score: {source}/{path.name}: {out.status}, {out.rows} rows, {out.scored} steps scored, "
                    f"{out.alerts} alerts" + (f"; {out.reason[0]}" if out.reason else "")
                )
            )
            outcomes.append(out)
    return outcomes, skipped


STORE_MARK = ".vigil-store"  # in the landing folder: the store its sources' watermarks and state live in


def check_store_pairing(engine: sa.Engine, landing: Path, store_url: str) -> None:
    """The landing folder's sources carry their watermark and stream state in one store: where
    the folder was scored into another store before (the store deleted, replaced or switched),
    scoring on would start every source afresh, re-scoring and losing context. Refused by name;
    a first run records the pairing."""
    from .files import write_atomic

    with store_errors(store_url), engine.connect() as conn:
        current = store_id(conn)
    mark = Path(landing) / STORE_MARK
    if mark.is_file():
        try:
            paired = json.loads(mark.read_text())
        except (ValueError, UnicodeDecodeError):
            paired = {}
        if paired.get("store_id") != current:
            raise StoreError(
                f"the landing folder {landing} was scored into store {paired.get('store_id')} "
                f"({paired.get('store')}), but {shown_url(store_url)} now holds store {current}: the store was "
                "deleted, replaced or switched, and with it every source's watermark and stream state. Restore "
                f"it, or delete {mark} to score on into this store (each source then starts afresh)"
            )
        return
    Path(landing).mkdir(parents=True, exist_ok=True)
    write_atomic(
        mark, json.dumps({"store_id": current, "store": shown_url(store_url), "since": now()}).encode() + b"\n"
    )


@dataclass
class ScoringRun:
    """What any process needs to score landed files into the store: URLs, paths and settings,
    no open handle (a Dask worker opens its own, `open`). ``version``: the champion's version
    this run started with, which every batch of it scores with. ``remedies``
    (`tasks.remedies.RemedySettings`): each new incident's remedies ranked by the ranker of
    the feedback in force, its source being of ``kind``; ``notify`` (`tasks.notify.Notifiers`):
    each new incident queued for the notifiers in the transaction that raised it."""

    store_url: str
    tracking_uri: str
    model_name: str
    landing: str
    time_column: str
    keep_values: bool
    remedies: object = None
    kind: str = ""
    artifact_root: Path | None = None
    settle_seconds: float = 0.0
    notify: object = None
    run: str = ""
    version: str | None = None

    def open(self, engine: sa.Engine | None = None) -> tuple[sa.Engine, Champion, list]:
        """The store (``engine``, or opened here), the champion (this run's version), and the
        sinks each new incident goes to: the remedy ranker in force (registered in MLflow first
        where its feedback is new) and the notifiers' outbox."""
        from .alerts import open_store

        engine = engine or open_store(self.store_url)
        champion = load_champion(self.tracking_uri, self.model_name, version=self.version)
        sinks = []
        if self.remedies is not None:
            from .remedies import current_advisor

            with registry_errors(self.tracking_uri):
                sinks.append(current_advisor(engine, self.tracking_uri, self.artifact_root, self.remedies, self.kind))
        if self.notify is not None:
            from .notify import Outbox

            sinks.append(Outbox(self.notify))
        return engine, champion, sinks


@task(name="score landing folder", task_run_name="score {sources[0]} and on", cache_policy=NO_CACHE)
def score_sources(job: ScoringRun, sources: list[str], opened: tuple | None = None) -> list[FileOutcome]:
    """The files waiting in ``job``'s landing folder of ``sources`` scored into the store
    (`score_waiting`), with ``opened`` (`ScoringRun.open`'s) or what this process opens."""
    engine, champion, sinks = opened or job.open()
    try:
        with store_errors(job.store_url):
            outcomes, _ = score_waiting(
                engine,
                champion,
                Path(job.landing),
                job.run,
                job.time_column,
                job.keep_values,
                sinks,
                job.kind,
                job.settle_seconds,
                sources=set(sources),
            )
    finally:
        if opened is None:
            engine.dispose()
    return outcomes


def start_scoring(job: ScoringRun, prometheus=None) -> tuple[ScoringRun, tuple, str | None, list[str], list[Skipped]]:
    """A scoring run begun: the store paired with the landing folder, the champion loaded
    (its version pinned in the returned job), ``prometheus``'s series
    (`tasks.prometheus.PrometheusSource`) pulled into the landing folder first, the run
    recorded. Returns the job, what `ScoringRun.open` opened, the champion's previous version
    where it changed, the sources with files waiting, and what is left in place, and why."""
    from .alerts import open_store

    engine = open_store(job.store_url)
    check_store_pairing(engine, Path(job.landing), job.store_url)
    _, champion, sinks = job.open(engine)
    if prometheus is not None:
        from .prometheus import pull_into_landing

        with store_errors(job.store_url):
            pull_into_landing(
                prometheus, engine, Path(job.landing), job.time_column, champion.features, job.settle_seconds
            )
    job = dataclasses.replace(job, run=uuid.uuid4().hex[:12], version=champion.version)
    with store_errors(job.store_url), engine.begin() as conn:
        previous = start_run(conn, job.run, job.model_name, champion.version)
    if previous:
        run_logger().info(f"champion changed: {job.model_name} version {previous} -> {champion.version}")
    waiting, skipped = landing_files(Path(job.landing), job.settle_seconds)
    for item in skipped:
        run_logger().warning(printable(f"left in the landing folder: {item.path}: {item.reason}"))
    return job, (engine, champion, sinks), previous, sorted(waiting), skipped


def finish_scoring(
    job: ScoringRun, opened: tuple, previous: str | None, outcomes: list[FileOutcome], skipped: list[Skipped]
) -> dict:
    """The run's counts recorded (the store's ``runs`` table), what is owed to the notifiers
    delivered; returns the counts and every file's outcome."""
    engine, champion, sinks = opened
    counts = {
        "files_scored": sum(o.status == "scored" for o in outcomes),
        "files_quarantined": sum(o.status == "quarantined" for o in outcomes),
        "files_waiting": sum(o.status == WAITING for o in outcomes) + sum(k.waiting for k in skipped),
        "files_refused": sum(not k.waiting for k in skipped),
        "steps": sum(o.rows for o in outcomes),
        "steps_scored": sum(o.scored for o in outcomes),
        "alerts": sum(o.alerts for o in outcomes),
        "incidents": sum(len(o.incidents) for o in outcomes),
    }
    with store_errors(job.store_url):
        if job.notify is not None:  # every run: open incidents re-sent, closed ones resolved, failures retried
            from .notify import deliver

            delivered = deliver(engine, job.notify)
            counts.update(notified=delivered["sent"], notify_failed=delivered["failed"])
        with engine.begin() as conn:
            finish_run(conn, job.run, counts)
    engine.dispose()
    from .remedies import Advisor

    advisor = next((s for s in sinks if isinstance(s, Advisor)), None)
    return {
        "run": job.run,
        "ranker_version": advisor.version if advisor else None,
        "model": job.model_name,
        "version": champion.version,
        "previous_version": previous,
        "detector": champion.detector,
        **counts,
        "outcomes": [o.__dict__ for o in outcomes],
        "skipped": [k.__dict__ for k in skipped],
    }


def log_scoring_run(tracking_uri: str, experiment: str, artifact_root: Path, result: dict) -> str:
    """One MLflow run per scoring run: its counts as metrics, the model version as tags."""
    from .registry import setup_mlflow

    mlflow = setup_mlflow(tracking_uri, experiment, artifact_root)
    tags = {
        "mlflow.runName": f"score {result['run']}",
        "mlflow.note.content": f"{result['model']} v{result['version']} ({result['detector']}) on the landing folder",
        "model": result["model"],
        "model_version": result["version"],
        "detector": result["detector"],
        "previous_version": result["previous_version"] or "",
    }
    counts = ("files_scored", "files_quarantined", "steps", "steps_scored", "alerts", "incidents")
    with mlflow.start_run(tags=tags) as run:
        mlflow.log_metrics({k: float(result[k]) for k in counts})
    return run.info.run_id


def scoring_model(configured: str | None, processed: Path) -> str:
    """The registered model to score with: ``configured`` (``scoring.model_name``, else
    ``registry.model_name``), else the name the pipeline gives the model of the prepared dataset
    (vigil-<dataset>, as ``processed``/meta.json names it)."""
    from vigil.config import ConfigError

    from .data import model_name, prepared_meta

    if configured:
        return configured
    meta = prepared_meta(processed)
    if meta is None:
        raise ConfigError(
            "scoring.model_name is not set and there is no prepared dataset to name the model after: "
            "set scoring.model_name to the registered model to score with (models:/<name>@champion)"
        )
    return model_name(meta["dataset"])
