import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from support import REPO
from support.servers import free_port

from components.datasets import load_synthetic_layout, make_synthetic


def _vigil(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "vigil.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_bad_params_are_named_before_anything_runs(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("dataset: {kind: synthetic, sinthetic: {}}\ndetectors: {lstm9: {}}\nthreshold: {method: magic}\n")
    out = _vigil("run", "--params", str(params))
    assert out.returncode == 2
    assert "dataset.sinthetic: Extra inputs are not permitted" in out.stderr
    assert "unknown detector(s) ['lstm9']" in out.stderr
    assert "threshold.method" in out.stderr


def test_generate_writes_the_seeded_layout(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("dataset: {kind: synthetic, synthetic: {seed: 5, n_train: 300, n_test: 400, n_anomalies: 4}}\n")
    out = _vigil("generate", "--params", str(params), "--out", str(tmp_path / "raw"))
    assert out.returncode == 0, out.stderr
    back = load_synthetic_layout(tmp_path / "raw")
    ref = make_synthetic(seed=5, n_train=300, n_test=400, n_anomalies=4)
    assert back.name == ref.name
    assert back.features == ref.features
    assert back.causes == ref.causes
    assert np.array_equal(back.labels, ref.labels)
    np.testing.assert_allclose(back.test.to_numpy(), ref.test.to_numpy(), atol=1e-6)  # 6 decimals in CSV
    assert isinstance(back.test.index, pd.DatetimeIndex)


def test_deployments_carry_their_schedules_from_params():
    from flows.deployments import build_score_deployment, build_train_deployment
    from vigil.config import parse_config

    cfg = parse_config({"deployments": {"train": {"cron": "*/30 * * * *"}, "score": {"interval_minutes": 2}}})
    train = build_train_deployment(cfg, "params.yaml")
    assert train.name == "vigil-train"
    # the parameters as parsed when registered: a scheduled run never reads params.yaml itself
    assert train.parameters == {"cfg": cfg.model_dump(mode="json"), "params": "params.yaml"}
    assert parse_config(train.parameters["cfg"]) == cfg
    assert [s.schedule.cron for s in train.schedules] == ["*/30 * * * *"]
    score = build_score_deployment(cfg, "/srv/vigil")
    assert score.name == "vigil-score"
    assert score.parameters == {"cfg": cfg.model_dump(mode="json"), "repo_root": "/srv/vigil"}
    assert [s.schedule.interval.total_seconds() for s in score.schedules] == [120.0]


def test_each_command_declares_its_own_arguments_and_imports_no_other_command():
    # `vigil CMD --help` shows what CMD's module declares; the tree imports no other command's
    # module for it (`vigil --help` and `vigil web` no longer load the scorer's Prefect)
    probe = """
import contextlib, io, json, sys
from vigil.cli import main
def help_of(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main([*argv, "--help"])
        except SystemExit as exc:
            assert exc.code == 0, (argv, exc.code)
    return out.getvalue()
shown = {"": help_of(), "web": help_of("web")}
light = sorted(m for m in ("prefect", "mlflow", "sklearn") if m in sys.modules)
for path in ("score", "feedback", "stream", "benchmark", "generate", "logs build", "logs generate",
             "logs reference", "run"):
    shown[path] = help_of(*path.split())
print(json.dumps({"light": light, "shown": shown}))
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["light"] == []
    shown = got["shown"]
    for command in ("run", "tune", "benchmark", "score", "web", "feedback", "stream", "logs", "stage", "dvc-deps"):
        assert command in shown[""]
    expected = {
        "web": "--expose",
        "score": "--source",  # vigil/score.py
        "feedback": "record",  # vigil/feedback.py
        "stream": "demo",  # vigil/stream.py
        "benchmark": "--readme",  # vigil/stages/benchmark.py
        "generate": "--out",  # vigil/stages/generate.py
        "logs build": "--engine",  # vigil/stages/logs.py
        "logs generate": "--dcache-billing-out",  # vigil/stages/logs_generate.py
        "logs reference": "--format",  # vigil/stages/logs_reference.py
        "run": "--new-data-version",
    }
    for path, option in expected.items():
        assert option in shown[path], (path, shown[path])


def test_bad_detector_parameters_are_named_before_torch_or_scikit_learn_loads(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(
        "detectors:\n  lstm_ae: {epochs: ten}\n  zscore: {aggregat: max}\n  pca: {n_components: 0}\n"
        "  iforest: {n_estimators: 2.5}\n"
    )
    out = _vigil("run", "--params", str(params))
    assert out.returncode == 2
    assert "detectors.lstm_ae.epochs: must be an integer >= 1, got 'ten'" in out.stderr
    assert "detectors.zscore.aggregat: unknown parameter of zscore" in out.stderr
    assert "detectors.pca.n_components: must be an integer >= 1 or a share of variance in (0, 1), got 0" in out.stderr
    assert "detectors.iforest.n_estimators: must be an integer >= 1, got 2.5" in out.stderr
    assert "Traceback" not in out.stderr
    # The check answers in seconds because it loads neither torch nor scikit-learn; asserted as what it
    # imports, not as a wall-clock bound, which a loaded CI machine broke once (2.01 s against 2).
    probe = (
        "import sys\nfrom vigil.cli import main\n"
        f"rc = main(['run', '--params', {str(params)!r}])\n"
        "print(rc, sorted(m for m in ('torch', 'sklearn') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.split() == ["2", "[]"], out.stdout + out.stderr


def test_vigil_ui_refuses_a_taken_port_naming_the_holder(tmp_path):
    import os
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _vigil("ui", "--prefect-port", str(port), "--mlflow-port", str(free_port()))
    assert out.returncode == 4
    assert f"port {port} on 127.0.0.1 (for the Prefect UI) is taken by pid {os.getpid()}" in out.stderr


@pytest.mark.slow
def test_vigil_ui_stops_on_sigterm_leaving_no_process(tmp_path):
    """Also: the Prefect UI on another port than 4200 calls the API on that port."""
    import signal
    import time
    import urllib.request

    import psutil

    ports = free_port(), free_port()
    env_home = {"PREFECT_HOME": str(tmp_path / "prefect-home")}
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_UI_API_URL")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", "ui", "--prefect-port", str(ports[0]), "--mlflow-port", str(ports[1])],
        cwd=REPO,
        env={**env, **env_home},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    up = set()
    while up != set(ports):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, f"only {up} answered"
        for port in set(ports) - up:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                up.add(port)
            except OSError:
                pass
        time.sleep(0.5)
    ui_settings = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/ui-settings", timeout=10).read())
    assert ui_settings["api_url"] == f"http://127.0.0.1:{ports[0]}/api"
    family = psutil.Process(proc.pid).children(recursive=True)
    assert len(family) >= 2
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 0
    said = proc.stdout.read().decode()  # the MLflow UI's page of the training runs (or its home, none yet)
    assert f"the training runs side by side: http://127.0.0.1:{ports[1]}" in said
    gone, alive = psutil.wait_procs(family, timeout=15)
    assert alive == [], [p.cmdline() for p in alive]
    listening = {c.laddr.port for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    assert not listening & set(ports)
    from vigil.cli import _port_holder

    assert [_port_holder(p) for p in ports] == [None, None]  # `vigil ui` could start again at once


def test_a_run_warms_what_each_step_will_import_and_torch_only_for_a_torch_detector():
    from support.workspace import SMALL

    from vigil.config import parse_config
    from vigil.entry import step_imports

    classical = parse_config(SMALL)
    deep = parse_config({**SMALL, "detectors": {"zscore": {}, "lstm_ae": {"epochs": 1}}})
    assert step_imports(classical, "all") == ["great_expectations", "mlflow"]
    assert step_imports(deep, "all") == ["great_expectations", "torch", "mlflow"]
    assert step_imports(deep, "prepare") == ["great_expectations"]
    assert step_imports(deep, "train") == ["torch", "mlflow"]
    assert step_imports(deep, "evaluate") == ["mlflow"]
