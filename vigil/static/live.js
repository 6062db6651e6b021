// The live page. Everything that comes from the alerts store (series, metric names, incident
// fields, remedy texts, notes, who) is put into the page as text (textContent, option values,
// Plotly labels escaped): never as HTML. The server's Content-Security-Policy forbids inline
// script, so markup that slipped through would still not run. `el`, `$`, `get`, `plotlyText`: dom.js.
'use strict';
let CONFIG = null, selected = null;
let source = null, lastId = 0, lastTs = '', features = [], drawn = false, incidents = [];
const option = (value, text) => el('option', {value: value, textContent: text === undefined ? value : text});

// The URL says what the page shows (series, time range, incident), so a link pasted into a
// ticket opens the same view; replaced, not pushed: the back button leaves the page.
function setUrl(changes) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '') q.delete(k); else q.set(k, String(v));
  }
  history.replaceState(null, '', '/?' + q.toString());
}

// One panel per metric, each on its own scale (small multiples), sharing the time axis.
const axis = (j) => j ? 'y' + (j + 1) : 'y';
function metricLayout() {
  return {grid: {rows: features.length, columns: 1, pattern: 'coupled', ygap: 0.3}, showlegend: false,
          height: Math.max(260, 70 * features.length), margin: {t: 24, l: 60, r: 10, b: 30},
          shapes: incidentShapes(),
          annotations: features.map((f, j) => ({text: plotlyText(f), xref: 'paper', yref: axis(j) + ' domain',
            x: 0, y: 1, xanchor: 'left', yanchor: 'bottom', showarrow: false, font: {size: 11}}))};
}
function showRange(range) {
  Plotly.relayout('scoreplot', {'xaxis.range': range});
  Plotly.relayout('metricplot', {'xaxis.range': range});
}

async function loadSources() {
  const list = await get('/api/sources');
  const sel = $('source');
  const keep = sel.value;
  sel.replaceChildren(...list.map(s => option(s.source)));
  if (keep) sel.value = keep;
  return list;
}

function incidentShapes() {
  return incidents.map(i => ({type: 'rect', xref: 'x', yref: 'paper', x0: i.start, x1: i.end, y0: 0, y1: 1,
                              fillcolor: 'rgba(220,40,40,0.18)', line: {color: 'rgba(220,40,40,0.35)', width: 2}}));
}

async function refreshIncidents() {
  incidents = await get('/api/incidents?source=' + encodeURIComponent(source));
  const rows = incidents.slice().reverse().map(i => {
    const row = el('tr', {class: 'incident' + (i.id === selected ? ' selected' : ''), dataset: {id: String(i.id)}},
      el('td', {}, String(i.start).slice(0, 19)), el('td', {}, i.steps), el('td', {}, Number(i.peak_score).toFixed(3)),
      el('td', {}, i.ratio === null ? '+' + Number(i.margin).toFixed(3) : '\u00d7' + Number(i.ratio).toFixed(2)),
      el('td', {}, i.verdict ? i.verdict.verdict : ''));
    row.onclick = () => showIncident(i.id, row);
    return row;
  });
  $('incidents').tBodies[0].replaceChildren(...rows);
  if (drawn) {
    Plotly.relayout('scoreplot', {shapes: incidentShapes()});
    Plotly.relayout('metricplot', {shapes: incidentShapes()});
  }
}

