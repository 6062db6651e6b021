"""Real-time prediction of SLO violations over Kafka (`vigil stream ...`, README: Streaming).

- ``record``: simulate and aggregate the train, normal and validation runs into
  ``stream.data.folder`` (DVC stage ``slo_record``);
- ``train``: fit every predictor on them, thresholds on the validation run, register each in
  MLflow (alias = its name, the best ``@champion``; DVC stage ``slo_train``);
- ``aggregate``: ``stats`` + ``responsetime`` -> per-second records on ``aggregate``;
- ``predict``: ``aggregate`` -> ``predictions`` with the registered predictors;
- ``produce``: a simulated workload sent to ``stats`` and ``responsetime``;
- ``broker``: a Tansu broker on 127.0.0.1 until Ctrl-C;
- ``demo``: all of it on a fresh broker with a run no predictor saw, then the evaluation table.

Run alone: ``python -m flows.stream COMMAND [--params FILE]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from prefect import flow

from .config import Config, ConfigError, load_config
from .entry import run_entry
from .workspace import Workspace

AGGREGATE_GROUP = "vigil-aggregate"
PREDICT_GROUP = "vigil-predict"
REPORT = Path("reports/slo_validation.json")
DEMO_REPORT = Path("reports/slo_demo.json")


def check_predictors(cfg: Config) -> None:
    """``stream.predictors`` against the registry of predictors and their parameters."""
    from components.slo.predictors import PREDICTORS

    problems = []
    for name, params in cfg.stream.predictors.items():
        if name not in PREDICTORS:
            problems.append(f"  stream.predictors.{name}: unknown predictor; registered: {sorted(PREDICTORS)}")
            continue
        for key in sorted(set(params or {}) - set(PREDICTORS[name].param_names())):
            problems.append(
                f"  stream.predictors.{name}.{key}: unknown parameter; known: {list(PREDICTORS[name].param_names())}"
            )
    if problems:
        raise ConfigError("\n".join([f"{len(problems)} problem(s) in stream.predictors", *problems]))


def _tracking(cfg: Config, root: Path) -> str:
    from tasks.urls import storage_url

    return storage_url(cfg.registry.tracking_uri, root)


@flow(name="slo-record")
def slo_record_flow(params: str = "params.yaml", repo_root: str = ".") -> dict:
    from tasks.slo import record_runs

    ws = Workspace.at(repo_root)
    cfg = load_config(ws.root / params)
    runs = record_runs(ws.root / cfg.stream.data.folder, cfg.stream)
    return {r.name: {"role": r.role, "seconds": len(r.records), "violating": int(r.violation.sum())} for r in runs}


@flow(name="slo-train")
def slo_train_flow(params: str = "params.yaml", repo_root: str = ".") -> dict:
    """Fit, choose thresholds on the validation run, register; reports/slo_validation.json."""
    from tasks.slo import champion_of, fit_predictors, load_runs, register_predictors
    from tasks.versioning import dvc_hash

    ws = Workspace.at(repo_root)
    cfg = load_config(ws.root / params)
    check_predictors(cfg)
    st = cfg.stream
    folder = ws.root / st.data.folder
    runs = load_runs(folder)
    fitted = fit_predictors(runs, st.predictors, st.lead, st.early)
    # the md5 dvc.lock records for the folder, so the registered models trace to their inputs
    data_md5 = dvc_hash(ws.root, folder) if (ws.root / ".dvc").is_dir() else "not a DVC checkout"
    reg = register_predictors(fitted, runs, st, _tracking(cfg, ws.root), ws.root / cfg.registry.artifact_root, data_md5)
    report = {
        "split": "validation run (thresholds chosen on it too): figures for choosing, not for claims",
        "lead": st.lead,
        "best": champion_of(fitted).name,
        "promoted": reg["promoted"],  # False: the champion before did better on this run, and stays
        "champion_before": reg["champion_before"],
        "versions": reg["versions"],
        "predictors": {f.name: {"threshold": f.threshold, **f.validation} for f in fitted},
    }
    out = ws.root / REPORT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return report


@flow(name="slo-predict")
def slo_predict_flow(params: str = "params.yaml", repo_root: str = ".") -> dict:
    """The registered predictors on ``aggregate`` until the run is cancelled (deployment
    ``vigil-stream-predict``); a new run resumes after the last second predicted."""
    from tasks.stream import run_predictor

    ws = Workspace.at(repo_root)
    cfg = load_config(ws.root / params)
    bootstrap = _bootstrap(cfg, None)
    models = predictor_models(cfg, ws.root, None)
    store, store_model = prediction_store(cfg, ws.root, models)
    return run_predictor(
        bootstrap,
        cfg.stream.topics,
        models,
        cfg.stream.lead,
        PREDICT_GROUP,
        store=store,
        store_model=store_model,
        max_skew=cfg.stream.max_skew,
    )


def _bootstrap(cfg: Config, given: str | None) -> str:
    bootstrap = given or cfg.stream.bootstrap_servers
    if not bootstrap:
        raise ConfigError(
            "no Kafka to talk to: give --bootstrap HOST:PORT or set stream.bootstrap_servers "
            "(`vigil stream broker` starts one on 127.0.0.1; `vigil stream demo` starts its own)"
        )
    return bootstrap


def _stop_on_signals():
    from tasks.stream import StopSignal

    stop = StopSignal()
    signal.signal(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, stop.set)
    return stop


def _say_ready(service: str):
    """The line a parent waits for (`_child`): the service's consumer is assigned."""
    return lambda: print(f"vigil stream {service}: ready", file=sys.stderr, flush=True)


