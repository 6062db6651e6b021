"""The alerts store: every scored step, alerts grouped into incidents, each source's watermark
and stream state, and the files seen. SQLite by default, any SQLAlchemy URL (PostgreSQL for a
team). One file is written in one transaction: its steps, alerts, incidents, the source's new
watermark and state, and the file's own row, so a crash leaves either all of it or none.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import sqlalchemy as sa

from components.alerting import AlertCarry, AlertRule
from components.datasets import DataError
from components.text import first_line, has_control

from .urls import sqlite_file

META = sa.MetaData()

# Limits on what comes from outside (the page, `vigil feedback`, landing folder names); the
# columns below are sized by them.
SOURCE_MAX = 200  # characters of a source (series) name
WHO_MAX = 100  # characters of an operator's name
REMEDY_MAX = 100  # characters of a remedy's name
NOTE_MAX = 2000  # characters of a note on a verdict
MINUTES_MAX = 525_600.0  # a year: minutes spent on or to resolve an incident
MAX_ID = 2**63 - 1  # the largest row id (64-bit keys); a larger one names no row


def _id() -> sa.Column:
    """An auto-incrementing 64-bit key (SQLite autoincrements only a plain INTEGER key)."""
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)


SOURCES = sa.Table(
    "sources",
    META,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("watermark", sa.String(40)),  # the last timestamp accepted into the stream
    sa.Column("steps", sa.BigInteger, nullable=False, default=0),  # steps accepted (scored or pending)
    sa.Column("state", sa.Text, nullable=False),  # StreamState + the pending steps' times and values (JSON)
    sa.Column("model", sa.String(200)),
    sa.Column("version", sa.String(40)),  # the model version that scored its last steps
    sa.Column("open_incident", sa.BigInteger),  # id of the incident its last scored step belongs to
    sa.Column("updated", sa.String(40)),
)
FILES = sa.Table(
    "files",
    META,
    _id(),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("md5", sa.String(32), nullable=False),
    sa.Column("rows", sa.BigInteger),
    sa.Column("status", sa.String(20), nullable=False),  # scored | quarantined
    sa.Column("reason", sa.Text),
    sa.Column("run", sa.String(40)),
    sa.Column("at", sa.String(40)),
)
POINTS = sa.Table(
    "points",
    META,
    _id(),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("flag", sa.SmallInteger, nullable=False),
    sa.Column("version", sa.String(40), nullable=False),
    sa.Column("metrics", sa.LargeBinary),  # the step's metric values: float32, little-endian, in feature order
    sa.UniqueConstraint("source", "ts", name="one_score_per_step"),
)
INCIDENTS = sa.Table(
    "incidents",
    META,
    _id(),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("start", sa.String(40), nullable=False),
    sa.Column("end", sa.String(40), nullable=False),
    sa.Column("steps", sa.BigInteger, nullable=False),
    sa.Column("peak_score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("detector", sa.String(100), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.String(40), nullable=False),
    sa.Column("top_metrics", sa.Text, nullable=False),  # [[metric, share], ...] over its steps, JSON
    # 1: shown and ranked; 0: shorter than the model's incidents.min_steps so far (its steps are flagged points)
    sa.Column("raised", sa.SmallInteger, nullable=False, server_default="1"),
)
ALERTS = sa.Table(
    "alerts",
    META,
    _id(),
    sa.Column("incident", sa.BigInteger, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("detector", sa.String(100), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.String(40), nullable=False),
    sa.Column("top_metrics", sa.Text, nullable=False),  # [[metric, share], ...], JSON
)
RUNS = sa.Table(
    "runs",
    META,
    sa.Column("run", sa.String(40), primary_key=True),
    sa.Column("started", sa.String(40), nullable=False),
    sa.Column("finished", sa.String(40)),
    sa.Column("model", sa.String(200)),
    sa.Column("version", sa.String(40)),
    sa.Column("previous_version", sa.String(40)),  # the champion the store's last run used, where it changed
    sa.Column("counts", sa.Text),  # JSON: files scored / quarantined, steps, alerts, incidents
)
FEEDBACK = sa.Table(  # append-only: a changed verdict or outcome is a new row, the latest counts
    "feedback",
    META,
    _id(),
    sa.Column("incident", sa.BigInteger, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("verdict", sa.String(20), nullable=False),  # one of VERDICTS
    sa.Column("remedy", sa.String(100)),  # the remedy applied, where the operator acted
    sa.Column("resolved", sa.SmallInteger),  # 1 / 0 with a remedy
    sa.Column("minutes", sa.Float),  # to resolution (or spent, where it did not resolve)
    sa.Column("note", sa.Text),
    sa.Column("who", sa.String(100), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
)
AUDIT = sa.Table(  # who wrote what, when: written in the transaction of the row it describes
    "audit",
    META,
    _id(),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("who", sa.String(100), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("table_name", sa.String(40), nullable=False),
    sa.Column("row_id", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # JSON: what the row says
)
RANKINGS = sa.Table(  # the remedies proposed for an incident when it opened, and why
    "remedy_rankings",
    META,
    _id(),
    sa.Column("incident", sa.BigInteger, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("ranker", sa.String(40), nullable=False),
    sa.Column("ranker_version", sa.String(40)),  # its MLflow model version (null: none registered yet)
    sa.Column("context", sa.Text, nullable=False),  # JSON: what the ranker saw of the incident
    sa.Column("ranking", sa.Text, nullable=False),  # JSON: [{remedy, score, description, tried, resolved, like_this}]
)
NOTIFICATIONS = sa.Table(  # the outbox: each raised incident to each notifier, and how far its delivery got
    "notifications",
    META,
    _id(),
    sa.Column("incident", sa.BigInteger, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("sink", sa.String(20), nullable=False),  # one of tasks.notify.SINKS
    sa.Column("state", sa.String(20), nullable=False),  # one of NOTIFY_STATES
    sa.Column("queued", sa.String(40), nullable=False),
    sa.Column("sent", sa.String(40)),  # the last delivery that succeeded
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),  # failed deliveries since the last success
    sa.Column("last_error", sa.Text),
    sa.Column("labels", sa.Text, nullable=False),  # JSON: what identifies it to the notifier, fixed when queued
    sa.UniqueConstraint("incident", "sink", name="one_notification_per_sink"),
)
# pending: queued with the incident, not yet delivered; firing: delivered open (re-sent while it
# stays open); resolved: delivered closed, done
NOTIFY_STATES = ("pending", "firing", "resolved")
STORE_INFO = sa.Table(  # one row: which store this is, so a deleted or replaced store is noticed
    "store_info",
    META,
    sa.Column("slot", sa.SmallInteger, primary_key=True, autoincrement=False),  # always 1: one row, first writer's
    sa.Column("store_id", sa.String(40), nullable=False),
    sa.Column("created", sa.String(40), nullable=False),
)
sa.Index("points_by_source", POINTS.c.source, POINTS.c.id)
sa.Index("alerts_by_source", ALERTS.c.source, ALERTS.c.id)
sa.Index("incidents_by_source", INCIDENTS.c.source, INCIDENTS.c.id)
sa.Index("feedback_by_incident", FEEDBACK.c.incident, FEEDBACK.c.id)
sa.Index("rankings_by_incident", RANKINGS.c.incident, RANKINGS.c.id)
sa.Index("notifications_by_state", NOTIFICATIONS.c.state, NOTIFICATIONS.c.sink)

# the incidents still open: each source's last (its stream may still extend it)
OPEN_INCIDENTS = sa.select(SOURCES.c.open_incident).where(SOURCES.c.open_incident.is_not(None))

VERDICTS = ("confirmed", "false_alarm", "expected", "new_normal")  # expected: maintenance, planned work


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class StoreError(DataError):
    """A store Vigil needs (the alerts store, the MLflow registry) cannot be used as it is
    (missing, replaced, read-only, unreachable); the message is one paragraph naming the store
    and what to do. A `DataError`, so every command reports it as one."""


def store_problem(url: str, exc: Exception, name: str = "the alerts store", key: str = "scoring.store") -> StoreError:
    """A database error as one paragraph naming the store (``name``, the params ``key`` that
    names it) and what to do."""
    from .urls import shown_url

    first = first_line(exc)
    if "readonly" in first.replace("-", "").replace(" ", "").lower() or "permission" in first.lower():
        todo = f"make it writable by this user, or point {key} at a store this user may write"
    else:
        todo = f"check that it exists and is reachable ({key} in params.yaml names it)"
    return StoreError(f"{name} {shown_url(url)} failed: {first}; {todo}")


@contextmanager
def store_errors(url: str, name: str = "the alerts store", key: str = "scoring.store", also: tuple = ()):
    """Database errors inside (and those of the types in ``also``) as `StoreError` paragraphs
    (`store_problem`)."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.DatabaseError, sa.exc.InterfaceError, *also) as exc:
        raise store_problem(url, exc, name, key) from None


