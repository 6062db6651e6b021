"""`vigil web`: the live view an operator keeps open, read from the alerts store.

``/``: pick a series; its anomaly score with the threshold and its metrics over time,
incidents shaded; click an incident for its contributing metrics, ranked, the remedies
proposed for it (ranked by what has worked, with the past incidents behind each), and the
buttons that record a verdict and the remedy applied (`tasks.alerts.record_feedback`, with
its audit row; the ranker then learns from it). The page asks for
new points every ``web.refresh_seconds`` and extends the plots as `vigil score` writes them,
without a reload. ``/compare``: detectors side by side on one dataset of the benchmark report
(``reports/benchmark_summary.json``). FastAPI (which Prefect's server brings) and Plotly.js
(from the plotly package, served from here: the page needs no internet). Bound to
127.0.0.1 unless ``web.host`` or ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastapi import BackgroundTasks  # module level: FastAPI resolves the handlers' annotations here
from pydantic import BaseModel

from tasks.alerts import (
    VERDICTS,
    FeedbackError,
    alerts_of,
    feedback_of,
    incidents_of,
    open_store,
    points_after,
    rankings_of,
    record_feedback,
    sources,
)
from tasks.urls import storage_url

from .config import load_config

MAX_POINTS = 20000  # per request; the page asks again for the rest


class Verdict(BaseModel):
    """What the page's buttons send (`tasks.alerts.record_feedback` checks it)."""

    incident: int
    verdict: str
    who: str
    remedy: str | None = None
    resolved: bool | None = None
    minutes: float | None = None
    note: str | None = None


def make_app(
    store_url: str,
    report: Path,
    refresh_seconds: float,
    remedies: list[str] | None = None,
    on_feedback=None,
    who: str = "",
):
    """``remedies``: the catalogue's names (a reported remedy must be one); ``on_feedback``:
    called with the store's engine after a verdict is stored, in the background (the ranker's
    update); ``who``: the operator name the page offers first."""
    import plotly
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    engine = open_store(store_url)
    app = FastAPI(title="Vigil", docs_url=None, redoc_url=None)
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

    @app.get("/", response_class=HTMLResponse)
    def live() -> str:
        return (
            LIVE_PAGE.replace("__REFRESH_MS__", str(int(refresh_seconds * 1000)))
            .replace("__VERDICTS__", json.dumps(list(VERDICTS)))
            .replace("__REMEDIES__", json.dumps(remedies or []))
            .replace("__WHO__", json.dumps(who))
        )

    @app.get("/compare", response_class=HTMLResponse)
    def compare() -> str:
        return COMPARE_PAGE

    @app.get("/static/plotly.min.js")
    def plotly_file():
        return FileResponse(plotly_js, media_type="application/javascript")

    @app.get("/api/sources")
    def api_sources() -> list[dict]:
        with engine.connect() as conn:
            return sources(conn)

    @app.get("/api/points")
    def api_points(source: str, after: int = 0, limit: int = MAX_POINTS) -> list[dict]:
        with engine.connect() as conn:
            return points_after(conn, source, after, min(limit, MAX_POINTS))

    @app.get("/api/incidents")
    def api_incidents(source: str) -> list[dict]:
        with engine.connect() as conn:
            return incidents_of(conn, source)

    @app.get("/api/alerts")
    def api_alerts(incident: int) -> list[dict]:
        with engine.connect() as conn:
            return alerts_of(conn, incident)

    @app.get("/api/remedies")
    def api_remedies(incident: int) -> dict:
        """The remedies proposed for the incident, and every verdict on it, oldest first."""
        with engine.connect() as conn:
            return {"ranking": rankings_of(conn, [incident]).get(incident), "feedback": feedback_of(conn, incident)}

    @app.post("/api/feedback")
    def api_feedback(v: Verdict, background: BackgroundTasks) -> dict:
        try:
            fid = record_feedback(
                engine,
                v.incident,
                v.verdict,
                v.who,
                remedy=v.remedy or None,
                resolved=v.resolved,
                minutes=v.minutes,
                note=v.note or None,
                remedies=remedies,
            )
        except FeedbackError as exc:
            raise HTTPException(400, str(exc)) from None
        if on_feedback is not None:
            background.add_task(on_feedback, engine)
        return {"id": fid}

    @app.get("/api/benchmark")
    def api_benchmark() -> dict:
        if not report.is_file():
            raise HTTPException(404, f"no benchmark report at {report}: run `vigil benchmark`")
        data = json.loads(report.read_text())
        return {k: data[k] for k in ("datasets", "summary", "meta", "series")}

    return app


