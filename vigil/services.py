"""The long-running services of SLO prediction (README: Streaming): the aggregator
(``stats`` + ``responsetime`` -> per-second records on ``aggregate``) and the predictor
(``aggregate`` -> ``predictions``, the champion's into the alerts store). `vigil stream
aggregate|predict` runs them as processes; the ``slo-predict`` flow runs the predictor as a
Prefect run. Both loops read and write Kafka through `tasks.kafka`, set aside on the
dead-letter topic what they cannot use, and end on `StopSignal` or after ``idle_exit`` seconds
without a message.

Exactly once, without transactions: the aggregator's records are a function of the input
sequence (`components.slo.aggregation`), so after a restart it takes its state from the last
record on ``aggregate`` and reads the inputs again from the offsets its consumer group
committed, which are the low-water marks of a batch whose records were flushed before the
commit. Records flushed after the last commit are found on the topic; inputs read after it are
read again and folded in once, or dropped as already emitted. The predictor does the same with
``predictions``: it commits the offset of the oldest record its window still needs.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from confluent_kafka import TopicPartition

from components.slo.aggregation import RECORD_FIELDS, Aggregator
from components.slo.predictors import SIGNALS, signal_matrix
from tasks import kafka

if TYPE_CHECKING:  # annotations only: the aggregator need not import MLflow's side
    from tasks.slo import PredictionStore, RegisteredPredictor
    from vigil.config import Config

TOP_SIGNALS = 3  # the signals a prediction names as its causes
AGGREGATE_GROUP = "vigil-aggregate"  # the consumer groups of the two services
PREDICT_GROUP = "vigil-predict"
FIRST_MESSAGE_WAIT = 60.0  # seconds an idle-exiting service waits for its first message


def _idle_too_long(idle_exit: float | None, idle_since: float, started: bool) -> bool:
    """``idle_exit`` seconds without a message once messages have come; before the first, at
    least FIRST_MESSAGE_WAIT, so a predictor started before its aggregator (which must read
    1 + grace seconds of input before its first record) does not take that wait for the end."""
    if idle_exit is None:
        return False
    limit = idle_exit if started else max(idle_exit, FIRST_MESSAGE_WAIT)
    return time.monotonic() - idle_since > limit


def _read_input(m, topics) -> tuple[float, tuple]:
    """An input message's event time and values, checked: (ts, (rt,)) or (ts, (cpu, mem))."""
    v = kafka.json_object(m)
    ts = kafka.finite(v, "ts", minimum=0)
    if m.topic() == topics.responsetime:
        return ts, (kafka.finite(v, "rt", minimum=0),)
    return ts, (kafka.finite(v, "cpu"), kafka.finite(v, "mem"))


def run_aggregator(
    bootstrap: str,
    topics,
    rt_limit: float,
    grace: float,
    group: str = "vigil-aggregate",
    idle_exit: float | None = None,
    stop: kafka.StopSignal | None = None,
    batch: int = 5000,
    ready: Callable[[], None] | None = None,
    max_skew: float | None = None,
) -> dict:
    """Consume ``stats`` and ``responsetime``, produce per-second records to ``aggregate`` until
    stopped (or ``idle_exit`` seconds pass with no message). ``ready`` is called once the inputs
    are assigned. A message stamped more than ``max_skew`` seconds ahead of the stream or the
    wall clock, and one that cannot be read, goes to the dead-letter topic. Returns counts."""
    stop = stop or kafka.StopSignal()
    kafka.ensure_topics(bootstrap, {topics.aggregate: 1, topics.dead_letter: 1})
    last = kafka.tail(bootstrap, topics.aggregate, 1)
    consumer = kafka.new_consumer(bootstrap, group)
    producer = kafka.new_producer(bootstrap)
    assigned = kafka.assign_from_committed(consumer, [topics.stats, topics.responsetime])
    agg = Aggregator.resume(rt_limit, grace, assigned, last[0] if last else None, max_skew)
    already_aside = kafka.dead_lettered(bootstrap, topics.dead_letter)
    counts = {"messages": 0, "records": 0, "bad": 0, "ahead": 0, "resumed_after": agg.last_emitted}
    quiet = kafka.Quiet()
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
                except kafka.BadMessage as exc:
                    counts["bad"] += 1
                    agg.set_aside(key, m.offset())
                    reason = str(exc)
                if reason is None and agg.too_far_ahead(ts, time.time()):
                    agg.set_aside(key, m.offset(), ahead=True)
                    reason = f"ts {ts} is more than {max_skew} s ahead of the stream or the clock"
                if reason is not None:
                    kafka.set_aside(producer, topics.dead_letter, m, reason, already_aside, quiet, "aggregate")
                    aside += 1
                    continue
                if m.topic() == topics.responsetime:
                    out += agg.add_response(ts, values[0], key, m.offset())
                else:
                    out += agg.add_stats(ts, values[0], values[1], key, m.offset())
            if out or aside:
                for r in out:
                    kafka.send(producer, topics.aggregate, kafka.dumps(r), 0)
                if not kafka.flush(producer, stop):  # the records are on the broker before the inputs are committed
                    break
                counts["records"] += len(out)
                offsets = [TopicPartition(t, p, o) for (t, p), o in agg.low_water().items()]
                kafka.commit(consumer, offsets, quiet)
    finally:
        consumer.close()
    counts["late"] = agg.late
    counts["ahead"] = agg.ahead
    return counts


