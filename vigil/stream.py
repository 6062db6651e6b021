"""`vigil stream ...`: real-time prediction of SLO violations over Kafka (README: Streaming): the
commands that run the long-running services of `vigil.services` as processes, and the demo.

- ``record``: simulate and aggregate the train, normal and validation runs into
  ``stream.data.folder`` (the ``slo-record`` flow; DVC stage ``slo_record``);
- ``train``: fit every predictor on them, thresholds on the validation run, register each in
  MLflow (the ``slo-train`` flow; DVC stage ``slo_train``);
- ``aggregate`` (a service): ``stats`` + ``responsetime`` -> per-second records on ``aggregate``;
- ``predict`` (a service): ``aggregate`` -> ``predictions`` with the registered predictors;
- ``produce``: a simulated workload sent to ``stats`` and ``responsetime``;
- ``broker``: a Tansu broker on 127.0.0.1 until Ctrl-C;
- ``demo``: all of it on a fresh broker with a run no predictor saw, then the evaluation table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from tasks.urls import storage_url
from vigil.config import load_config
from vigil.entry import run_entry
from vigil.services import AGGREGATE_GROUP, PREDICT_GROUP


def _stop_on_signals():
    from tasks.kafka import StopSignal

    stop = StopSignal()
    signal.signal(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, stop.set)
    return stop


def _say_ready(service: str):
    """The line a parent waits for (`wait_ready`): the service's consumer is assigned."""
    return lambda: print(f"vigil stream {service}: ready", file=sys.stderr, flush=True)


def aggregate(args) -> str:
    from tasks.kafka import ensure_topics
    from vigil.services import run_aggregator

    st = load_config(args.params).stream
    bootstrap = st.bootstrap(args.bootstrap)
    ensure_topics(bootstrap, {st.topics.stats: st.partitions, st.topics.responsetime: st.partitions})
    stop = _stop_on_signals()
    c = run_aggregator(
        bootstrap,
        st.topics,
        st.rt_limit,
        st.grace,
        args.group,
        args.idle_exit,
        stop,
        ready=_say_ready("aggregate"),
        max_skew=st.max_skew,
    )
    return (
        f"aggregated {c['messages']} message(s) into {c['records']} record(s) on {st.topics.aggregate}; "
        f"{c['late']} late, {c['bad']} unreadable, {c['ahead']} stamped too far ahead (those two set aside on "
        f"{st.topics.dead_letter}); resumed after second {c['resumed_after']}"
    )


def predict(args) -> str:
    from vigil.services import predict_service

    cfg = load_config(args.params)
    st = cfg.stream
    c = predict_service(
        cfg,
        Path.cwd(),
        args.bootstrap,
        args.models,
        not args.no_store,
        args.group,
        args.idle_exit,
        _stop_on_signals(),
        _say_ready("predict"),
    )
    versions = ", ".join(f"{n} v{v}" for n, v in c["versions"].items())
    stored = (
        f"; {c['stored']} of {c['store_model']}'s in the alerts store as {c['store_source']}"
        if c["store_source"]
        else ""
    )
    return (
        f"predicted {c['records']} record(s) with {versions}: "
        f"{c['predictions']} prediction(s) on {st.topics.predictions}{stored}; {c['bad']} record(s) set aside on "
        f"{st.topics.dead_letter}"
    )


def produce(args) -> str:
    from components.slo.simulator import interleave, simulate_workload
    from tasks.kafka import ensure_topics, produce_messages

    st = load_config(args.params).stream
    bootstrap = st.bootstrap(args.bootstrap)
    ensure_topics(bootstrap, {st.topics.stats: st.partitions, st.topics.responsetime: st.partitions})
    w = simulate_workload(args.seed if args.seed is not None else st.demo_seed, **st.simulator.model_dump())
    n = produce_messages(
        bootstrap, interleave(w), {"stats": st.topics.stats, "responsetime": st.topics.responsetime}, args.speed
    )
    return (
        f"produced {n} message(s): {len(w.stats)} to {st.topics.stats}, {len(w.responses)} to {st.topics.responsetime}"
    )