def run(args: argparse.Namespace) -> int:
    import getpass
    import threading

    import uvicorn

    from .feedback import update_ranker
    from .remedies import remedy_settings
    from .workspace import Workspace

    cfg = load_config(args.params)
    root = Path.cwd()  # the checkout, as for `vigil score`: a relative SQLite store is its
    host, port = args.host or cfg.web.host, args.port or cfg.web.port
    store = storage_url(cfg.scoring.store, root)
    settings = remedy_settings(cfg, root)
    one_at_a_time = threading.Lock()  # two verdicts in quick succession: one registration each, in turn

    def learn(engine) -> None:  # the ranker for the feedback now in force, registered where it is new
        with one_at_a_time:
            update_ranker(cfg, Workspace.at(root), engine, settings)

    app = make_app(
        store,
        root / "reports" / "benchmark_summary.json",
        cfg.web.refresh_seconds,
        remedies=settings.names,
        on_feedback=learn,
        who=cfg.feedback.who or getpass.getuser(),
    )
    print(f"Vigil live view on http://{host}:{port}/ (detectors compared: /compare); Ctrl-C stops", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


LIVE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Vigil: live</title>
<script src="/static/plotly.min.js"></script>
<style>
 body { font-family: system-ui, sans-serif; margin: 0; display: flex; height: 100vh; }
 #side { width: 300px; padding: 10px; border-right: 1px solid #ddd; overflow-y: auto; font-size: 13px; }
 #main { flex: 1; padding: 10px; overflow-y: auto; }
 table { border-collapse: collapse; width: 100%; } td, th { padding: 2px 4px; text-align: left; }
 tr.incident { cursor: pointer; } tr.incident:hover, tr.selected { background: #fde2e2; }
 .muted { color: #777; } #remedies li { margin-bottom: 4px; } #feedback label { display: block; margin: 3px 0; }
 #verdicts button { margin: 2px; } .ok { color: #070; } .err { color: #b00; }
</style></head>
<body>
<div id="side">
 <h3>Vigil</h3> <a href="/compare">compare detectors</a>
 <p><label>Series <select id="source"></select></label></p>
 <p id="status" class="muted"></p>
 <h4>Contributing metrics</h4><div id="contrib" class="muted">click an incident</div>
 <div id="feedback" style="display:none">
  <h4>Remedies, best first</h4><ol id="remedies"></ol>
  <h4>Verdict</h4>
  <label>Remedy applied <select id="fb-remedy"></select></label>
  <label>Resolved it <select id="fb-resolved"><option value="">-</option><option value="yes">yes</option>
   <option value="no">no</option></select></label>
  <label>Minutes <input id="fb-minutes" type="number" min="0" step="1" style="width:5em"></label>
  <label>Who <input id="fb-who" style="width:10em"></label>
  <div id="verdicts"></div>
  <p id="fb-status" class="muted"></p>
  <div id="fb-history" class="muted"></div>
 </div>
 <h4>Incidents, newest first</h4>
 <table id="incidents"><tr><th>start</th><th>steps</th><th>peak</th><th>verdict</th></tr></table>
</div>
<div id="main"><div id="scoreplot" style="height:38vh"></div><div id="metricplot" style="height:52vh"></div></div>
<script>
const REFRESH = __REFRESH_MS__, VERDICTS = __VERDICTS__, REMEDIES = __REMEDIES__, WHO = __WHO__;
let selected = null;
let source = null, lastId = 0, lastTs = '', features = [], drawn = false, incidents = [];
const get = (u) => fetch(u).then(r => r.json());

async function loadSources() {
  const list = await get('/api/sources');
  const sel = document.getElementById('source');
  const keep = sel.value;
  sel.innerHTML = list.map(s => `<option value="${s.source}">${s.source}</option>`).join('');
  if (keep) sel.value = keep;
  return list;
}

function incidentShapes() {
  return incidents.map(i => ({type: 'rect', xref: 'x', yref: 'paper', x0: i.start, x1: i.end, y0: 0, y1: 1,
                              fillcolor: 'rgba(220,40,40,0.18)', line: {color: 'rgba(220,40,40,0.35)', width: 2}}));
}

async function refreshIncidents() {
  incidents = await get('/api/incidents?source=' + encodeURIComponent(source));
  const t = document.getElementById('incidents');
  t.innerHTML = '<tr><th>start</th><th>steps</th><th>peak</th><th>verdict</th></tr>' +
    incidents.slice().reverse().map(i =>
      `<tr class="incident${i.id === selected ? ' selected' : ''}" data-id="${i.id}"><td>${i.start.slice(0, 19)}</td>` +
      `<td>${i.steps}</td><td>${i.peak_score.toFixed(3)}</td><td>${i.verdict ? i.verdict.verdict : ''}</td></tr>`
    ).join('');
  t.querySelectorAll('tr.incident').forEach(r => r.onclick = () => showIncident(+r.dataset.id, r));
  if (drawn) {
    Plotly.relayout('scoreplot', {shapes: incidentShapes()});
    Plotly.relayout('metricplot', {shapes: incidentShapes()});
  }
}

function showIncident(id, row) {
  document.querySelectorAll('tr.selected').forEach(r => r.classList.remove('selected'));
  row.classList.add('selected');
  const inc = incidents.find(i => i.id === id);
  document.getElementById('contrib').innerHTML = '<table>' + inc.top_metrics.map(([m, s]) =>
    `<tr><td>${m}</td><td><div style="background:#d33;height:10px;width:${Math.round(s * 160)}px"></div></td>` +
    `<td>${(s * 100).toFixed(1)}%</td></tr>`).join('') + '</table>' +
    `<p class="muted">${inc.start.slice(0, 19)} to ${inc.end.slice(0, 19)}, ${inc.detector} v${inc.version}, ` +
    `threshold ${inc.threshold.toFixed(3)}</p>`;
  // zoom both plots to the incident with 60 steps either side; show its top metrics only
  const xs = document.getElementById('scoreplot').data[0].x;
  const i0 = Math.max(0, xs.indexOf(inc.start) - 60), i1 = Math.min(xs.length - 1, xs.indexOf(inc.end) + 60);
  const range = {'xaxis.range': [xs[i0], xs[i1]]};
  Plotly.relayout('scoreplot', range);
  Plotly.relayout('metricplot', range);
  const top = new Set(inc.top_metrics.map(([m]) => m));
  Plotly.restyle('metricplot', {visible: features.map(f => top.has(f) ? true : 'legendonly')});
  selected = id;
  showRemedies(id);
}

const ENTITIES = {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'};
const esc = (s) => String(s).replace(/[&<>"']/g, c => ENTITIES[c]);

async function showRemedies(id) {
  const r = await get('/api/remedies?incident=' + id);
  const ranked = r.ranking ? r.ranking.ranking : [];
  document.getElementById('remedies').innerHTML = !r.ranking ? '<li class="muted">no ranking stored</li>' :
    !ranked.length ? '<li class="muted">no catalogue remedy applies</li>' : ranked.map(x =>
      `<li data-remedy="${esc(x.remedy)}"><b>${esc(x.remedy)}</b>: ${esc(x.description)}<br><span class="muted">` +
      `tried ${x.tried}x, resolved ${x.resolved}x` + (x.like_this.length ? '; like this: ' + x.like_this.map(p =>
        `#${p.incident} ${p.resolved ? 'resolved' : 'not resolved'}`).join(', ') : '') + '</span></li>').join('') +
      `<p class="muted">${esc(r.ranking.ranker)} ranker, ` + (r.ranking.ranker_version ?
        `version ${esc(r.ranking.ranker_version)}` : 'untrained: no outcome reported yet') + '</p>';
  const names = ranked.map(x => x.remedy).concat(REMEDIES.filter(n => !ranked.some(x => x.remedy === n)));
  document.getElementById('fb-remedy').innerHTML = '<option value="">none applied</option>' +
    names.map(n => `<option value="${esc(n)}">${esc(n)}</option>`).join('');
  document.getElementById('fb-history').innerHTML = r.feedback.map(f => `${esc(f.at.slice(0, 19))} ${esc(f.who)}: ` +
    `${esc(f.verdict)}` + (f.remedy ? `, ${esc(f.remedy)} ${f.resolved ? 'resolved it' : 'did not resolve it'}` +
    (f.minutes !== null ? ` in ${f.minutes} min` : '') : '')).join('<br>');
  document.getElementById('feedback').style.display = 'block';
}

async function sendVerdict(verdict) {
  const remedy = document.getElementById('fb-remedy').value, res = document.getElementById('fb-resolved').value;
  const minutes = document.getElementById('fb-minutes').value, who = document.getElementById('fb-who').value;
  localStorage.setItem('vigil-who', who);
  const body = {incident: selected, verdict: verdict, who: who, remedy: remedy || null,
                resolved: res === '' ? null : res === 'yes', minutes: minutes === '' ? null : +minutes};
  const out = await fetch('/api/feedback', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                            body: JSON.stringify(body)});
  const status = document.getElementById('fb-status');
  const answer = await out.json();
  if (out.ok) {
    status.className = 'ok'; status.textContent = `recorded: ${verdict} (feedback ${answer.id})`;
    document.body.dataset.feedback = String(answer.id);
  } else {
    status.className = 'err'; status.textContent = typeof answer.detail === 'string' ? answer.detail :
      JSON.stringify(answer.detail);
  }
  await showRemedies(selected);
  await refreshIncidents();
}

document.getElementById('verdicts').innerHTML = VERDICTS.map(v =>
  `<button data-verdict="${v}">${v.replace('_', ' ')}</button>`).join('');
document.querySelectorAll('#verdicts button').forEach(b => b.onclick = () => sendVerdict(b.dataset.verdict));
document.getElementById('fb-who').value = localStorage.getItem('vigil-who') || WHO;

async function poll() {
  if (!source) return;
  const pts = await get(`/api/points?source=${encodeURIComponent(source)}&after=${lastId}`);
  if (pts.length) {
    lastId = pts[pts.length - 1].id;
    const ts = pts.map(p => p.ts);
    if (!drawn) {
      Plotly.newPlot('scoreplot', [
        {x: ts, y: pts.map(p => p.score), name: 'score', mode: 'lines', line: {color: '#333'}},
        {x: ts, y: pts.map(p => p.threshold), name: 'threshold', mode: 'lines', line: {color: '#d33', dash: 'dash'}},
      ], {title: source + ': anomaly score', margin: {t: 40}, shapes: incidentShapes()});
      Plotly.newPlot('metricplot', features.map((f, j) => ({
        x: ts, y: pts.map(p => p.metrics ? p.metrics[j] : null), name: f, mode: 'lines'})),
        {title: 'metrics', margin: {t: 40}, shapes: incidentShapes()});
      drawn = true;
    } else {
      Plotly.extendTraces('scoreplot', {x: [ts, ts], y: [pts.map(p => p.score), pts.map(p => p.threshold)]}, [0, 1]);
      Plotly.extendTraces('metricplot', {x: features.map(() => ts),
        y: features.map((f, j) => pts.map(p => p.metrics ? p.metrics[j] : null))}, features.map((f, j) => j));
    }
    await refreshIncidents();
  }
  const total = +(document.body.dataset.points || 0) + pts.length;
  document.body.dataset.points = total.toString();
  if (pts.length) lastTs = pts[pts.length - 1].ts.slice(0, 19);
  document.getElementById('status').textContent = total ? `${total} steps, last ${lastTs}` : 'no points yet';
}

async function select(name, list) {
  source = name; lastId = 0; drawn = false; incidents = [];
  document.body.dataset.points = '0';
  features = (list.find(s => s.source === name) || {features: []}).features;
  Plotly.purge('scoreplot'); Plotly.purge('metricplot');
  await poll();
}

(async () => {
  let list = await loadSources();
  const sel = document.getElementById('source');
  sel.onchange = () => select(sel.value, list);
  if (list.length) await select(list[0].source, list);
  setInterval(async () => {
    if (!source) { list = await loadSources(); if (list.length) await select(list[0].source, list); }
    else await poll();
  }, REFRESH);
})();
</script></body></html>
"""

COMPARE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Vigil: detectors compared</title>
<script src="/static/plotly.min.js"></script>
<style>body { font-family: system-ui, sans-serif; margin: 16px; } td, th { padding: 2px 8px; text-align: right; }
 td:first-child, th:first-child { text-align: left; } table { border-collapse: collapse; }</style></head>
<body><a href="/">live view</a>
<h3>Detectors compared on one dataset (benchmark report, test tail; thresholds from the validation head)</h3>
<label>Dataset <select id="dataset"></select></label> <span id="meta"></span>
<div id="bars" style="height:420px"></div><table id="table"></table>
<script>
const FIG = [['vus_pr', 'VUS-PR'], ['auc_pr', 'AUC-PR'], ['point_f1', 'F1 (val. threshold)'],
             ['event_f1', 'event F1'], ['pa_f1', 'PA F1 (inflated)'], ['fit_seconds', 'fit s']];
fetch('/api/benchmark').then(r => r.json()).then(rep => {
  const sel = document.getElementById('dataset');
  sel.innerHTML = rep.datasets.map(d => `<option>${d}</option>`).join('');
  const draw = () => {
    const d = sel.value;
    const rows = rep.summary.filter(s => s.dataset === d).sort((a, b) => (b.vus_pr.mean || 0) - (a.vus_pr.mean || 0));
    document.getElementById('meta').textContent =
      `${rep.series[d].length} series; commit ${rep.meta.git_commit.slice(0, 12)}`;
    Plotly.newPlot('bars', [['vus_pr', 'VUS-PR'], ['point_f1', 'F1 at the validation threshold']].map(([k, n]) => ({
      type: 'bar', name: n, x: rows.map(s => s.detector), y: rows.map(s => s[k].mean)})),
      {barmode: 'group', margin: {t: 20}});
    const fmt = v => v === null || v === undefined ? 'n/a' : v.toFixed(3);
    document.getElementById('table').innerHTML = '<tr><th>detector</th><th>kind</th>' +
      FIG.map(f => `<th>${f[1]}</th>`).join('') + '</tr>' + rows.map(s => `<tr><td>${s.detector}</td>` +
      `<td>${s.family}</td>` + FIG.map(f => `<td>${fmt(s[f[0]].mean)}</td>`).join('') + '</tr>').join('');
  };
  sel.onchange = draw; draw();
});
</script></body></html>
"""
