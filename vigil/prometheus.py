"""`vigil prometheus export|demo`: telemetry from Prometheus for training, and the whole stack
live on this machine.

``export``: the series of ``scoring.prometheus``' queries over a past range, written as a
dataset of kind ``prometheus`` (one folder per series; `tasks.prometheus.export`), to train on
with the very queries scoring will pull.

``demo``: this machine's own node_exporter, scraped every second by a Prometheus of the demo's
own (Debian's binaries, loopback ports, a folder under ``.vigil/``), a few minutes of history
exported and trained on (a workspace of its own: its MLflow, alerts store and landing folder,
nothing of the checkout's touched), then scored through PromQL every few seconds, with the live
page and a burst of CPU load that should raise an incident.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

from vigil.config import ConfigError, load_config
from vigil.entry import run_entry
from vigil.plumbing import free_port, wait_until_answers

# node_exporter's metrics as the demo's features: one PromQL query each, one series per instance
NODE_METRICS = {
    "cpu_busy": 'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5s]))',
    "load_1m": "node_load1",
    "procs_running": "node_procs_running",
    "mem_used": "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    "ctx_switches": "rate(node_context_switches_total[5s])",
    "net_bytes": "sum by (instance) (rate(node_network_receive_bytes_total[5s]) + "
    "rate(node_network_transmit_bytes_total[5s]))",
}
SERIES = "this-machine"  # the demo's instance label (Prometheus relabels node_exporter's address to it)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="prometheus_command", required=True)
    exp = sub.add_parser("export", help="scoring.prometheus' series over a past range -> a dataset of kind prometheus")
    exp.add_argument("--params", default="params.yaml")
    exp.add_argument("--minutes", type=float, help="the last MINUTES (up to scoring.prometheus.delay_seconds ago)")
    exp.add_argument("--start", help="or a range: start, ISO time (UTC where no zone is given)")
    exp.add_argument("--end", help="end, ISO time (default: now less scoring.prometheus.delay_seconds)")
    exp.add_argument("--out", type=Path, help="default: dataset.root where dataset.kind is prometheus")
    exp.add_argument("--train-fraction", type=float, default=0.5, help="each series' leading share that is train")
    exp.set_defaults(prometheus_func=_export)
    demo = sub.add_parser(
        "demo", help="this machine's node_exporter -> Prometheus -> Vigil, live (README: Prometheus in)"
    )
    demo.add_argument("--folder", type=Path, default=Path(".vigil/node-demo"), help="the demo's workspace (made anew)")
    demo.add_argument("--history-minutes", type=float, default=4.0, help="scraped before training")
    demo.add_argument("--minutes", type=float, default=5.0, help="scored live after training (0: until Ctrl-C)")
    demo.add_argument("--every", type=float, default=10.0, help="seconds between scoring runs")
    demo.add_argument("--load-seconds", type=float, default=30.0, help="CPU load on every core after the first runs")
    demo.add_argument("--web-port", type=int, default=8050)
    demo.add_argument("--params", default="params.yaml", help="whose remedy catalogue the demo proposes from")
    demo.set_defaults(prometheus_func=_demo)


def run(args: argparse.Namespace) -> int:
    return args.prometheus_func(args)


def _seconds(text: str, what: str) -> float:
    from datetime import UTC

    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--{what} {text!r}: not an ISO time (2026-12-01T10:00:00)") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _export(args: argparse.Namespace) -> int:
    def body() -> str:
        from tasks.prometheus import export, prometheus_source

        cfg = load_config(args.params)
        src = prometheus_source(cfg.scoring.prometheus)
        if src is None:
            raise ConfigError(f"{args.params}: scoring.prometheus is not set: it names the server and the queries")
        out = args.out or (cfg.dataset.root if cfg.dataset.kind == "prometheus" else None)
        if out is None:
            raise ConfigError("give --out, or set dataset.kind: prometheus and dataset.root to export there")
        if not 0 < args.train_fraction < 1:
            raise ConfigError(f"--train-fraction {args.train_fraction}: give a share between 0 and 1")
        end = _seconds(args.end, "end") if args.end else time.time() - src.delay_seconds
        if args.start:
            start = _seconds(args.start, "start")
        elif args.minutes:
            start = end - args.minutes * 60
        else:
            raise ConfigError("give --minutes or --start: the range to export")
        if start >= end:
            raise ConfigError("the range to export is empty: start is not before end")
        series = export(src, Path(out), start, end, args.train_fraction)
        return f"exported {len(series)} series to {out}: {', '.join(series)}"

    return run_entry(body)


# --- the demo ---


def _answers(url: str, proc: subprocess.Popen, what: str) -> None:
    why = wait_until_answers(url, proc, 60.0)
    if why:
        raise ConfigError(f"{what} {why}")


PID_FILE = "demo.pid"  # in the demo's folder: the demo running there


def _running_demo(folder: Path) -> int | None:
    """The pid of the demo still running in ``folder``, if any (its Prometheus writes there)."""
    try:
        pid = int((folder / PID_FILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _burn(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _demo_params(prometheus_url: str, web_port: int) -> dict:
    """The demo workspace's parameters: the dataset exported from its Prometheus, four quick
    detectors, label-free thresholds (Prometheus holds no labels), and scoring through PromQL
    with the same queries every second's step."""
    return {
        "dataset": {"kind": "prometheus", "root": "data", "name": SERIES},
        # 30% of train held out to calibrate the label-free threshold (POT needs 20 scores)
        "detectors": {
            "zscore": {"calibration_fraction": 0.3},
            "pca": {"n_components": 0.9, "calibration_fraction": 0.3},
            "iforest": {"random_state": 0, "calibration_fraction": 0.3},
            "knn": {"n_neighbors": 5, "window": 1, "calibration_fraction": 0.3},
        },
        "threshold": {"label_free": {"rule": "pot_train", "smoothing": "max", "window": 5}},
        "incidents": {"merge_gap": 10, "min_steps": 3},
        "registry": {
            "tracking_uri": "sqlite:///mlflow/mlflow.db",
            "artifact_root": "mlflow/artifacts",
            "model_name": "vigil-node-demo",
            "label_free_rule": "consensus",
        },
        "scoring": {
            "landing": "landing",
            "store": "sqlite:///alerts.db",
            "settle_seconds": 0,
            "prometheus": {
                "url": prometheus_url,
                "metrics": NODE_METRICS,
                "step_seconds": 1,
                "lookback_minutes": 10,
                "delay_seconds": 3,
            },
        },
        "notify": {"page_url": f"http://127.0.0.1:{web_port}"},
        "web": {"port": web_port},
    }


