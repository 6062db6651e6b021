// What the pages share: building elements from data, never from markup. Every page loads this
// first (`defer` scripts run in order).
'use strict';
const $ = (id) => document.getElementById(id);
const get = (u) => fetch(u).then(r => r.json());

// An element with attributes and children; strings become text nodes, never markup.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
// Plotly reads a few tags (<b>, <br>, <a>) and entities in its labels: escape them, so a name shows as written.
const plotlyText = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