def _engine(url: str) -> sa.Engine:
    path = sqlite_file(url)
    if path is None:
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _wal(dbapi_conn, _record):
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    return engine


def store_exists(url: str) -> bool:
    """False for a SQLite store whose file is not there yet (nothing to read; not made here)."""
    path = sqlite_file(url)
    return path is None or path.is_file()


def open_store(url: str) -> sa.Engine:
    """The store at ``url`` (``sqlite:///path`` or any SQLAlchemy URL), its tables made if
    missing. SQLite waits up to 30 s for another writer (the web view reads meanwhile: WAL)."""
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = _engine(url)
    with store_errors(url):
        _create_tables(engine)
        _name_store(engine)
    return engine


def _create_tables(engine: sa.Engine, attempts: int = 5) -> None:
    """The store's tables where missing. Two processes making a new store at once both find a
    table missing and one of them fails to create it: that one looks again."""
    for attempt in range(attempts):
        try:
            META.create_all(engine)
            break
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
            if "already exists" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    _add_missing_columns(engine)


# Columns added after stores were made: name -> (table, DDL type and default). A store made
# before gets them on opening; every row it holds reads as the default.
ADDED_COLUMNS = {"raised": ("incidents", "SMALLINT NOT NULL DEFAULT 1")}


def _add_missing_columns(engine: sa.Engine) -> None:
    for column, (table, ddl) in ADDED_COLUMNS.items():
        have = {c["name"] for c in sa.inspect(engine).get_columns(table)}
        if column in have:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:  # another process added it first
            if column not in {c["name"] for c in sa.inspect(engine).get_columns(table)}:
                raise exc