def aggregate(args) -> str:
    from tasks.stream import ensure_topics, run_aggregator

    cfg = load_config(args.params)
    st = cfg.stream
    bootstrap = _bootstrap(cfg, args.bootstrap)
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


def predictor_models(cfg: Config, root: Path, names: list[str] | None) -> list:
    """The registered predictors (`tasks.slo.RegisteredPredictor`) named, else all of params'."""
    from tasks.slo import load_models

    names = names or list(cfg.stream.predictors)
    return load_models(_tracking(cfg, root), cfg.stream.model_name, names)


def prediction_store(cfg: Config, root: Path, models):
    """The champion's predictions into the alerts store (stream.store, else scoring.store), the
    remedies of each new incident ranked: the store and the champion's alias; (None, None)
    where the champion is not among ``models``."""
    from tasks.slo import champion_predictor
    from tasks.stream import PredictionStore
    from tasks.urls import storage_url

    from .remedies import remedy_settings

    st = cfg.stream
    tracking = _tracking(cfg, root)
    champion = champion_predictor(tracking, st.model_name)
    for name, version, _, threshold in models:
        if name == champion:
            url = storage_url(st.store or cfg.scoring.store, root)
            source = f"slo/{st.topics.aggregate}"
            store = PredictionStore(
                url,
                source,
                st.model_name,
                version,
                name,
                threshold,
                remedies=remedy_settings(cfg, root),
                tracking_uri=tracking,
                artifact_root=root / cfg.registry.artifact_root,
            )
            return store, name
    return None, None


def predict(args) -> str:
    from tasks.stream import run_predictor

    cfg = load_config(args.params)
    st = cfg.stream
    bootstrap = _bootstrap(cfg, args.bootstrap)
    models = predictor_models(cfg, Path.cwd(), args.models)
    store, store_model = (None, None) if args.no_store else prediction_store(cfg, Path.cwd(), models)
    stop = _stop_on_signals()
    c = run_predictor(
        bootstrap,
        st.topics,
        models,
        st.lead,
        args.group,
        args.idle_exit,
        stop,
        store,
        store_model,
        ready=_say_ready("predict"),
        max_skew=st.max_skew,
    )
    versions = ", ".join(f"{n} v{v}" for n, v, _, _ in models)
    stored = f"; {c['stored']} of {store_model}'s in the alerts store as {store.source}" if store else ""
    return (
        f"predicted {c['records']} record(s) with {versions}: "
        f"{c['predictions']} prediction(s) on {st.topics.predictions}{stored}; {c['bad']} record(s) set aside on "
        f"{st.topics.dead_letter}"
    )


