// The compare page: detectors side by side from the benchmark report, every name put in as text
// (`plotlyText`: dom.js).
'use strict';
const FIG = [['vus_pr', 'VUS-PR'], ['auc_pr', 'AUC-PR'], ['point_f1', 'F1 (val. threshold)'],
             ['event_f1', 'event F1'], ['pa_f1', 'PA F1 (inflated)'], ['fit_seconds', 'fit s']];
const cell = (tag, text) => { const c = document.createElement(tag); c.textContent = text; return c; };
const row = (tag, texts) => { const r = document.createElement('tr'); r.append(...texts.map(t => cell(tag, t))); return r; };

fetch('/api/benchmark').then(r => r.json()).then(rep => {
  const sel = document.getElementById('dataset');
  if (!rep.datasets) { document.getElementById('meta').textContent = String(rep.detail); return; }
  sel.replaceChildren(...rep.datasets.map(d => { const o = document.createElement('option'); o.value = o.textContent = d; return o; }));
  const draw = () => {
    const d = sel.value;
    const rows = rep.summary.filter(s => s.dataset === d).sort((a, b) => (b.vus_pr.mean || 0) - (a.vus_pr.mean || 0));
    document.getElementById('meta').textContent =
      `${rep.series[d].length} series; commit ${String(rep.meta.git_commit).slice(0, 12)}`;
    Plotly.newPlot('bars', [['vus_pr', 'VUS-PR'], ['point_f1', 'F1 at the validation threshold']].map(([k, n]) => ({
      type: 'bar', name: n, x: rows.map(s => plotlyText(s.detector)), y: rows.map(s => s[k].mean)})),
      {barmode: 'group', margin: {t: 20}});
    const fmt = v => v === null || v === undefined ? 'n/a' : Number(v).toFixed(3);
    document.getElementById('table').replaceChildren(row('th', ['detector', 'kind', ...FIG.map(f => f[1])]),
      ...rows.map(s => row('td', [s.detector, s.family, ...FIG.map(f => fmt(s[f[0]].mean))])));
  };
  sel.onchange = draw; draw();
});
