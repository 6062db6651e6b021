"""The `vigil` command tree, built in one place: `vigil run`, `vigil tune`, `vigil benchmark`,
`vigil generate`, `vigil ui`, `vigil serve`, `vigil score`, `vigil web`, `vigil feedback`,
`vigil stream`, `vigil logs`, `vigil stage`, `vigil dvc-deps`. A command whose body is long lives in
a module of its own (vigil/score.py, feedback.py, stream.py, web.py, and the DVC stages'
vigil/stages/); this module parses the arguments, and params.yaml once, and calls it."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from pathlib import Path

from vigil.config import ConfigError, load_config, with_cluster
from vigil.entry import add_cluster_arguments, run_entry, step_imports

STEPS = ("all", "prepare", "tune", "train", "evaluate")


def _run(args: argparse.Namespace, cfg=None) -> int:
    # parsed once, here: the flows get it from here (fail fast, with the named problem, before Prefect starts)
    cfg = with_cluster(cfg or load_config(args.params), args.workers, args.scheduler)
    verbose = sys.stderr.isatty()

    def body() -> str:
        if cfg.tuning.enabled and args.step in ("all", "tune"):  # an unusable study store: said before any work
            from tasks.tune import check_storage

            check_storage(cfg.tuning.storage, Path.cwd())
        wait = not args.no_wait
        if args.step == "prepare":
            from flows.prepare import prepare_flow
            from vigil.stages.prepare import summary

            return summary(prepare_flow(cfg, args.params, args.new_data_version, wait_for_lock=wait))
        if args.step == "tune":
            from flows.tune import tune_flow
            from vigil.stages.tune import summary

            return summary(tune_flow(cfg, wait_for_lock=wait))
        if args.step == "train":
            from flows.train import train_flow
            from vigil.stages.train import summary

            return summary(train_flow(cfg, verbose=verbose, wait_for_lock=wait))
        from flows.evaluate import evaluate_flow
        from vigil.stages.evaluate import summary

        if args.step == "evaluate":
            out = evaluate_flow(cfg, wait_for_lock=wait)
        else:
            from flows.pipeline import pipeline

            out = pipeline(cfg, args.params, args.new_data_version, verbose=verbose, wait_for_lock=wait)
        ui = f"compare the detectors in MLflow: `vigil ui`, then {training_page(cfg, 5000)}"
        tuned = ""
        if out.get("tune", {}).get("enabled"):
            from vigil.stages.tune import summary as tune_summary

            tuned = tune_summary(out["tune"]) + "\n\n"
        return tuned + summary(out) + "\n" + ui

    return run_entry(body, warm_up=step_imports(cfg, args.step))


def _tune(args: argparse.Namespace) -> int:
    """`vigil tune`: the `tune` step alone, on the prepared data (as `vigil run --step tune`);
    with ``--deploy``, register it on a Prefect server's ``gpu`` work pool instead."""
    if args.deploy:
        return _deploy_tune(args)
    cfg = load_config(args.params)
    if not cfg.tuning.enabled:
        raise ConfigError(
            f"{args.params}: tuning.enabled is false; set it to true to tune (train then fits the tuned parameters)"
        )
    args.step = "tune"
    return _run(args, cfg)


def _deploy(args: argparse.Namespace, command: str, deploy_fn) -> str:
    """Check the params and that a Prefect server is named, then register ``deploy_fn``'s flow
    on ``args.pool`` with this checkout as its code and data. Returns the deployment id."""
    import os

    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            f"vigil {command} --deploy: set PREFECT_API_URL to the Prefect server's API (http://HOST:4200/api)"
        )
    from vigil.stages.benchmark import known_peers

    cfg = load_config(args.params, peers=known_peers())  # the benchmark's peers too: it may be deployed
    args.pool = args.pool or getattr(cfg.deployments, command).pool
    return deploy_fn(Path.cwd(), cfg, args.pool)


