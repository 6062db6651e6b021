"""Vigil's image, for real (`make container-test`; README: A container): `vigil run` inside
it trains and registers a champion on a new named volume (the checkout), `vigil score` makes
the alerts store, then the pod of container/vigil-pod.yaml
(the live page, `vigil serve`'s Prefect server, MLflow's UI) answers on loopback ports. Debian's
podman with runc (container/containers.conf). Skipped in `make test`: building the image takes
minutes, so `make container-test` builds it and runs this (VIGIL_CONTAINER_TEST=1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
import uuid

import pytest
from support import REPO
from support.servers import free_port

pytestmark = pytest.mark.slow
IMAGE = "localhost/vigil:latest"
ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "container" / "containers.conf")}


def podman(*args, check=True, timeout=900):
    out = subprocess.run(["podman", *args], capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        )
    return out


@pytest.fixture(scope="module")
def image():
    if not os.environ.get("VIGIL_CONTAINER_TEST"):
        pytest.skip("the image's test runs under `make container-test`, which builds the image first (minutes)")
    if not (shutil.which("podman") and shutil.which("runc")):
        pytest.skip("Debian's podman and runc are not installed (`make test` installs them as root)")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.skip(f"{IMAGE} is not built: `make container` builds it (minutes), `make container-test` tests it")
    return IMAGE


def _answers(url: str, seconds: float = 180) -> str:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return urllib.request.urlopen(url, timeout=5).read().decode()
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer within {seconds:.0f} s"
            time.sleep(1)


def test_the_image_registers_a_champion_and_its_pod_serves_the_page(image, tmp_path):
    tag = uuid.uuid4().hex[:8]
    volumes = {"vigil-checkout": f"vigil-checkout-test-{tag}"}
    ports = {"8050": str(free_port()), "4200": str(free_port()), "5000": str(free_port())}
    pod = (REPO / "container" / "vigil-pod.yaml").read_text()
    for name, test_name in volumes.items():
        pod = pod.replace(f"claimName: {name}}}", f"claimName: {test_name}}}")
    for port, test_port in ports.items():
        pod = pod.replace(f'"{port}"', f'"{test_port}"')
    pod = pod.replace("  name: vigil\n", f"  name: vigil-test-{tag}\n")
    spec = tmp_path / "pod.yaml"
    spec.write_text(pod)
    try:
        checkout = f"{volumes['vigil-checkout']}:/srv/vigil"
        trained = podman(
            "run", "--rm", "--network", "host", "-v", checkout, image, "vigil", "run", "--new-data-version"
        )
        assert "champion" in trained.stdout, trained.stdout[-2000:]
        scored = podman("run", "--rm", "--network", "host", "-v", checkout, image, "vigil", "score")
        assert "scored with" in scored.stdout  # the first scoring run makes the alerts store the page reads
        podman("kube", "play", str(spec))
        page = _answers(f"http://127.0.0.1:{ports['8050']}/")
        assert "<html" in page.lower()
        fleet = _answers(f"http://127.0.0.1:{ports['8050']}/api/fleet")
        assert fleet.startswith("{") or fleet.startswith("[")
        assert _answers(f"http://127.0.0.1:{ports['4200']}/api/health").strip() == "true"
        assert "MLflow" in _answers(f"http://127.0.0.1:{ports['5000']}/")
        # the champion `vigil run` registered is in the registry the pod's MLflow serves
        models = _answers(f"http://127.0.0.1:{ports['5000']}/api/2.0/mlflow/registered-models/search")
        assert "champion" in models
    finally:
        podman("kube", "down", str(spec), check=False)
        podman("volume", "rm", "-f", *volumes.values(), check=False)