function showIncident(id, row, zoom = true) {
  document.querySelectorAll('tr.selected').forEach(r => r.classList.remove('selected'));
  row.classList.add('selected');
  const inc = incidents.find(i => i.id === id);
  const table = el('table', {}, ...inc.top_metrics.map(([m, s]) => {
    const bar = el('div', {class: 'bar'});
    bar.style.width = Math.round(Math.max(0, Math.min(1, Number(s))) * 160) + 'px';
    return el('tr', {}, el('td', {}, m), el('td', {}, bar), el('td', {}, (Number(s) * 100).toFixed(1) + '%'));
  }));
  const about = el('p', {class: 'muted'}, `${String(inc.start).slice(0, 19)} to ${String(inc.end).slice(0, 19)}, ` +
    `${inc.detector} v${inc.version}, threshold ${Number(inc.threshold).toFixed(3)}`);
  $('contrib').replaceChildren(table, about);
  // zoom both plots to the incident with 60 steps either side (unless a link named the range);
  // its top metrics stand out
  if (drawn) {
    const xs = $('scoreplot').data[0].x;
    const i0 = Math.max(0, xs.indexOf(inc.start) - 60), i1 = Math.min(xs.length - 1, xs.indexOf(inc.end) + 60);
    if (zoom) {
      showRange([xs[i0], xs[i1]]);
      setUrl({from: xs[i0], to: xs[i1]});
    }
    const top = new Set(inc.top_metrics.map(([m]) => m));  // its top metrics' panels in red
    Plotly.restyle('metricplot', {'line.color': features.map(f => top.has(f) ? '#d33' : '#888')});
  }
  selected = id;
  setUrl({incident: id});
  showRemedies(id);
}

function remedyItem(x) {
  const like = x.like_this.length ? '; like this: ' + x.like_this.map(p =>
    `#${p.incident} ${p.resolved ? 'resolved' : 'not resolved'}`).join(', ') : '';
  return el('li', {dataset: {remedy: String(x.remedy)}}, el('b', {}, x.remedy), ': ', x.description, el('br'),
            el('span', {class: 'muted'}, `tried ${x.tried}x, resolved ${x.resolved}x` + like));
}

function historyLine(f) {
  let text = `${String(f.at).slice(0, 19)} ${f.who}: ${f.verdict}`;
  if (f.remedy) text += `, ${f.remedy} ${f.resolved ? 'resolved it' : 'did not resolve it'}` +
    (f.minutes !== null ? ` in ${f.minutes} min` : '');
  if (f.note) text += ` (${f.note})`;
  return el('div', {}, text);
}

async function showRemedies(id) {
  const r = await get('/api/remedies?incident=' + encodeURIComponent(id));
  const ranked = r.ranking ? r.ranking.ranking : [];
  const list = $('remedies');
  if (!r.ranking) list.replaceChildren(el('li', {class: 'muted'}, 'no ranking stored'));
  else if (!ranked.length) list.replaceChildren(el('li', {class: 'muted'}, 'no catalogue remedy applies'));
  else list.replaceChildren(...ranked.map(remedyItem), el('p', {class: 'muted'}, `${r.ranking.ranker} ranker, ` +
    (r.ranking.ranker_version ? `version ${r.ranking.ranker_version}` : 'untrained: no outcome reported yet')));
  const names = ranked.map(x => x.remedy).concat(CONFIG.remedies.filter(n => !ranked.some(x => x.remedy === n)));
  $('fb-remedy').replaceChildren(option('', 'none applied'), ...names.map(n => option(n)));
  $('fb-history').replaceChildren(...r.feedback.map(historyLine));
  $('feedback').classList.remove('hidden');
}