def _name_store(engine: sa.Engine) -> str:
    """The store's id, given it where it has none yet; two processes doing this at once agree
    (one row, slot 1: the second insert fails and reads the first)."""
    with engine.connect() as conn:
        found = store_id(conn)
    if found is not None:
        return found
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(STORE_INFO).values(slot=1, store_id=uuid.uuid4().hex, created=now()))
    except sa.exc.IntegrityError:
        pass
    with engine.connect() as conn:
        return store_id(conn)


def store_id(conn) -> str | None:
    row = conn.execute(sa.select(STORE_INFO.c.store_id).where(STORE_INFO.c.slot == 1)).first()
    return row[0] if row else None


@dataclass
class OpenStore:
    """A store that must stay the one opened: each use checks that it was neither deleted nor
    replaced meanwhile (a SQLite file by its inode, any store by its id), and turns database
    errors into `StoreError` paragraphs."""

    url: str
    engine: sa.Engine
    store_id: str
    inode: tuple[int, int] | None

    def check(self) -> None:
        from .urls import shown_url

        path = sqlite_file(self.url)
        if path is not None:
            try:
                st = path.stat()
            except FileNotFoundError:
                raise StoreError(
                    f"the alerts store {path} was deleted while this service used it: restore it, or "
                    "restart the service on the store `vigil score` writes now"
                ) from None
            if (st.st_dev, st.st_ino) != self.inode:
                raise StoreError(
                    f"the alerts store {path} was replaced by another file while this service used it: "
                    "restart the service to read the new one"
                )
        with self._errors(), self.engine.connect() as conn:
            found = store_id(conn)
        if found != self.store_id:
            raise StoreError(
                f"the alerts store {shown_url(self.url)} is no longer the one this service opened "
                f"(store id {found}, opened {self.store_id}): restart the service to read it"
            )

    @contextmanager
    def connect(self):
        self.check()
        with self._errors(), self.engine.connect() as conn:
            yield conn

    def _errors(self):
        return store_errors(self.url)


def open_existing_store(url: str) -> OpenStore:
    """The store at ``url`` for a reader (the live page): it must exist already, made by
    `vigil score` (an empty store made here would be served as a blank page)."""
    from .urls import shown_url

    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise StoreError(
            f"no alerts store at {path}: `vigil score` makes it when it scores the landing folder "
            "(or set scoring.store to the store it writes)"
        )
    engine = _engine(url)
    with store_errors(url):
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(STORE_INFO.name) and not sa.inspect(conn).has_table(SOURCES.name):
                engine.dispose()
                raise StoreError(f"{shown_url(url)} holds no alerts store: run `vigil score` first")
        _create_tables(engine)  # a store made by an earlier Vigil gains the tables added since
        sid = _name_store(engine)
    st = path.stat() if path is not None else None
    return OpenStore(url, engine, sid, (st.st_dev, st.st_ino) if st else None)


