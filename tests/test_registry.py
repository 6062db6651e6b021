"""Registration against a real MLflow tracking server on loopback. A small proxy in front of it
answers 503 to the champion look-ups (the reads: the alias look-up and the model search),
as a failing replica behind a load balancer would, and forwards everything else, the alias
write included: the failure the old code read as "no champion yet" before promoting the new
model (checked: with the old `except Exception` look-up this test fails)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.servers import free_port, mlflow_server_env

from components.datasets import DatasetSource, make_synthetic, write_synthetic_layout
from components.detectors import get_detector
from components.evaluation import AlertSettings, threshold_and_measure
from components.selection import candidate_scores, selection_rule
from tasks.data import Processed, prepare_data
from tasks.registry import CHAMPION, pip_requirements, register
from tasks.versioning import DataVersion

LOOKUPS = ("/registered-models/alias", "/registered-models/search")


class _Proxy(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _forward(self):
        path = urlsplit(self.path).path
        if self.server.fail_lookups and self.command == "GET" and path.endswith(LOOKUPS):
            body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected by the test proxy"}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        up = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        up.request(self.command, self.path, body=data, headers=headers)
        resp = up.getresponse()
        payload = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        up.close()

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A real `mlflow server` on a free loopback port, and the fault-injecting proxy before it."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root}/store.db",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        env=mlflow_server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    proxy.upstream, proxy.fail_lookups = port, False
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(0.3)
        yield root, f"http://127.0.0.1:{port}", proxy
    finally:
        proxy.shutdown()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Processed data, two fitted detectors and their results, as the evaluate flow has them."""
    root = tmp_path_factory.mktemp("run")
    write_synthetic_layout(make_synthetic(seed=3, n_train=600, n_test=800, n_anomalies=6), root / "raw")
    prepare_data.fn(
        DatasetSource("synthetic", root / "raw", "synthetic"),
        scaler="minmax",
        clip=5.0,
        validation_fraction=0.3,
        detectors={"zscore": {}, "pca": {}},
        raw_md5="md5",
        out_dir=root / "processed",
    )
    data = Processed(root / "processed")
    (root / "models").mkdir()
    results = []
    for name in ("zscore", "pca"):
        det = get_detector(name).fit(data["train"])
        det.save(root / "models" / f"{name}.npz")
        (root / "models" / f"{name}.json").write_text(json.dumps({"name": name, "params": det.get_params()}))
        results.append(
            threshold_and_measure(
                name,
                det,
                0.0,
                val_x=data["validation"],
                val_labels=data["validation_labels"],
                test_x=data["test"],
                test_labels=data["test_labels"],
                test_causes=data.causes("test"),
                alerting=AlertSettings(),
                vus_window=5,
            )
        )
    return root, data, results


def _register(root, uri, results, data, figures=None):
    selection = selection_rule("vus_pr", data["validation_labels"], 5)
    figures = figures or candidate_scores(
        selection, {r.name: r.val_scores for r in results}, {r.name: r.validation for r in results}
    )
    version = DataVersion("raw", "md5", "md5", "recorded", "commit", False, "params")
    return register.fn(
        tracking_uri=uri,
        experiment="vigil-test",
        artifact_root=root / "artifacts",
        model_name_override="vigil-test-model",
        processed_dir=root / "processed",
        models_dir=root / "models",
        results=results,
        figures=figures,
        selection=selection,
        version=version,
        run_params={},
        validation_report=None,
    )