def _deploy_tune(args: argparse.Namespace) -> int:
    from flows.deployments import TUNE_DEPLOYMENT, deploy_tune

    deployment_id = _deploy(args, "tune", deploy_tune)
    print(
        f"deployed tune/{TUNE_DEPLOYMENT} ({deployment_id}) on work pool {args.pool!r}, code and data at {Path.cwd()}\n"
        f"on each GPU host (same path, tuning.storage a shared database): prefect worker start --pool {args.pool}\n"
        f"then: prefect deployment run tune/{TUNE_DEPLOYMENT}"
    )
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    """`vigil benchmark`: every benchmark series x detector (as `dvc repro
    reports/dvc.yaml:benchmark`); with ``--readme``, rewrite README's Benchmark section from the
    report; with ``--deploy``, register the flow on a work pool to trigger from the Prefect UI."""
    if args.deploy:
        from flows.deployments import BENCHMARK_DEPLOYMENT, deploy_benchmark

        deployment_id = _deploy(args, "benchmark", deploy_benchmark)
        print(
            f"deployed benchmark/{BENCHMARK_DEPLOYMENT} ({deployment_id}) on work pool {args.pool!r}; start a worker: "
            f"prefect worker start --pool {args.pool}; run it: prefect deployment run benchmark/{BENCHMARK_DEPLOYMENT}"
        )
        return 0
    from vigil.stages.benchmark import run

    return run(args)


def _stage_command(stage: str):
    """A command that is a DVC stage's: its module's ``run(args)``, imported when run."""
    return lambda args: importlib.import_module(f"vigil.stages.{stage}").run(args)


EXIT_PORT_TAKEN = 4


def _port_holder(port: int) -> str | None:
    """None if 127.0.0.1:port is free, else who listens there (pid and command, where visible)."""
    import socket

    with socket.socket() as s:
        # as a server binds: a port in TIME_WAIT after a UI stopped is free to listen on again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return None
        except OSError:
            pass
    import psutil

    from components.text import one_line

    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            try:  # a command line is anyone's text: shown on one line, control characters escaped
                return f"pid {conn.pid} ({one_line(' '.join(psutil.Process(conn.pid).cmdline())[:120])})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return "a process this user cannot see"