def read_source(conn, source: str) -> dict | None:
    row = conn.execute(sa.select(SOURCES).where(SOURCES.c.source == source)).mappings().first()
    return dict(row) if row else None


def write_source(conn, source: str, row: dict, exists: bool) -> None:
    """The source's row: updated where it ``exists`` (as `read_source` found it), else inserted."""
    if exists:
        conn.execute(sa.update(SOURCES).where(SOURCES.c.source == source).values(**row))
    else:
        conn.execute(sa.insert(SOURCES).values(source=source, **row))


def file_outcome(conn, source: str, md5: str) -> str | None:
    """``scored`` or ``quarantined`` where this file's content was handled before, else None."""
    row = conn.execute(
        sa.select(FILES.c.status).where(FILES.c.source == source, FILES.c.md5 == md5).order_by(FILES.c.id.desc())
    ).first()
    return row[0] if row else None


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


VALUES = np.dtype("<f4")  # how a step's metric values are stored: 4 bytes each, any platform


def insert_points(conn, source, times, scores, threshold, flags, version, values) -> None:
    """Every scored step of a file in one statement. On SQLite straight through the driver's
    executemany (the per-row dictionaries of SQLAlchemy's insert cost more than the writing);
    elsewhere (PostgreSQL) through SQLAlchemy's insert, which batches rows into multi-row
    VALUES."""
    n = len(scores)
    blobs = [None] * n
    if values is not None:
        raw = np.ascontiguousarray(values, dtype=VALUES).tobytes()
        width = VALUES.itemsize * values.shape[1]
        blobs = [raw[i * width : (i + 1) * width] for i in range(n)]
    scores = np.asarray(scores, dtype=np.float64).tolist()
    flags = np.asarray(flags, dtype=np.int8).tolist()
    if conn.dialect.name == "sqlite":
        rows = zip([source] * n, times, scores, [threshold] * n, flags, [version] * n, blobs)
        conn.exec_driver_sql(
            "INSERT INTO points (source, ts, score, threshold, flag, version, metrics) VALUES (?, ?, ?, ?, ?, ?, ?)",
            list(rows),
        )
        return
    conn.execute(
        sa.insert(POINTS),
        [
            {
                "source": source,
                "ts": t,
                "score": sc,
                "threshold": threshold,
                "flag": f,
                "version": version,
                "metrics": b,
            }
            for t, sc, f, b in zip(times, scores, flags, blobs)
        ],
    )


# --- reading, for the live view ------------------------------------------------------------
def sources(conn) -> list[dict]:
    """Every source: name, watermark, steps, model version, and the metrics it is scored on."""
    out = []
    for row in conn.execute(sa.select(SOURCES).order_by(SOURCES.c.source)).mappings():
        state = json.loads(row["state"])
        out.append(
            {
                "source": row["source"],
                "watermark": row["watermark"],
                "steps": row["steps"],
                "model": row["model"],
                "version": row["version"],
                "features": state.get("features", []),
            }
        )
    return out


