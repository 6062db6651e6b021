"""The fleet page (`vigil web`'s ``/``) in a real headless Chromium on a store of 50 series:
sorted by urgency, each row linking to its series; a series' page in small multiples with its
series, time range and incident in the URL; an empty store says what to do. Screenshots under
the test's reports/."""

from __future__ import annotations

import shutil
from urllib.parse import quote

import numpy as np
import pytest
import yaml
from support import REPO
from support.servers import WebDriver, free_port, prefect_env, serving
from support.store import RULE, scored
from support.workspace import VIGIL

from tasks.alerts import Scorer, open_store

METRICS = ["cpu_busy", "mem_bytes", "disk_iops"]  # scales 1, 1e10, 1e3: one axis would flatten two of them
SCORER = Scorer("vigil-node", "7", "knn", RULE, METRICS)


def values(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0, 1, n), 8e9 + rng.normal(0, 1e8, n), 500 + rng.normal(0, 50, n)])


def seed_fleet(url: str) -> dict[str, str]:
    """50 series: 3 with an open incident (severities 5, 3, 2), 2 over the threshold at their
    last step without a raised incident, 1 whose incident closed (not reviewed), the rest
    quiet. Returns series -> the state the page should show."""
    engine = open_store(url)
    quiet = [0.1] * 30
    plan = {f"node-{k:02d}": ("normal", quiet) for k in range(44)}
    plan |= {"db-1": ("incident open", quiet[:20] + [2.0] * 4), "db-2": ("incident open", quiet[:20] + [5.0] * 4),
             "web-9": ("incident open", quiet[:20] + [3.0] * 4), "gw-1": ("over threshold", quiet[:29] + [1.5]),
             "gw-2": ("over threshold", quiet[:29] + [1.2]),
             "old-1": ("normal", quiet[:5] + [4.0] * 3 + quiet)}  # fmt: skip
    for k, (name, (_, scores)) in enumerate(sorted(plan.items())):
        scored(engine, name, scores, scorer=SCORER, values=values(len(scores), k))
    return {name: state for name, (state, _) in plan.items()}