def produce(args) -> str:
    from components.slo.simulator import interleave, simulate_workload
    from tasks.stream import ensure_topics, produce_messages

    cfg = load_config(args.params)
    st = cfg.stream
    bootstrap = _bootstrap(cfg, args.bootstrap)
    ensure_topics(bootstrap, {st.topics.stats: st.partitions, st.topics.responsetime: st.partitions})
    w = simulate_workload(args.seed if args.seed is not None else st.demo_seed, **st.simulator.model_dump())
    n = produce_messages(
        bootstrap, interleave(w), {"stats": st.topics.stats, "responsetime": st.topics.responsetime}, args.speed
    )
    return (
        f"produced {n} message(s): {len(w.stats)} to {st.topics.stats}, {len(w.responses)} to {st.topics.responsetime}"
    )


def broker(args) -> str:
    from tasks.stream import broker as start_broker

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
        [sys.executable, "-m", "flows.stream", *command[:1], "--params", params, "--bootstrap", bootstrap, *command[1:]]
        + ["--idle-exit", str(idle_exit)],
        stderr=subprocess.PIPE,
        text=True,
    )
    return wait_ready(proc, f"vigil stream {command[0]}")


def evaluate_demo(records: list[dict], predictions: list[dict], injections, st) -> dict:
    """Per predictor (and an always-predict reference): the lead-window table on the demo run."""
    import numpy as np

    from components.slo.evaluation import evaluate_predictions
    from components.slo.simulator import MEMORY_LEAK

    seconds = [r["second"] for r in records]
    s0 = seconds[0]
    violation = np.array([r["violation"] for r in records], dtype=bool)
    leaks = [(i.start - s0, i.end - s0) for i in injections if i.kind == MEMORY_LEAK]
    by_model: dict[str, dict[int, bool]] = {}
    latency: dict[str, list[float]] = {}
    for p in predictions:
        by_model.setdefault(p["model"], {})[p["second"]] = p["predicted"]
        latency.setdefault(p["model"], []).append(p["produced_ms"] - p["aggregate_ts"])
    rows = {}
    for model, preds in by_model.items():
        pred = np.array([preds.get(s, False) for s in seconds], dtype=bool)
        lat = np.array(latency[model])
        rows[model] = {
            **evaluate_predictions(pred, violation, st.lead, st.early, leaks),
            "missing": sum(s not in preds for s in seconds),
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p99": float(np.percentile(lat, 99)),
        }
    rows["(always predict)"] = evaluate_predictions(np.ones(len(seconds), bool), violation, st.lead, st.early, leaks)
    return rows


def table(rows: dict, lead: int, early: int) -> str:
    def f(v, fmt="{:.3f}"):
        return "-" if v is None else fmt.format(v)

    head = (
        f"| predictor | precision | recall | F1 | accuracy | mean lead (s) | lead p10/p50/p90 (s) | "
        f"violations ahead >= {early} s | false alarms / h | leaks with a false alarm (any prediction) |"
    )
    lines = [head, "|" + "---|" * 10]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {f(r['precision'])} | {f(r['recall'])} | {f(r['f1'])} | {f(r['accuracy'])} | "
            f"{f(r['lead_mean'], '{:.1f}')} | {f(r['lead_p10'], '{:.0f}')}/{f(r['lead_median'], '{:.0f}')}/"
            f"{f(r['lead_p90'], '{:.0f}')} | {r['predicted_violations']}/{r['violations']} found, "
            f"{f(r[f'share_ahead_{early}s'], '{:.0%}')} | {f(r['false_alarms_per_hour'], '{:.1f}')} | "
            f"{r['leaks_with_false_alarm']}/{r['leaks']} ({r['leaks_with_any_prediction']}) |"
        )
    return "\n".join(lines)