def _demo(args: argparse.Namespace) -> int:
    node_exporter, prometheus = shutil.which("prometheus-node-exporter"), shutil.which("prometheus")
    if not (node_exporter and prometheus):
        print("vigil: the demo needs Debian's prometheus and prometheus-node-exporter (apt-get install them)",
              file=sys.stderr)  # fmt: skip
        return 2
    folder = args.folder.resolve()
    if folder.exists():
        if not (folder / "node-demo.yaml").is_file():
            print(f"vigil: {folder} exists and is not a demo's folder: not writing over it", file=sys.stderr)
            return 2
        running = _running_demo(folder)
        if running:
            print(f"vigil: a demo is running in {folder} (pid {running}); stop it first", file=sys.stderr)
            return 2
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / PID_FILE).write_text(str(os.getpid()))
    node_port, prom_port = free_port(), free_port()
    (folder / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{node_port}"]}],
                            "relabel_configs": [{"target_label": "instance", "replacement": SERIES}]}],
    }))  # fmt: skip
    prom_url = f"http://127.0.0.1:{prom_port}"
    params = folder / "node-demo.yaml"
    settings = _demo_params(prom_url, args.web_port)
    if Path(args.params).is_file():  # the checkout's remedies, proposed with each incident
        remedies = load_config(args.params).remedies.model_dump(mode="json")
        if isinstance(remedies["catalogue"], str):  # a file, named from the checkout
            remedies["catalogue"] = str(Path(remedies["catalogue"]).resolve())
        settings["remedies"] = remedies
    params.write_text(yaml.safe_dump(settings, sort_keys=False))
    vigil = [sys.executable, "-m", "vigil"]
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], log: str) -> subprocess.Popen:
        out = open(folder / log, "wb")  # noqa: SIM115 (the process's, closed when it exits)
        proc = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    def say(text: str) -> None:
        print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)

    def stop(signum, frame):  # SIGTERM as Ctrl-C: the servers it started are stopped on the way out
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        node = start([node_exporter, f"--web.listen-address=127.0.0.1:{node_port}", "--collector.disable-defaults",
                      "--collector.cpu", "--collector.loadavg", "--collector.meminfo", "--collector.netdev",
                      "--collector.stat"], "node_exporter.log")  # fmt: skip
        _answers(f"http://127.0.0.1:{node_port}/metrics", node, "node_exporter")
        prom = start([prometheus, f"--config.file={folder / 'prometheus.yml'}",
                      f"--storage.tsdb.path={folder / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                     "prometheus.log")  # fmt: skip
        _answers(f"{prom_url}/-/ready", prom, "Prometheus")
        say(f"node_exporter on 127.0.0.1:{node_port}, scraped every second by Prometheus at {prom_url} "
            f"(logs and data in {folder})")  # fmt: skip
        history, said = time.monotonic() + args.history_minutes * 60, -1.0
        while (left := history - time.monotonic()) > 0:
            if left < said - 30 or said < 0:
                said = left
                say(f"gathering history to train on: {left:.0f} s left")
            # the machine as it will be scored, with Vigil's own scoring runs on it (each starts,
            # finds no champion yet, and stops): they are part of the normal the model learns
            subprocess.run([*vigil, "score", "--params", params.name], cwd=folder, capture_output=True)
            time.sleep(min(args.every, max(0.0, history - time.monotonic())))
        export = ["prometheus", "export", "--params", params.name, "--minutes", f"{args.history_minutes:g}",
                  "--train-fraction", "0.7"]  # fmt: skip
        for step in (export, ["run", "--params", params.name, "--new-data-version"]):
            say(f"vigil {' '.join(step)}")
            if step[0] == "run":
                dvc = str(Path(sys.executable).parent / "dvc")  # the data version check needs a DVC repository
                subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=folder, check=True)
            done = subprocess.run([*vigil, *step], cwd=folder)
            if done.returncode != 0:
                return done.returncode
        start([*vigil, "web", "--params", params.name], "web.log")
        say(f"the live page: http://127.0.0.1:{args.web_port}/ (series {SERIES})")
        finish = time.monotonic() + args.minutes * 60 if args.minutes else float("inf")
        runs = 0
        while time.monotonic() < finish:
            score = subprocess.run(
                [*vigil, "score", "--params", params.name], cwd=folder, capture_output=True, text=True
            )
            said = (score.stdout if score.returncode == 0 else score.stderr).strip().splitlines()
            say((said[0] if score.returncode == 0 else said[-1]) if said else f"vigil score exited {score.returncode}")
            runs += 1
            if runs == 3 and args.load_seconds > 0:
                say(
                    f"loading every core for {args.load_seconds:g} s: an incident on cpu_busy and load_1m should follow"
                )
                for _ in range(os.cpu_count() or 1):
                    multiprocessing.Process(target=_burn, args=(args.load_seconds,), daemon=True).start()
            time.sleep(args.every)
        return 0
    except KeyboardInterrupt:
        say("stopped")
        return 130
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