def broker(args) -> str:
    from tasks.kafka import broker as start_broker

    with start_broker(args.port) as bootstrap:
        print(f"vigil stream broker: Tansu on {bootstrap} (in memory) until Ctrl-C", file=sys.stderr, flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return "broker stopped"


def wait_ready(proc: subprocess.Popen, what: str) -> subprocess.Popen:
    """Read a started service's stderr (text) until its "ready" line; then keep reading it in a
    thread, the last lines in ``proc.stderr_tail``, so a chatty service never blocks on a full
    pipe. Raises with what it printed if it exits first."""
    seen: deque = deque(maxlen=50)
    for line in proc.stderr:
        if line.startswith("vigil stream ") and line.rstrip().endswith(": ready"):
            proc.stderr_tail = seen
            threading.Thread(target=seen.extend, args=(proc.stderr,), daemon=True).start()
            return proc
        seen.append(line)
    proc.wait()
    raise RuntimeError(f"{what} did not start (exit {proc.returncode}): {''.join(seen)[-2000:]}")


def _child(command: list[str], params: str, bootstrap: str, idle_exit: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vigil",
            "stream",
            *command[:1],
            "--params",
            params,
            "--bootstrap",
            bootstrap,
            *command[1:],
        ]
        + ["--idle-exit", str(idle_exit)],
        stderr=subprocess.PIPE,
        text=True,
    )
    return wait_ready(proc, f"vigil stream {command[0]}")


def demo(args) -> str:
    """Broker, simulator, aggregator and predictor on a run no predictor was fitted on."""

    from components.slo.evaluation import evaluate_demo
    from components.slo.simulator import interleave, simulate_workload
    from flows.stream import slo_record_flow, slo_train_flow
    from tasks.kafka import broker as start_broker
    from tasks.kafka import ensure_topics, produce_messages, read_topic
    from tasks.slo import DEMO_REPORT, champion_predictor, leak_only_check, load_models
    from vigil.stages.slo_train import lead_table

    cfg = load_config(args.params)
    st = cfg.stream
    root = Path.cwd()
    tracking = storage_url(cfg.registry.tracking_uri, root)
    if champion_predictor(tracking, st.model_name) is None:
        print("vigil stream demo: no registered predictor yet: recording runs and training first", file=sys.stderr)
        if not (root / st.data.folder / "runs.json").is_file():
            slo_record_flow(cfg)
        slo_train_flow(cfg)
    w = simulate_workload(st.demo_seed, **st.simulator.model_dump())
    messages = interleave(w)
    with start_broker() if not st.bootstrap_servers else _given(st.bootstrap_servers) as bootstrap:
        ensure_topics(
            bootstrap,
            {st.topics.stats: st.partitions, st.topics.responsetime: st.partitions, st.topics.aggregate: 1},
        )
        ensure_topics(bootstrap, {st.topics.predictions: 1})
        children = [
            # the demo's simulated service stays out of the operators' alerts store
            _child(["predict", "--no-store"], args.params, bootstrap, args.idle_exit),
            _child(["aggregate"], args.params, bootstrap, args.idle_exit),
        ]
        t0 = time.monotonic()
        produce_messages(
            bootstrap, messages, {"stats": st.topics.stats, "responsetime": st.topics.responsetime}, args.speed
        )
        for c in children:
            c.wait()
        wall = time.monotonic() - t0
        records = read_topic(bootstrap, st.topics.aggregate)
        predictions = read_topic(bootstrap, st.topics.predictions)
    rows = evaluate_demo(records, predictions, w.injections, st.lead, st.early)
    leaks_alone = leak_only_check(load_models(tracking, st.model_name, list(st.predictors)), st)
    result = {
        "split": f"demo run, seed {st.demo_seed}: never trained on, thresholds from the validation run",
        "seconds": len(records),
        "messages": len(messages),
        "wall_seconds": wall,
        "injections": {"cpu_hog": st.simulator.n_cpu_hogs, "memory_leak": st.simulator.n_memory_leaks},
        "lead": st.lead,
        "predictors": rows,
        "memory_leaks_alone": leaks_alone,
    }
    out = root / DEMO_REPORT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    latency = ", ".join(
        f"{m} p50 {r['latency_ms_p50']:.1f} / p99 {r['latency_ms_p99']:.1f} ms"
        for m, r in rows.items()
        if "latency_ms_p50" in r
    )
    return (
        f"demo: {len(messages)} messages over {len(records)} simulated seconds "
        f"({st.simulator.n_cpu_hogs} CPU hogs, {st.simulator.n_memory_leaks} memory leaks) in {wall:.1f} s; "
        f"lead window {st.lead} s; figures on the demo run (seed {st.demo_seed}), thresholds from the validation run\n"
        f"{lead_table(rows, st.lead, st.early)}\n"
        f"aggregate -> prediction latency: {latency}\n"
        f"{leaks_alone['run']}:\n{leak_table(leaks_alone['predictors'])}\n"
        f"written: {DEMO_REPORT}"
    )