@pytest.mark.slow
def test_a_failing_champion_lookup_stops_the_run_and_leaves_the_champion(tracking, prepared, monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail on the first 503, not after minutes of backoff
    _, direct, proxy = tracking
    proxied = f"http://127.0.0.1:{proxy.server_address[1]}"
    root, data, results = prepared
    first = _register(root, proxied, results, data)
    assert first.promoted
    client = mlflow.MlflowClient(direct)
    assert client.get_model_version_by_alias("vigil-test-model", CHAMPION).version == str(first.version)

    # a second run whose best model would win against any champion (a figure of 2 beats every
    # real one), so only an error can keep it from being promoted
    proxy.fail_lookups = True
    try:
        with pytest.raises(MlflowException, match=r"registered-models/search.*503"):
            _register(root, proxied, results, data, figures={"zscore": 2.0, "pca": 1.5})
    finally:
        proxy.fail_lookups = False
    versions = client.search_model_versions("name='vigil-test-model'")
    assert len(versions) == 2  # the second version was registered before the look-up failed ...
    assert client.get_model_version_by_alias("vigil-test-model", CHAMPION).version == str(
        first.version
    )  # ... not promoted


def test_a_model_with_no_champion_yet_is_promoted_without_any_error(tracking, prepared):
    import mlflow

    from tasks.registry import find_champion

    _, direct, _ = tracking
    client = mlflow.MlflowClient(direct)
    client.create_registered_model("vigil-no-champion")
    assert find_champion(client, "vigil-no-champion") is None


def test_pip_requirements_are_the_installed_versions():
    from importlib.metadata import version

    reqs = dict(r.split("==") for r in pip_requirements())
    assert reqs["torch"] == version("torch").split("+")[0]
    assert reqs["mlflow"] == version("mlflow")
    assert reqs["scikit-learn"] == version("scikit-learn")


@pytest.mark.slow
def test_the_mlflow_link_opens_the_training_runs_sorted_by_vus_pr(tmp_path):
    """`vigil run` and `vigil ui` print the MLflow UI's page of the training runs sorted by the
    selection metric (the UI itself opens on its list of experiments, and MLflow 3 showed an
    experiment with no kind as a GenAI one: traces and token costs); a real `mlflow ui` in a real
    Chromium shows that experiment's runs, best first, in the compare view with the metric's chart."""
    import shutil

    import mlflow
    from support.servers import WebDriver, serving

    from tasks.registry import experiment_page, setup_mlflow
    from vigil.plumbing import MLFLOW_WITHOUT_JOBS

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (`make test` installs them as root)")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert experiment_page("http://x", uri, "vigil", "val_vus_pr") == "http://x"  # nothing trained yet
    client = mlflow.MlflowClient(uri)
    client.create_experiment("other")
    client.create_experiment("vigil", artifact_location=str(tmp_path / "artifacts"))  # made before Vigil tagged
    exp = setup_mlflow(uri, "vigil", tmp_path / "artifacts").get_experiment_by_name("vigil").experiment_id
    for detector, vus in (("zscore", 0.21), ("knn", 0.64), ("pca", 0.37)):
        run = client.create_run(exp, run_name=detector)
        client.log_metric(run.info.run_id, "val_vus_pr", vus)
        client.log_metric(run.info.run_id, "val_f1", 0.5)
        client.set_terminated(run.info.run_id)
    port, driver_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    link = experiment_page(base, uri, "vigil", "val_vus_pr")
    assert link.startswith(f"{base}/#/experiments/{exp}/runs?")
    mlflow_ui = [str(Path(sys.executable).parent / "mlflow"), "ui", "--host", "127.0.0.1", "--port", str(port),
                 "--backend-store-uri", uri]  # fmt: skip
    with (
        serving(mlflow_ui, f"{base}/health", env={**os.environ, **MLFLOW_WITHOUT_JOBS}),
        serving([driver, f"--port={driver_port}"], f"http://127.0.0.1:{driver_port}/status"),
    ):
        browser = WebDriver(driver_port)
        try:
            browser.go(link)
            names = browser.wait_for(
                "const rows = [...document.querySelectorAll('[role=row] a')].map(a => a.textContent)"
                ".filter(t => ['zscore', 'knn', 'pca'].includes(t)); return rows.length == 3 ? rows : null;",
                deadline_s=120,
            )
            assert names == ["knn", "pca", "zscore"]  # by val_vus_pr, best first
            shown = browser.wait_for("const t = document.body.innerText; return "
                                     "t.includes('Model metrics') && t.includes('0.64') ? t : null;")  # fmt: skip
            assert "Sort: val_vus_pr" in shown and "val_vus_pr" in shown.split("Model metrics", 1)[1]
            assert "Token Usage" not in shown  # the model-training view, not the GenAI one it opened on before
            browser.screenshot(tmp_path / "mlflow.png")
        finally:
            browser.quit()
