"""Ctrl-C stops a run within seconds, writes nothing after the signal, leaves no process behind;
a second Ctrl-C exits at once without an abort."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import psutil
import pytest
from support import REPO
from support.servers import prefect_env
from support.workspace import SMALL, VIGIL, full, make_workspace


def _prefect_states(ws, crash_dead_first=False) -> set[str]:
    """The states of the flow runs in the workspace's Prefect database, read as a later command would."""
    code = (
        "from vigil.prefect_api import prefect_api, crash_runs_of_dead_processes\n"
        "from prefect.client.orchestration import get_client\n"
        "with prefect_api():\n"
        f"    {'crash_runs_of_dead_processes()' if crash_dead_first else 'pass'}\n"
        "    with get_client(sync_client=True) as c:\n"
        "        print(sorted({r.state_type.value for r in c.read_flow_runs()}))\n"
    )
    env = prefect_env(ws.parent, own_api=True)  # the temporary API's own tests
    out = subprocess.run([os.sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return set(eval(out.stdout.strip().splitlines()[-1]))


LONG_TRAINING = {**SMALL, "detectors": {"zscore": {}, "lstm_ae": {"epochs": 500, "patience": 500, "device": "cpu"}}}


def _start_and_wait_for_training(ws):
    env = prefect_env(ws.parent, own_api=True)  # the temporary API's own tests
    proc = subprocess.Popen(
        [VIGIL, "run", "--new-data-version"],
        cwd=ws,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job's: `timeout` and a service manager signal it
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    # The first epoch line (tasks.fit.epoch_lines, 5 s into the fit), not "fitting": a fit's
    # first seconds import what torch loads lazily (torch._dynamo, by the first optimizer), and
    # a signal during an import waits for it in the task thread (torch itself took 4-5 s there
    # on a loaded machine before `vigil run` warmed it: the stop took 7-11 s instead of about 3).
    deadline = time.monotonic() + 180
    while not any("[lstm_ae] epoch" in line for line in lines):
        assert proc.poll() is None, "".join(lines)[-2000:]
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.2)
    return proc, lines


@pytest.mark.parametrize(
    "presses, sig, group",
    [(1, signal.SIGINT, False), (2, signal.SIGINT, False), (1, signal.SIGTERM, True)],
    ids=["ctrl-c", "ctrl-c twice", "sigterm to the group"],  # a second SIGTERM takes Ctrl-C's second path
)
@pytest.mark.slow
def test_ctrl_c_or_sigterm_during_training_stops_within_seconds_and_leaves_nothing(tmp_path, presses, sig, group):
    """Ctrl-C, or SIGTERM to the whole process group (`timeout 120 vigil run`, a service
    manager): the Prefect API child must not die first and leave the run retrying for minutes."""
    ws = make_workspace(tmp_path, LONG_TRAINING)
    proc, lines = _start_and_wait_for_training(ws)
    family = psutil.Process(proc.pid).children(recursive=True)  # Prefect's temporary server among them
    t0 = time.monotonic()
    for _ in range(presses):
        os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        time.sleep(0.3)
    proc.wait(timeout=60)
    seconds = time.monotonic() - t0
    err = "".join(lines)
    assert proc.returncode == 130, err[-2000:]
    assert seconds < 10, f"took {seconds:.1f} s to stop"
    assert "terminate called" not in err
    if presses == 1:
        assert "vigil: interrupted; the published data, models, reports and champion are as they were" in err
    for published in ("data/processed", "models", "reports/metrics.json"):
        assert not (ws / published).exists(), f"{published} was written"
    gone, alive = psutil.wait_procs(family, timeout=10)  # the API stops gracefully on SIGTERM: a second, quiet
    assert alive == [], [p.cmdline() for p in alive]
    if presses == 1:  # the flow runs say what happened; none is left RUNNING
        states = _prefect_states(ws)
        assert "CANCELLED" in states
        assert "RUNNING" not in states


@pytest.mark.slow
def test_flow_runs_on_the_temporary_api_send_no_heartbeats_and_on_a_configured_one_prefects_default(tmp_path):
    """Heartbeats feed a server's zombie detection; the temporary API runs no services and dies
    with the command, and each flow run's end waited up to a second for the heartbeat thread."""
    code = (
        "from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY as H\n"
        "from vigil.prefect_api import prefect_api\n"
        "outside = H.value()\n"
        "with prefect_api():\n"
        "    print(outside, H.value())\n"
    )
    configured = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}  # a server's: prefect_api() only passes it on
    for extra in ({}, configured):
        env = prefect_env(tmp_path / str(len(extra)), own_api=True, **extra)
        out = subprocess.run([os.sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        outside, inside = out.stdout.split()[-2:]
        assert outside != "None"  # Prefect's default (180 s) or the user's
        assert inside == ("None" if not extra else outside)


@pytest.mark.slow
def test_modules_warm_while_the_temporary_api_starts_and_ctrl_c_then_stops_the_api_too(tmp_path):
    """`vigil run` imports what it will need (Great Expectations, MLflow, torch) while the API
    boots in its own process; a module that fails is left to the body, and Ctrl-C during the
    imports stops the API at once, not only when the command exits."""
    code = (
        "import sys, psutil\n"
        "from vigil.prefect_api import prefect_api\n"
        "with prefect_api(warm_up=['no_such_module_here', 'support.fan']):\n"
        "    print('warm', 'support.fan' in sys.modules)\n"
        "try:\n"
        "    with prefect_api(warm_up=['support.interrupted_import']):\n"
        "        print('the body ran')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', [p.cmdline() for p in psutil.Process().children(recursive=True)])\n"
    )
    env = {**prefect_env(tmp_path, own_api=True), "PYTHONPATH": f"{REPO / 'tests'}:{REPO}"}
    out = subprocess.run([os.sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-2:] == ["warm True", "interrupted []"], out.stdout


def test_an_interrupted_registration_marks_its_runs_killed(tmp_path):
    import mlflow

    from tasks.registry import mark_killed

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/store.db")
    mlflow.set_experiment("interrupted")  # not whichever experiment an earlier test left active
    client = mlflow.MlflowClient()
    with pytest.raises(KeyboardInterrupt), mlflow.start_run() as parent, mlflow.start_run(nested=True):
        raise KeyboardInterrupt
    assert client.get_run(parent.info.run_id).info.status == "FAILED"  # what MLflow records by itself
    mark_killed(client, parent)
    runs = client.search_runs([parent.info.experiment_id])
    assert len(runs) == 2
    assert {r.info.status for r in runs} == {"KILLED"}
    mlflow.set_tracking_uri("")


def test_the_config_is_unchanged_by_the_interrupt_tests():
    assert full(LONG_TRAINING)["detectors"]["lstm_ae"]["epochs"] == 500


@pytest.mark.slow
def test_sigkill_leaves_no_orphan_and_no_lock(tmp_path):
    ws = make_workspace(tmp_path, LONG_TRAINING)
    proc, lines = _start_and_wait_for_training(ws)
    family = psutil.Process(proc.pid).children(recursive=True)
    assert any("uvicorn" in " ".join(p.cmdline()) for p in family)  # the temporary Prefect API
    proc.kill()
    proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(family, timeout=15)
    assert alive == [], [p.cmdline() for p in alive]
    from vigil.run_lock import checkout_lock

    with checkout_lock(ws, wait=False):  # the kernel dropped the dead run's lock
        pass
    for published in ("data/processed", "models", "reports/metrics.json"):
        assert not (ws / published).exists(), f"{published} was written"
    assert "RUNNING" in _prefect_states(ws)  # what the killed run left
    states = _prefect_states(ws, crash_dead_first=True)  # what the next command does first
    assert "CRASHED" in states
    assert "RUNNING" not in states


def test_a_later_run_fails_the_runs_a_killed_process_left_running(tmp_path):
    import mlflow

    from tasks.registry import fail_runs_of_dead_processes, process_tags

    dead = subprocess.Popen(["true"])
    dead.wait()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/store.db")
    client = mlflow.MlflowClient()
    exp = client.create_experiment("e")
    orphan = client.create_run(exp, tags={**process_tags(), "vigil.pid": str(dead.pid)})
    live = client.create_run(exp, tags=process_tags())  # this process: alive
    assert fail_runs_of_dead_processes(client, exp) == [orphan.info.run_id]
    assert client.get_run(orphan.info.run_id).info.status == "FAILED"
    assert client.get_run(orphan.info.run_id).data.tags["vigil.ended_by"].startswith("a later run: process")
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    mlflow.set_tracking_uri("")