def leak_table(rows: dict) -> str:
    lines = ["| predictor | leaks with any prediction | predicted seconds | false alarms / h |", "|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['leaks_with_any_prediction']}/{r['leaks']} | {r['predicted_seconds']} | "
            f"{r['false_alarms_per_hour']:.1f} |"
        )
    return "\n".join(lines)


class _given:
    """A Kafka named in params: used as it is, nothing started."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    def __enter__(self):
        return self.bootstrap

    def __exit__(self, *exc):
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stream_command", required=True)

    def cmd(name, help_, func, bootstrap=True, group=None):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--params", default="params.yaml")
        if bootstrap:
            p.add_argument("--bootstrap", help="HOST:PORT of the Kafka (default: stream.bootstrap_servers)")
        if group:
            p.add_argument("--group", default=group, help=f"consumer group (default: {group})")
            p.add_argument("--idle-exit", type=float, help="exit after this many seconds with no message")
        p.set_defaults(stream_func=func)
        return p

    cmd("record", "simulate and aggregate the runs the predictors learn from (stream.data)", None, False)
    cmd("train", "fit, threshold on the validation run, register in MLflow", None, False)
    cmd("aggregate", "stats + responsetime -> per-second records on aggregate", aggregate, group=AGGREGATE_GROUP)
    p = cmd("predict", "aggregate -> predictions with the registered predictors", predict, group=PREDICT_GROUP)
    p.add_argument("--models", nargs="+", help="predictor aliases (default: every one in stream.predictors)")
    p.add_argument("--no-store", action="store_true", help="predictions to the topic only, not the alerts store")
    p = cmd("produce", "send a simulated workload to stats and responsetime", produce)
    p.add_argument("--seed", type=int, help="default: stream.demo_seed")
    p.add_argument("--speed", type=float, help="simulated seconds per second (default: as fast as possible)")
    p = cmd("broker", "a Tansu broker on 127.0.0.1 (in memory) until Ctrl-C", broker, False)
    p.add_argument("--port", type=int, default=9092)
    p = cmd("demo", "broker, simulator, aggregator, predictor on an unseen run; prints the evaluation", demo, False)
    p.add_argument("--speed", type=float, default=200.0, help="simulated seconds per second (default: 200)")
    p.add_argument("--idle-exit", type=float, default=5.0, help="seconds the services wait after the last message")


def run(args: argparse.Namespace) -> int:
    if args.stream_command in ("record", "train"):  # the DVC stages slo_record and slo_train
        return importlib.import_module(f"vigil.stages.slo_{args.stream_command}").run(args)
    return run_entry(lambda: args.stream_func(args), runs_flows=False)