def fleet(conn) -> list[dict]:
    """Every source's state now, most urgent first: its last scored step (time, alert score,
    threshold, flag), the raised incident its last step belongs to (``open``: id, start, steps,
    severity), its raised incidents and those with no verdict yet. Urgency: an open incident
    first, by severity; then the last score over its threshold; a source with no scored step
    last."""
    last_ids = sa.select(sa.func.max(POINTS.c.id).label("id")).group_by(POINTS.c.source).subquery()
    last = {
        r["source"]: r for r in conn.execute(sa.select(POINTS).join(last_ids, POINTS.c.id == last_ids.c.id)).mappings()
    }
    raised = INCIDENTS.c.raised == 1
    counts = dict(
        conn.execute(sa.select(INCIDENTS.c.source, sa.func.count()).where(raised).group_by(INCIDENTS.c.source)).all()
    )
    reviewed = sa.select(FEEDBACK.c.incident).distinct()
    unreviewed = dict(conn.execute(
        sa.select(INCIDENTS.c.source, sa.func.count()).where(raised, INCIDENTS.c.id.not_in(reviewed))
        .group_by(INCIDENTS.c.source)).all())  # fmt: skip
    open_rows = {
        r["source"]: r
        for r in conn.execute(sa.select(INCIDENTS).where(raised, INCIDENTS.c.id.in_(OPEN_INCIDENTS))).mappings()
    }
    out = []
    for src in conn.execute(sa.select(SOURCES).order_by(SOURCES.c.source)).mappings():
        name, point, inc = src["source"], last.get(src["source"]), None
        row = open_rows.get(name)
        if row is not None and row["id"] == src["open_incident"]:
            inc = {"id": row["id"], "start": row["start"], "end": row["end"], "steps": row["steps"],
                   "peak_score": row["peak_score"], "threshold": row["threshold"], **severity(row)}  # fmt: skip
        out.append({
            "source": name, "model": src["model"], "version": src["version"], "watermark": src["watermark"],
            "updated": src["updated"], "steps": src["steps"],
            "last": None if point is None else {k: point[k] for k in ("ts", "score", "threshold", "flag")},
            "open": inc, "incidents": counts.get(name, 0), "unreviewed": unreviewed.get(name, 0),
        })  # fmt: skip

    def urgency(s: dict) -> tuple:
        if s["open"] is not None:
            sev = s["open"]["ratio"] if s["open"]["ratio"] is not None else s["open"]["margin"]
            return (0, -sev, s["source"])
        if s["last"] is None:
            return (3, 0.0, s["source"])
        score, t = s["last"]["score"], s["last"]["threshold"]
        level = score / t if t > 0 else score - t  # as `severity` measures it
        return (1 if score >= t else 2, -level, s["source"])

    return sorted(out, key=urgency)


def points_after(conn, source: str, after: int, limit: int) -> list[dict]:
    """The scored steps of ``source`` stored after row id ``after``, oldest first."""
    rows = conn.execute(
        sa.select(POINTS).where(POINTS.c.source == source, POINTS.c.id > after).order_by(POINTS.c.id).limit(limit)
    ).mappings()
    return [
        {**r, "metrics": np.frombuffer(r["metrics"], dtype=VALUES).tolist() if r["metrics"] else None} for r in rows
    ]


def incidents_of(conn, source: str) -> list[dict]:
    """The source's raised incidents, oldest first, each with its latest verdict (or None) and
    the remedies proposed for it (one shorter than the model's ``min_steps`` is not raised:
    its steps show as flagged points)."""
    rows = conn.execute(
        sa.select(INCIDENTS).where(INCIDENTS.c.source == source, INCIDENTS.c.raised == 1).order_by(INCIDENTS.c.id)
    )
    incidents = [{**r, "top_metrics": json.loads(r["top_metrics"]), **severity(r)} for r in rows.mappings()]
    ids = [i["id"] for i in incidents]
    verdicts = latest_verdicts(conn, ids)
    rankings = rankings_of(conn, ids)
    for inc in incidents:
        inc["verdict"] = verdicts.get(inc["id"])
        inc["remedies"] = rankings.get(inc["id"])
    return incidents


def severity(incident) -> dict:
    """How far over its threshold an incident peaked: ``margin`` in score units, ``ratio``
    where the threshold is positive (its duration is its ``steps``, first to last flagged)."""
    peak, threshold = float(incident["peak_score"]), float(incident["threshold"])
    return {"margin": peak - threshold, "ratio": peak / threshold if threshold > 0 else None}


def alerts_of(conn, incident: int) -> list[dict]:
    rows = conn.execute(sa.select(ALERTS).where(ALERTS.c.incident == incident).order_by(ALERTS.c.id))
    return [{**r, "top_metrics": json.loads(r["top_metrics"])} for r in rows.mappings()]


# --- feedback ----------------------------------------------------------------------------------
class FeedbackError(ValueError):
    """Feedback that cannot be stored as given; the message names the field and the value."""