def _read_record(m, last: np.ndarray, previous: int | None, max_skew: float | None) -> tuple[int, np.ndarray]:
    """An ``aggregate`` record, checked: its second and its signals' row."""
    rec = kafka.json_object(m)
    second = rec.get("second")
    if isinstance(second, bool) or not isinstance(second, int) or second < 0:
        raise kafka.BadMessage("second: not a whole number of seconds >= 0")
    if previous is not None and second <= previous:
        raise kafka.BadMessage(f"second {second} does not follow the last one read ({previous})")
    if max_skew is not None and (
        (previous is not None and second > previous + max_skew) or second > time.time() + max_skew
    ):
        raise kafka.BadMessage(f"second {second} is more than {max_skew} s ahead of the stream or the clock")
    missing = [k for k in RECORD_FIELDS if k not in rec]
    if missing:
        raise kafka.BadMessage(f"not a record of the aggregator: no {', '.join(missing)}")
    for key in ("rt_mean", "rt_max", "cpu", "mem"):
        if rec.get(key) is not None:
            kafka.finite(rec, key)
    try:
        row = signal_matrix([rec], last)[0]
    except (KeyError, TypeError, ValueError) as exc:
        raise kafka.BadMessage(f"not a record of the aggregator: {exc!r}") from None
    return second, row


def run_predictor(
    bootstrap: str,
    topics,
    models: list[RegisteredPredictor],
    lead: int,
    group: str = "vigil-predict",
    idle_exit: float | None = None,
    stop: kafka.StopSignal | None = None,
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
    stop = stop or kafka.StopSignal()
    kafka.ensure_topics(bootstrap, {topics.aggregate: 1, topics.predictions: 1, topics.dead_letter: 1})
    done: dict[str, float] = {}  # model -> last second on the predictions topic
    for p in kafka.tail(bootstrap, topics.predictions, 50 * len(models)):
        done[p["model"]] = max(done.get(p["model"], -math.inf), p["second"])
    stored = store.last_second() if store else None
    stored = -math.inf if stored is None else stored
    width = max(m[2].history() for m in models)
    window: deque = deque(maxlen=width)  # (offset, row)
    last = np.zeros(len(SIGNALS))
    consumer = kafka.new_consumer(bootstrap, group)
    producer = kafka.new_producer(bootstrap)
    kafka.assign_from_committed(consumer, [topics.aggregate])
    counts = {"records": 0, "predictions": 0, "stored": 0, "bad": 0}
    quiet = kafka.Quiet()
    already_aside = kafka.dead_lettered(bootstrap, topics.dead_letter)
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
                except kafka.BadMessage as exc:
                    counts["bad"] += 1
                    kafka.set_aside(producer, topics.dead_letter, m, str(exc), already_aside, quiet, "predict")
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
                    kafka.send(producer, topics.predictions, kafka.dumps(pred), 0)
                    sent += 1
            if sent or aside:
                if not kafka.flush(producer, stop):
                    break
                counts["predictions"] += sent
            if to_store:
                secs, scores, contribs, rows = zip(*to_store)
                store.write(list(secs), np.array(scores), np.array(contribs), np.array(rows))
                counts["stored"] += len(secs)
            if window:  # the oldest record the window still needs is read again after a restart
                kafka.commit(consumer, [TopicPartition(topics.aggregate, 0, window[0][0])], quiet)
    finally:
        consumer.close()
    return counts


def predict_service(
    cfg: Config,
    root: Path,
    bootstrap: str | None = None,
    aliases: list[str] | None = None,
    keep: bool = True,
    group: str = PREDICT_GROUP,
    idle_exit: float | None = None,
    stop: kafka.StopSignal | None = None,
    ready: Callable[[], None] | None = None,
) -> dict:
    """The predictor service as `vigil stream predict` and the ``slo-predict`` flow run it: the
    registered predictors ``aliases`` (default: every one in ``stream.predictors``) on the
    Kafka at ``bootstrap`` (default: the config's), the champion's predictions kept in the
    alerts store (``stream.store``, else ``scoring.store``) unless not ``keep``, each new
    incident's remedies ranked. Returns `run_predictor`'s counts, the versions that predicted
    and the store's source."""
    from tasks.notify import notifiers
    from tasks.remedies import remedy_settings
    from tasks.slo import load_models, prediction_store
    from tasks.urls import storage_url

    st = cfg.stream
    tracking = storage_url(cfg.registry.tracking_uri, root)
    models = load_models(tracking, st.model_name, aliases or list(st.predictors))
    store, store_model = None, None
    if keep:
        store_url = storage_url(st.store or cfg.scoring.store, root)
        remedies = remedy_settings(cfg.remedies, root)
        store, store_model = prediction_store(
            models, st, tracking, store_url, remedies, root / cfg.registry.artifact_root, notifiers(cfg.notify)
        )
    counts = run_predictor(
        st.bootstrap(bootstrap),
        st.topics,
        models,
        st.lead,
        group,
        idle_exit,
        stop,
        store,
        store_model,
        ready=ready,
        max_skew=st.max_skew,
    )
    return {
        **counts,
        "versions": {name: version for name, version, _, _ in models},
        "store_model": store_model,
        "store_source": store.source if store else None,
    }
