// The fleet page: every series in the alerts store, most urgent first (the server sorts), each
// row a link to its page. Everything from the store goes into the page as text (textContent,
// URL-encoded query values), never as markup (`el`, `$`, `get`: dom.js).
'use strict';
const num = (x, d) => x === null || x === undefined ? '' : Number(x).toFixed(d);
const severity = (i) => i.ratio === null ? '+' + num(i.margin, 3) : '\u00d7' + num(i.ratio, 2);
const seriesLink = (name, incident) => '/?source=' + encodeURIComponent(name) +
  (incident ? '&incident=' + encodeURIComponent(incident) : '');

function state(s) {
  if (s.open) return ['incident', 'incident open'];
  if (!s.last) return ['nodata', 'no scores yet'];
  if (s.last.score >= s.last.threshold) return ['above', 'over threshold'];
  return ['ok', 'normal'];
}

function row(s) {
  const [cls, text] = state(s);
  const open = s.open ? el('a', {href: seriesLink(s.source, s.open.id)},
    `${severity(s.open)}, ${s.open.steps} steps since ${String(s.open.start).slice(0, 19)}`) : '';
  return el('tr', {class: 'series state-' + cls, dataset: {source: s.source}},
    el('td', {}, el('span', {class: 'badge ' + cls}, text)),
    el('td', {}, el('a', {href: seriesLink(s.source)}, s.source)),
    el('td', {}, s.last ? num(s.last.score, 3) : ''),
    el('td', {}, s.last ? num(s.last.threshold, 3) : ''),
    el('td', {}, open),
    el('td', {}, s.incidents ? `${s.incidents} (${s.unreviewed} to review)` : '0'),
    el('td', {}, s.last ? String(s.last.ts).slice(0, 19) : ''),
    el('td', {}, s.model ? `${s.model} v${s.version}` : ''));
}

async function refresh() {
  const list = await get('/api/fleet');
  $('empty').classList.toggle('hidden', list.length > 0);
  $('fleet').classList.toggle('hidden', list.length === 0);
  $('fleet').tBodies[0].replaceChildren(...list.map(row));
  const open = list.filter(s => s.open).length;
  $('status').textContent = `${list.length} series, ${open} with an open incident; ` +
    `updated ${new Date().toISOString().slice(11, 19)} UTC`;
  document.body.dataset.series = String(list.length);
}

(async () => {
  const config = await get('/api/config');
  await refresh();
  document.body.dataset.ready = '1';
  setInterval(refresh, config.refresh_ms);
})();