def record_feedback(
    engine: sa.Engine,
    incident: int,
    verdict: str,
    who: str,
    *,
    remedy: str | None = None,
    resolved: bool | None = None,
    minutes: float | None = None,
    note: str | None = None,
    remedies: list[str] | None = None,
) -> int:
    """One verdict on an incident (and the remedy applied, with its outcome) with its audit
    row, in one transaction: both or neither. Nothing is updated: a changed verdict is a new
    row. ``remedies``: the catalogue's names, where ``remedy`` must be one. Returns its id."""
    if verdict not in VERDICTS:
        raise FeedbackError(f"verdict: {verdict!r} is not one of {list(VERDICTS)}")
    if not who or not who.strip():
        raise FeedbackError("who: give the operator's name (the audit row records it)")
    if len(who.strip()) > WHO_MAX or (remedy is not None and len(remedy) > REMEDY_MAX):
        raise FeedbackError(f"who, remedy: at most {WHO_MAX} characters each")
    if has_control(who):
        raise FeedbackError("who: a name without control characters")
    if note is not None and len(note) > NOTE_MAX:
        raise FeedbackError(f"note: at most {NOTE_MAX} characters ({len(note)} given)")
    if not 1 <= int(incident) <= MAX_ID:
        raise FeedbackError(f"incident: {incident} is not an incident id (1 to {MAX_ID})")
    if remedy is None and (resolved is not None or minutes is not None):
        raise FeedbackError("remedy: an outcome (resolved, minutes) needs the remedy it is the outcome of")
    if remedy is not None:
        if remedies is not None and remedy not in remedies:
            raise FeedbackError(f"remedy: {remedy!r} is not in the catalogue ({', '.join(remedies)})")
        if resolved is None:
            raise FeedbackError(f"resolved: say whether {remedy!r} resolved incident {incident} (yes or no)")
    if minutes is not None and not (0 <= minutes <= MINUTES_MAX):
        raise FeedbackError(f"minutes: {minutes!r} is not a number of minutes from 0 to {MINUTES_MAX:g}")
    row = {
        "incident": int(incident),
        "verdict": verdict,
        "remedy": remedy,
        "resolved": None if resolved is None else int(bool(resolved)),
        "minutes": None if minutes is None else float(minutes),
        "note": note,
        "who": who.strip(),
        "at": now(),
    }
    with engine.begin() as conn:
        if conn.execute(sa.select(INCIDENTS.c.id).where(INCIDENTS.c.id == int(incident))).first() is None:
            raise FeedbackError(f"incident: no incident {incident} in the alerts store")
        fid = int(conn.execute(sa.insert(FEEDBACK).values(**row)).inserted_primary_key[0])
        detail = {k: v for k, v in row.items() if k not in ("who", "at")}
        conn.execute(
            sa.insert(AUDIT).values(
                at=row["at"], who=row["who"], action="feedback", table_name="feedback", row_id=fid, detail=dumps(detail)
            )
        )
    return fid


def latest_verdicts(conn, incidents: list[int] | None = None) -> dict[int, dict]:
    """Incident -> its latest feedback row (the verdict in force), for ``incidents`` or all."""
    last = sa.select(sa.func.max(FEEDBACK.c.id)).group_by(FEEDBACK.c.incident)
    if incidents is not None:
        if not incidents:
            return {}
        last = last.where(FEEDBACK.c.incident.in_(incidents))
    rows = conn.execute(sa.select(FEEDBACK).where(FEEDBACK.c.id.in_(last))).mappings()
    return {r["incident"]: dict(r) for r in rows}


def latest_outcomes(conn) -> list[dict]:
    """The outcome in force of every (incident, remedy) the operators reported: the latest row
    of each pair, in (incident, remedy) order."""
    last = (
        sa.select(sa.func.max(FEEDBACK.c.id))
        .where(FEEDBACK.c.remedy.is_not(None))
        .group_by(FEEDBACK.c.incident, FEEDBACK.c.remedy)
    )
    rows = conn.execute(
        sa.select(FEEDBACK).where(FEEDBACK.c.id.in_(last)).order_by(FEEDBACK.c.incident, FEEDBACK.c.remedy)
    ).mappings()
    return [dict(r) for r in rows]


def feedback_of(conn, incident: int) -> list[dict]:
    """Every feedback row of an incident, oldest first (the history a changed verdict leaves)."""
    rows = conn.execute(sa.select(FEEDBACK).where(FEEDBACK.c.incident == incident).order_by(FEEDBACK.c.id))
    return [dict(r) for r in rows.mappings()]


def rankings_of(conn, incidents: list[int]) -> dict[int, dict]:
    """Incident -> the latest remedy ranking stored for it."""
    if not incidents:
        return {}
    last = sa.select(sa.func.max(RANKINGS.c.id)).where(RANKINGS.c.incident.in_(incidents)).group_by(RANKINGS.c.incident)
    rows = conn.execute(sa.select(RANKINGS).where(RANKINGS.c.id.in_(last))).mappings()
    return {
        r["incident"]: {
            "ranker": r["ranker"],
            "ranker_version": r["ranker_version"],
            "context": json.loads(r["context"]),
            "ranking": json.loads(r["ranking"]),
        }
        for r in rows
    }