@pytest.fixture
def browser_at(tmp_path):
    """A function: `vigil web` on the store ``url`` and a Chromium, yielding (browser, base URL)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (`make test` installs them as root)")
    import contextlib

    @contextlib.contextmanager
    def at(url: str):
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["scoring"]["store"] = url
        params["web"]["refresh_seconds"] = 0.5
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        port, driver_port = free_port(), free_port()
        cmd = [VIGIL, "web", "--params", str(tmp_path / "params.yaml"), "--port", str(port)]
        with (
            serving(cmd, f"http://127.0.0.1:{port}/api/sources", env=prefect_env(tmp_path), cwd=tmp_path),
            serving([driver, f"--port={driver_port}"], f"http://127.0.0.1:{driver_port}/status"),
        ):
            browser = WebDriver(driver_port)
            try:
                yield browser, f"http://127.0.0.1:{port}"
            finally:
                browser.quit()

    return at


@pytest.mark.slow
def test_the_fleet_page_sorts_fifty_series_by_urgency_and_links_each(tmp_path, browser_at):
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    states = seed_fleet(url)
    shots = tmp_path / "reports"
    with browser_at(url) as (browser, base):
        browser.go(base + "/")
        browser.wait_for("return document.body.dataset.ready == '1';")
        rows = browser.js("return [...document.querySelectorAll('tr.series')].map(r => "
                          "[r.dataset.source, r.querySelector('.badge').textContent, r.cells[4].textContent, "
                          "r.cells[5].textContent, r.querySelector('td:nth-child(2) a').href]);")  # fmt: skip
        assert len(rows) == 50
        order = [r[0] for r in rows]
        assert order[:5] == ["db-2", "web-9", "db-1", "gw-1", "gw-2"]  # open by severity, then over the threshold
        assert {r[0]: r[1] for r in rows} == states
        assert rows[0][2].startswith("\u00d75.00, 4 steps since 2026-12-01T00:20:00")
        assert {r[0]: r[3] for r in rows}["old-1"] == "1 (1 to review)"
        assert rows[0][4] == base + "/?source=db-2"
        browser.screenshot(shots / "fleet.png")
        # a series' page: one panel per metric, on its own scale; the URL keeps what is shown
        browser.js("document.querySelector('tr.series td:nth-child(5) a').click(); return 1;")  # db-2's open incident
        browser.wait_for("return document.body.dataset.ready == '1' && document.querySelector('tr.selected');")
        panels = browser.js("const p = document.getElementById('metricplot'); "
                            "return [p.data.map(t => t.yaxis), [...p.querySelectorAll('.annotation-text')]"
                            ".map(a => a.textContent)];")  # fmt: skip
        assert panels == [["y", "y2", "y3"], METRICS]
        ranges = browser.js("const l = document.getElementById('metricplot').layout; "
                            "return [l.yaxis.range, l.yaxis2.range, l.yaxis3.range];")  # fmt: skip
        assert ranges[1][1] > 1e9 and ranges[0][1] < 10 and 100 < ranges[2][1] < 1e4  # each metric its own scale
        browser.wait_for("const q = new URLSearchParams(location.search); return q.get('from') && q.get('incident');")
        browser.screenshot(shots / "series.png")
        # the operator zooms out (here by script, as a drag does): the URL follows, both plots too
        browser.js("Plotly.relayout('scoreplot', {'xaxis.range': ['2026-12-01 00:05:00', '2026-12-01 00:22:00']});"
                   "return 1;")  # fmt: skip
        link = browser.wait_for("const q = new URLSearchParams(location.search); "
                                "return q.get('from') == '2026-12-01 00:05:00' ? location.href : null;")  # fmt: skip
        assert browser.js("return document.getElementById('metricplot').layout.xaxis.range.map(String);")[0].startswith(
            "2026-12-01 00:05:00"
        )
        # the pasted link opens the same view: series, incident and that time range
        browser.go(link)
        browser.wait_for("return document.body.dataset.ready == '1';")
        q = browser.js("return Object.fromEntries(new URLSearchParams(location.search));")
        shown = browser.js("return document.getElementById('scoreplot').layout.xaxis.range.map(String);")
        selected = browser.js("return document.querySelector('tr.selected').dataset.id;")
        assert q["source"] == "db-2" and selected == q["incident"] and q["to"] == "2026-12-01 00:22:00"
        assert [t[:19] for t in shown] == ["2026-12-01 00:05:00", "2026-12-01 00:22:00"]
        # back on the fleet, a new series appears without a reload
        browser.go(base + "/")
        browser.wait_for("return document.body.dataset.series == '50';")
        browser.js("window.vigilLoadMarker = 1; return 1;")
        scored(open_store(url), "new-1", [0.1] * 10, scorer=SCORER, values=values(10, 99))
        browser.wait_for("return document.body.dataset.series == '51';")
        assert browser.js("return window.vigilLoadMarker;") == 1
    print(f"screenshots: {shots}")


@pytest.mark.slow
def test_an_empty_store_says_what_to_do(tmp_path, browser_at):
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    open_store(url).dispose()
    with browser_at(url) as (browser, base):
        browser.go(base + "/")
        browser.wait_for("return document.body.dataset.ready == '1';")
        said = browser.js("return document.getElementById('empty').offsetParent !== null && "
                          "document.getElementById('empty').textContent;")  # fmt: skip
        assert "vigil score" in said and "landing" in said and "vigil run" in said
        assert browser.js("return document.getElementById('fleet').offsetParent;") is None
        browser.go(base + "/?source=" + quote("no-such"))  # a link to a series the store does not hold
        browser.wait_for("return document.body.dataset.ready == '1';")
        assert browser.js("return document.getElementById('status').textContent;") == "no such series in the store"