async function sendVerdict(verdict) {
  const remedy = $('fb-remedy').value, res = $('fb-resolved').value;
  const minutes = $('fb-minutes').value, who = $('fb-who').value;
  localStorage.setItem('vigil-who', who);
  const body = {incident: selected, verdict: verdict, who: who, remedy: remedy || null,
                resolved: res === '' ? null : res === 'yes', minutes: minutes === '' ? null : +minutes};
  const out = await fetch('/api/feedback', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                            body: JSON.stringify(body)});
  const status = $('fb-status');
  const answer = await out.json();
  if (out.ok) {
    status.className = 'ok'; status.textContent = `recorded: ${verdict} (feedback ${answer.id})`;
    document.body.dataset.feedback = String(answer.id);
  } else {
    status.className = 'err';
    status.textContent = typeof answer.detail === 'string' ? answer.detail : JSON.stringify(answer.detail);
  }
  await showRemedies(selected);
  await refreshIncidents();
}

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
      ], {title: {text: plotlyText(source) + ': anomaly score'}, margin: {t: 40, l: 60, r: 10},
          legend: {orientation: 'h', x: 1, xanchor: 'right', y: 1.02, yanchor: 'bottom'}, shapes: incidentShapes()});
      Plotly.newPlot('metricplot', features.map((f, j) => ({
        x: ts, y: pts.map(p => p.metrics ? p.metrics[j] : null), name: plotlyText(f), mode: 'lines',
        xaxis: 'x', yaxis: axis(j), line: {width: 1, color: '#444'}})), metricLayout());
      drawn = true;
      const asked = new URLSearchParams(location.search);
      if (asked.get('from') && asked.get('to')) showRange([asked.get('from'), asked.get('to')]);
      // a zoom or pan on either plot moves the other, and goes into the URL
      for (const [id, other] of [['scoreplot', 'metricplot'], ['metricplot', 'scoreplot']]) {
        $(id).on('plotly_relayout', (e) => {
          // a drag gives the range's ends, a relayout call the range
          const ends = e['xaxis.range[0]'] !== undefined ? [e['xaxis.range[0]'], e['xaxis.range[1]']] : null;
          const range = e['xaxis.range'] || ends;
          if (range) {
            const shown = $(other).layout.xaxis.range || [];
            if (shown[0] !== range[0] || shown[1] !== range[1]) Plotly.relayout(other, {'xaxis.range': range});
            setUrl({from: String(range[0]).slice(0, 19), to: String(range[1]).slice(0, 19)});
          } else if (e['xaxis.autorange']) {
            if (!$(other).layout.xaxis.autorange) Plotly.relayout(other, {'xaxis.autorange': true});
            setUrl({from: null, to: null});
          }
        });
      }
    } else {
      Plotly.extendTraces('scoreplot', {x: [ts, ts], y: [pts.map(p => p.score), pts.map(p => p.threshold)]}, [0, 1]);
      Plotly.extendTraces('metricplot', {x: features.map(() => ts),
        y: features.map((f, j) => pts.map(p => p.metrics ? p.metrics[j] : null))}, features.map((f, j) => j));
    }
    await refreshIncidents();
  }
  const total = +(document.body.dataset.points || 0) + pts.length;
  document.body.dataset.points = total.toString();
  if (pts.length) lastTs = String(pts[pts.length - 1].ts).slice(0, 19);
  $('status').textContent = total ? `${total} steps, last ${lastTs}` : 'no points yet';
}

async function select(name, list) {
  if (source !== null && source !== name) setUrl({source: name, incident: null, from: null, to: null});
  source = name; lastId = 0; drawn = false; incidents = [];
  document.body.dataset.points = '0';
  features = (list.find(s => s.source === name) || {features: []}).features;
  Plotly.purge('scoreplot'); Plotly.purge('metricplot');
  await poll();
}

(async () => {
  CONFIG = await get('/api/config');
  $('verdicts').replaceChildren(...CONFIG.verdicts.map(v => {
    const b = el('button', {dataset: {verdict: v}}, v.replace('_', ' '));
    b.onclick = () => sendVerdict(v);
    return b;
  }));
  $('fb-who').value = localStorage.getItem('vigil-who') || CONFIG.who;
  let list = await loadSources();
  const sel = $('source');
  sel.onchange = () => select(sel.value, list);
  // a link names the series and incident to open (?source=...&incident=...: an alert's page)
  const asked = new URLSearchParams(location.search);
  const first = asked.has('source') ? list.find(s => s.source === asked.get('source')) : list[0];
  if (first) { sel.value = first.source; await select(first.source, list); }
  else if (asked.has('source')) $('status').textContent = 'no such series in the store';
  const row = document.querySelector(`tr.incident[data-id="${Number(asked.get('incident')) || 0}"]`);
  if (row) showIncident(Number(row.dataset.id), row, !(asked.get('from') && asked.get('to')));
  document.body.dataset.ready = '1';
  setInterval(async () => {
    if (!source) {  // the store was empty, or the series asked for not in it yet
      list = await loadSources();
      const name = asked.has('source') ? asked.get('source') : (list[0] || {}).source;
      if (list.some(s => s.source === name)) { sel.value = name; await select(name, list); }
    }
    else await poll();
  }, CONFIG.refresh_ms);
})();