# --- the one writer: everything Vigil stores here is written by the functions below ------------

TOP_ALERT = 3  # metrics an alert names
TOP_INCIDENT = 5  # metrics an incident names


class Sink(Protocol):
    """What is told of the incidents a batch of scored steps raised, inside the transaction
    that wrote them, so that what it stores commits or rolls back with them. The remedy ranker
    is one (`tasks.remedies.Advisor`: it ranks each new incident's remedies); scoring
    (`tasks.scoring.score_file`) and the stream's predictor (`tasks.slo.PredictionStore`)
    take a list of them, so a notifier is one more sink, not an edit of their transactions."""

    def incidents_raised(self, conn: sa.Connection, incidents: list[int], kind: str) -> None: ...


def _ranked(names: list[str], shares: np.ndarray, k: int) -> list[list]:
    order = np.argsort(-shares)[:k]
    return [[names[i], round(float(shares[i]), 4)] for i in order]


def _merge_shares(old: list[list], old_steps: int, names: list[str], new: np.ndarray) -> dict[str, float]:
    """An incident's mean shares after more steps: the kept top metrics weighted by their steps
    plus the new steps' shares (metrics outside the kept top count as 0 before)."""
    total = old_steps + len(new)
    merged = {n: float(new[:, i].sum()) for i, n in enumerate(names)}
    for name, share in old:
        merged[name] = merged.get(name, 0.0) + share * old_steps
    return {k: v / total for k, v in merged.items()}


@dataclass(frozen=True)
class Scorer:
    """What scored a source's steps, as the store records it on points, incidents and alerts,
    and the alert rule that turns its scores into flags and incidents."""

    model: str
    version: str
    detector: str
    rule: AlertRule
    names: list[str]  # the metrics its contributions are over


def write_steps(conn, source, scorer: Scorer, step_times, scores, contributions, values, open_incident, carried):
    """Final steps of ``source`` into the store, inside the caller's transaction: a point each
    (its alert score: the raw score smoothed as the model's rule says), an alert for each step
    at or over the threshold, and incidents by the rule (flagged steps fewer than
    ``merge_gap`` apart are one; one shorter than ``min_steps`` is stored but not raised). The
    first flagged steps may continue ``open_incident``, the incident the source's last batch
    left open; ``carried``: the rule's `AlertCarry` from that batch (JSON, or None).
    Returns the open incident and the carry after these steps, the incidents raised by them
    (new, or grown to ``min_steps`` now) and the alerts written. The caller tells its sinks of
    the incidents raised, in the same transaction."""
    rule, names = scorer.rule, scorer.names
    carry = AlertCarry.from_json(carried)
    if open_incident is None:
        carry.quiet, carry.span = None, 0
    alert, flags, groups, carry = carry.advance(np.asarray(scores, dtype=np.float64), rule)
    n = len(alert)
    if n:
        insert_points(conn, source, step_times, alert, rule.threshold, flags, scorer.version, values)
    raised_now, alerts = [], 0
    inc_id = None
    for group in groups:
        idx = group.flagged
        shares = contributions[idx]
        peak = float(alert[idx].max())
        raised = group.span >= rule.min_steps
        if group.continued:  # the incident the last batch left open goes on
            inc_id = open_incident
            old = conn.execute(sa.select(INCIDENTS).where(INCIDENTS.c.id == inc_id)).mappings().one()
            n_old = conn.execute(
                sa.select(sa.func.count()).select_from(ALERTS).where(ALERTS.c.incident == inc_id)
            ).scalar_one()
            merged = _merge_shares(json.loads(old["top_metrics"]), n_old, names, shares)
            conn.execute(
                sa.update(INCIDENTS)
                .where(INCIDENTS.c.id == inc_id)
                .values(
                    end=step_times[int(idx[-1])],
                    steps=group.span,
                    peak_score=max(old["peak_score"], peak),
                    top_metrics=dumps(_ranked(list(merged), np.array(list(merged.values())), TOP_INCIDENT)),
                    raised=int(raised),
                )
            )
            if raised and not old["raised"]:
                raised_now.append(int(inc_id))
        else:
            inc_id = conn.execute(
                sa.insert(INCIDENTS).values(
                    source=source,
                    start=step_times[int(idx[0])],
                    end=step_times[int(idx[-1])],
                    steps=group.span,
                    peak_score=peak,
                    threshold=rule.threshold,
                    detector=scorer.detector,
                    model=scorer.model,
                    version=scorer.version,
                    top_metrics=dumps(_ranked(names, shares.mean(axis=0), TOP_INCIDENT)),
                    raised=int(raised),
                )
            ).inserted_primary_key[0]
            if raised:
                raised_now.append(int(inc_id))
        conn.execute(
            sa.insert(ALERTS),
            [
                {
                    "incident": inc_id,
                    "source": source,
                    "ts": step_times[i],
                    "score": float(alert[i]),
                    "threshold": rule.threshold,
                    "detector": scorer.detector,
                    "model": scorer.model,
                    "version": scorer.version,
                    "top_metrics": dumps(_ranked(names, contributions[i], TOP_ALERT)),
                }
                for i in idx.tolist()
            ],
        )
        alerts += len(idx)
    if carry.quiet is None:
        open_incident = None
    elif groups:
        open_incident = inc_id
    return open_incident, carry.to_json(), raised_now, alerts