def persistent_server(port: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a persistent Prefect server (UI, scheduler and every
    other service) on 127.0.0.1:``port``: `vigil ui`'s, and `vigil serve`'s where no server is
    named. The UI is told where its API is: left to itself it calls the API at
    ``PREFECT_API_URL`` or port 4200, whatever port the server was started on."""
    api = f"http://127.0.0.1:{port}/api"
    cmd = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    env = {"PREFECT_UI_API_URL": api, "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
           # no usage reports to Prefect: an operator's server may have no way out (an error each start)
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # fmt: skip
    return cmd, env


def training_page(cfg, port: int) -> str:
    """The MLflow UI's page (on 127.0.0.1:``port``) of the training runs, best first by the
    selection metric on validation, in the compare view (`tasks.registry.experiment_page`)."""
    from tasks.registry import experiment_page
    from tasks.urls import storage_url

    uri = storage_url(cfg.registry.tracking_uri, Path.cwd(), make_folder=False)
    return experiment_page(
        f"http://127.0.0.1:{port}", uri, cfg.registry.experiment, f"val_{cfg.registry.selection_metric}"
    )


def _ui(args: argparse.Namespace) -> int:
    """Start the Prefect and MLflow UIs on 127.0.0.1 until Ctrl-C or SIGTERM; each in its own
    process group, which is killed whole on the way out (MLflow's UI runs worker processes)."""
    import os
    import signal

    from vigil.plumbing import MLFLOW_WITHOUT_JOBS, die_with_parent

    cfg = load_config(args.params)
    for name, port in (("Prefect", args.prefect_port), ("MLflow", args.mlflow_port)):
        holder = _port_holder(port)
        if holder:
            print(
                f"vigil ui: port {port} on 127.0.0.1 (for the {name} UI) is taken by {holder}; stop it or pass "
                f"--{name.lower()}-port",
                file=sys.stderr,
            )
            return EXIT_PORT_TAKEN
    runs_page = training_page(cfg, args.mlflow_port)  # before MLflow's UI opens (and migrates) the store
    bin_dir = Path(sys.executable).parent
    prefect_cmd, prefect_env = persistent_server(args.prefect_port)
    commands = {
        "Prefect": prefect_cmd,
        "MLflow": [
            str(bin_dir / "mlflow"),
            "ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(args.mlflow_port),
            "--backend-store-uri",
            cfg.registry.tracking_uri,
        ],
    }

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # as Ctrl-C
    envs = {"Prefect": {**os.environ, **prefect_env}, "MLflow": {**os.environ, **MLFLOW_WITHOUT_JOBS}}
    procs = {}
    for name, cmd in commands.items():
        procs[name] = subprocess.Popen(
            cmd, env=envs.get(name), start_new_session=True, preexec_fn=die_with_parent(os.getpid())
        )
    print(
        f"Prefect UI: http://127.0.0.1:{args.prefect_port}   "
        f"MLflow UI: http://127.0.0.1:{args.mlflow_port}   (Ctrl-C stops both)\n"
        f"the training runs side by side: {runs_page}",
        flush=True,
    )
    code = 0
    try:
        while True:
            ended = [n for n, p in procs.items() if p.poll() is not None]
            if ended:
                print(f"vigil ui: the {ended[0]} UI exited with code {procs[ended[0]].returncode}", file=sys.stderr)
                code = 1
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs.values():
            _kill_group(p)
    return code


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group (the UI and its workers), SIGKILL after 10 s."""
    import os
    import signal

    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            os.killpg(proc.pid, signal.SIGKILL)  # workers the leader left behind
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


def _prefect_answers(api: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api}/health", timeout=3) as reply:
            return reply.status == 200
    except (OSError, ValueError):
        return False


def _start_prefect_server(port: int, startup_seconds: float = 120.0) -> subprocess.Popen:
    """A persistent Prefect server on 127.0.0.1:``port`` for `vigil serve`, in its own process
    group (stopped whole, as `vigil ui` stops its UIs), dying with this process. Its console is
    this command's: a scheduler that fails says so here."""
    import os

    from vigil.plumbing import die_with_parent, wait_until_answers

    cmd, env = persistent_server(port)
    server = subprocess.Popen(
        cmd, env={**os.environ, **env}, start_new_session=True, preexec_fn=die_with_parent(os.getpid())
    )
    why = wait_until_answers(f"http://127.0.0.1:{port}/api/health", server, startup_seconds)
    if why:
        _kill_group(server)
        raise SystemExit(f"vigil serve: the Prefect server {why} (its log is above)")
    return server


def _serve(args: argparse.Namespace) -> int:
    """Serve the deployments on the server ``PREFECT_API_URL`` names; without one, on the
    server at 127.0.0.1:--prefect-port, started here if none answers there. Never on Prefect's
    temporary API: it runs no scheduler, so no scheduled run would ever happen."""
    import os
    import signal

    from vigil.stages.benchmark import known_peers

    cfg = load_config(args.params, peers=known_peers())  # checked before a server is started; vigil-benchmark too
    api = os.environ.get("PREFECT_API_URL")
    server = None
    if api:
        if not _prefect_answers(api):
            print(
                f"vigil serve: no Prefect server answers at PREFECT_API_URL={api}: start it (`vigil ui`), "
                "or unset PREFECT_API_URL and vigil serve starts one",
                file=sys.stderr,
            )
            return 1
    else:
        api = f"http://127.0.0.1:{args.prefect_port}/api"
        if _prefect_answers(api):
            print(f"PREFECT_API_URL is not set: serving on the Prefect server that answers at {api}", flush=True)
        else:
            holder = _port_holder(args.prefect_port)
            if holder:
                print(
                    f"vigil serve: port {args.prefect_port} on 127.0.0.1 (for its Prefect server) is taken by "
                    f"{holder}; stop it, pass --prefect-port, or set PREFECT_API_URL",
                    file=sys.stderr,
                )
                return EXIT_PORT_TAKEN
            server = _start_prefect_server(args.prefect_port)
            print(
                f"started a Prefect server (UI http://127.0.0.1:{args.prefect_port}, its log here); other commands "
                f"reach it with PREFECT_API_URL={api}",
                flush=True,
            )
        os.environ["PREFECT_API_URL"] = api  # before Prefect is imported: it reads its settings once

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # as Ctrl-C: the server started here is stopped whole
    try:
        return _serve_deployments(cfg, args.params)
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            _kill_group(server)


def _serve_deployments(cfg, params: str) -> int:
    from flows.deployments import SCORE_DEPLOYMENT, TRAIN_DEPLOYMENT, register_pool_deployments, serve

    for line in register_pool_deployments(cfg, Path.cwd()):
        print(line)
    print(
        f"serving pipeline/{TRAIN_DEPLOYMENT} on cron {cfg.deployments.train.cron!r} and score/{SCORE_DEPLOYMENT} "
        f"every {cfg.deployments.score.interval_minutes:g} min, slo-train/vigil-slo-train and "
        f"slo-predict/vigil-stream-predict by hand (Ctrl-C stops)",
        flush=True,
    )
    serve(cfg, params, Path.cwd())
    return 0


def _web(args: argparse.Namespace) -> int:
    from vigil.web import run

    return run(args)


# commands whose arguments and body live in a module of their own: name -> (module, help)
DELEGATED = {
    "score": ("vigil.score", "the champion scores the landing folder's new files into the alerts store"),
    "feedback": (
        "vigil.feedback",
        "verdicts on incidents and the remedies applied; remedies ranked; labels for the next run",
    ),
    "stream": ("vigil.stream", "SLO-violation prediction over Kafka: record, train, aggregate, predict, demo"),
    "prometheus": ("vigil.prometheus", "a dataset exported from Prometheus; the live demo on node_exporter"),
}


def _delegated(module: str):
    """The command body of a delegated command: its module's ``run(args)``, imported when run."""
    return lambda args: importlib.import_module(module).run(args)


def _dvc_deps(args: argparse.Namespace) -> int:
    from vigil.dvc_deps import main as dvc_deps

    return dvc_deps(["--check"] if args.check else [])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only the chosen command's arguments are declared in full: some are declared by the command's
    # own module, and importing them all (Prefect, MLflow, scikit-learn) cost a command up to 1.2 s
    # of CPU (`vigil --help` took 2.3 s, now 0.7 s; `vigil web` imported the scorer's Prefect). No option
    # before a command takes a value, so the words not starting with "-" begin with the command path.
    words = [a for a in argv if not a.startswith("-")]

    def chosen(*path: str) -> bool:
        return tuple(words[: len(path)]) == path

    parser = argparse.ArgumentParser(prog="vigil", description="Anomaly detection for system telemetry.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")
    with_params = argparse.ArgumentParser(add_help=False)
    with_params.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    waits = argparse.ArgumentParser(add_help=False)  # a command that holds the checkout
    waits.add_argument(
        "--no-wait", action="store_true", help="refuse, naming it, instead of waiting for a run holding this checkout"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        parents=[common, with_params, waits],
        help="data version check, validation, prepare, train, evaluate, register",
    )
    run.add_argument("--step", choices=STEPS, default="all", help="one step only (as the dvc stages do)")
    run.add_argument(
        "--new-data-version",
        action="store_true",
        help="accept raw data that dvc.lock does not record, as a new data version",
    )
    add_cluster_arguments(run)
    run.set_defaults(func=_run)
    tune = sub.add_parser(
        "tune",
        parents=[common, with_params, waits],
        help="Optuna tuning of every detector on the prepared data (train and validation only); writes tuned/",
    )
    tune.add_argument(
        "--deploy", action="store_true", help="register the tune flow on a work pool (PREFECT_API_URL) instead"
    )
    tune.add_argument("--pool", help="work pool for --deploy (default: deployments.tune.pool, made if missing)")
    add_cluster_arguments(tune)
    tune.set_defaults(func=_tune, new_data_version=False)
    bench = sub.add_parser(
        "benchmark",
        parents=[common, with_params],
        help="every benchmark series x every detector and PyOD peer: reports/benchmark.{md,html,json}, MLflow",
    )
    if chosen("benchmark"):
        from vigil.stages import benchmark as benchmark_stage

        benchmark_stage.add_arguments(bench)
    bench.add_argument("--deploy", action="store_true", help="register the flow on a work pool (PREFECT_API_URL)")
    bench.add_argument("--pool", help="work pool for --deploy (default: deployments.benchmark.pool, made if missing)")
    bench.set_defaults(func=_benchmark)
    gen = sub.add_parser("generate", parents=[common, with_params], help="write the synthetic dataset named in params")
    if chosen("generate"):
        from vigil.stages import generate as generate_stage

        generate_stage.add_arguments(gen)
    gen.set_defaults(func=_stage_command("generate"))
    ui = sub.add_parser("ui", parents=[common, with_params], help="start the Prefect and MLflow UIs on 127.0.0.1")
    ui.add_argument("--prefect-port", type=int, default=4200)
    ui.add_argument("--mlflow-port", type=int, default=5000)
    ui.set_defaults(func=_ui)
    srv = sub.add_parser(
        "serve",
        parents=[common, with_params],
        help="deployments in the Prefect UI: serve vigil-train, vigil-score and the stream's; register vigil-tune, "
        "vigil-benchmark",
    )
    srv.add_argument(
        "--prefect-port", type=int, default=4200, help="where PREFECT_API_URL is not set: the Prefect server's port"
    )
    srv.set_defaults(func=_serve)
    web = sub.add_parser(
        "web", parents=[common, with_params], help="the live view of the alerts store (127.0.0.1 by default)"
    )
    web.add_argument("--host", help="default: web.host")
    web.add_argument("--port", type=int, help="default: web.port")
    web.add_argument(
        "--expose", action="store_true", help="allow an address other than loopback (every request then needs a token)"
    )
    web.set_defaults(func=_web)
    for name, (module, text) in DELEGATED.items():
        command = sub.add_parser(name, parents=[common], help=text)
        if chosen(name):
            importlib.import_module(module).add_arguments(command)
        command.set_defaults(func=_delegated(module))
    logs = sub.add_parser(
        "logs", parents=[common], help="telemetry from dCache billing and Rucio transfer logs; their reference models"
    )
    logs_sub = logs.add_subparsers(dest="logs_command", required=True)
    for name, stage, text in (
        ("build", "logs", "logs -> per-series telemetry (the dataset kinds' roots)"),
        ("generate", "logs_generate", "write the generated logs only"),
        ("reference", "logs_reference", "the reference models of both formats: reports/logs_reference.json"),
    ):
        command = logs_sub.add_parser(name, parents=[common, with_params], help=text)
        if chosen("logs", name):
            importlib.import_module(f"vigil.stages.{stage}").add_arguments(command)
        command.set_defaults(func=_stage_command(stage))
    stage = sub.add_parser(
        "stage", help="one DVC stage, as dvc.yaml runs it: vigil stage NAME [--params FILE] (see vigil.stages)"
    )
    from vigil.stages import STAGES
    from vigil.stages import main as run_stage

    stage.add_argument("name", choices=STAGES)
    stage.add_argument("arguments", nargs=argparse.REMAINDER, help="the stage's own (vigil stage NAME --help)")
    # the `vigil` command hands `stage` to vigil.stages before this tree is built (vigil/__main__.py)
    stage.set_defaults(func=lambda args: run_stage([args.name, *args.arguments]))
    deps = sub.add_parser("dvc-deps", help="regenerate dvc.yaml's code deps from what each stage imports")
    deps.add_argument("--check", action="store_true", help="exit 1, naming them, if any stage's deps are stale")
    deps.set_defaults(func=_dvc_deps)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        from components.text import printable

        print(f"vigil: {printable(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