def demo(args) -> str:
    """Broker, simulator, aggregator and predictor on a run no predictor was fitted on."""

    from components.slo.simulator import interleave, simulate_workload
    from tasks.slo import champion_predictor
    from tasks.stream import broker as start_broker
    from tasks.stream import ensure_topics, produce_messages, read_topic

    cfg = load_config(args.params)
    st = cfg.stream
    root = Path.cwd()
    if champion_predictor(_tracking(cfg, root), st.model_name) is None:
        print("vigil stream demo: no registered predictor yet: recording runs and training first", file=sys.stderr)
        if not (root / st.data.folder / "runs.json").is_file():
            slo_record_flow(params=args.params)
        slo_train_flow(params=args.params)
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
    rows = evaluate_demo(records, predictions, w.injections, st)
    leaks_alone = leak_only_check(cfg, root)
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
        f"{table(rows, st.lead, st.early)}\n"
        f"aggregate -> prediction latency: {latency}\n"
        f"{leaks_alone['run']}:\n{leak_table(leaks_alone['predictors'])}\n"
        f"written: {DEMO_REPORT}"
    )


def leak_only_check(cfg: Config, root: Path) -> dict:
    """The negative case alone: a run of the same length with memory leaks and no CPU hog
    (so no violation), scored offline by the registered predictors with the services' code.
    Every prediction on it is a false alarm."""
    from components.slo.evaluation import evaluate_predictions
    from tasks.slo import simulate_run

    st = cfg.stream
    sim = {**st.simulator.model_dump(), "n_cpu_hogs": 0}
    run = simulate_run("leaks-only", "demo", st.demo_seed, sim, st.rt_limit, st.grace)
    rows = {}
    for name, version, predictor, threshold in predictor_models(cfg, root, None):
        predicted = predictor.score(run.signals) >= threshold
        r = evaluate_predictions(predicted, run.violation, st.lead, st.early, run.leak_windows())
        rows[name] = {
            "version": version,
            "leaks": r["leaks"],
            "leaks_with_any_prediction": r["leaks_with_any_prediction"],
            "predicted_seconds": int(predicted.sum()),
            "false_alarms_per_hour": r["false_alarms_per_hour"],
        }
    return {
        "run": (
            f"memory leaks alone ({st.simulator.n_memory_leaks} leaks, no CPU hog, seed {st.demo_seed}, "
            f"{len(run.records)} s, offline with the services' code)"
        ),
        "violating_seconds": int(run.violation.sum()),
        "predictors": rows,
    }


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
    if args.stream_command == "record":
        return run_entry(lambda: json.dumps(slo_record_flow(params=args.params), indent=1))
    if args.stream_command == "train":

        def body():
            cfg = load_config(args.params)
            check_predictors(cfg)  # before Prefect starts: a named error, exit 2
            st = cfg.stream
            r = slo_train_flow(params=args.params)
            versions = ", ".join(f"{n} v{v}" for n, v in r["versions"].items())
            before = r["champion_before"]
            if r["promoted"]:
                verdict = f"champion: {r['best']} (validation run)"
            else:
                verdict = (
                    f"champion stays version {before['version']} ({before['predictor']}): F1 {before['f1']:.3f} on the "
                    f"validation run against {r['best']}'s {r['predictors'][r['best']]['f1']:.3f}"
                )
            return f"registered {versions} of {st.model_name}; {verdict}\n{table(r['predictors'], r['lead'], st.early)}"

        return run_entry(body)
    return run_entry(lambda: args.stream_func(args), runs_flows=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.stream", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