def write_rankings(conn: sa.Connection, rows: list[dict]) -> None:
    """Rankings of incidents' remedies (incident, at, ranker, ranker_version, context, ranking)."""
    if rows:
        conn.execute(sa.insert(RANKINGS), rows)


def record_file(
    conn: sa.Connection, source: str, name: str, md5: str, rows: int, status: str, run: str, reason: str | None = None
) -> None:
    """What became of one landed file of ``source`` in scoring run ``run``."""
    conn.execute(
        sa.insert(FILES).values(
            source=source, name=name, md5=md5, rows=rows, status=status, reason=reason, run=run, at=now()
        )
    )


def start_run(conn: sa.Connection, run: str, model: str, version: str) -> str | None:
    """A scoring run begins with ``model`` at ``version``; returns the version the model's last
    run scored with where it was another (the champion changed), else None."""
    last = conn.execute(
        sa.select(RUNS.c.version).where(RUNS.c.model == model).order_by(RUNS.c.started.desc()).limit(1)
    ).first()
    previous = last[0] if last and last[0] != version else None
    conn.execute(
        sa.insert(RUNS).values(run=run, started=now(), model=model, version=version, previous_version=previous)
    )
    return previous


def finish_run(conn: sa.Connection, run: str, counts: dict) -> None:
    conn.execute(sa.update(RUNS).where(RUNS.c.run == run).values(finished=now(), counts=dumps(counts)))


# --- notifications (the outbox `tasks.notify` delivers) ------------------------------------------


def queue_notifications(conn: sa.Connection, labelled: dict[int, dict], sinks: list[str]) -> None:
    """Each raised incident (id -> its labels) queued for each notifier, in the transaction
    that raised it: an incident stored is an incident delivered, however the delivery fares."""
    rows = [
        {"incident": i, "sink": s, "state": "pending", "queued": now(), "labels": dumps(labels)}
        for i, labels in labelled.items()
        for s in sinks
    ]
    if rows:
        conn.execute(sa.insert(NOTIFICATIONS), rows)


def undelivered(conn: sa.Connection, sink: str) -> list[dict]:
    """The notifications of ``sink`` not yet delivered as resolved, with their incident and
    whether it is still open (the last incident of its source's stream)."""
    query = (
        sa.select(
            NOTIFICATIONS.c.id.label("notification"),
            NOTIFICATIONS.c.state,
            NOTIFICATIONS.c.attempts,
            NOTIFICATIONS.c.labels,
            INCIDENTS,
            INCIDENTS.c.id.in_(OPEN_INCIDENTS).label("open"),
        )
        .join(INCIDENTS, INCIDENTS.c.id == NOTIFICATIONS.c.incident)
        .where(NOTIFICATIONS.c.sink == sink, NOTIFICATIONS.c.state != "resolved")
        .order_by(NOTIFICATIONS.c.id)
    )
    return [
        {**r, "top_metrics": json.loads(r["top_metrics"]), "labels": json.loads(r["labels"]), "open": bool(r["open"])}
        for r in conn.execute(query).mappings()
    ]


def record_delivery(conn: sa.Connection, notification: int, state: str | None, error: str | None = None) -> None:
    """A delivery's outcome: delivered as ``state`` (firing, resolved), or failed with
    ``error`` (the state stays, to be sent again)."""
    if error is None:
        assert state in NOTIFY_STATES, state
        values = {"state": state, "sent": now(), "attempts": 0, "last_error": None}
    else:
        values = {"attempts": NOTIFICATIONS.c.attempts + 1, "last_error": error}
    conn.execute(sa.update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == notification).values(**values))
