// The entity page: look up every feature of one entity at now or at a given
// instant (GET /v1/features/{set}/{entity}; for a composite key
// GET /v1/features/{set}?FIELD=...&FIELD=..., an input per key part), and
// draw the history of some
// of them over a range, sampled by past reads (the same GET with at=, at
// most four in flight), a line per feature, with markers coloured by
// status and gaps where a value is NOT_FOUND. Values read at now follow
// the live values: re-read every 5 s (?every=SECONDS to change), one read
// in flight at most, paused while the tab is hidden or the Live toggle is
// off, a changed value highlighted; a read of the past (at=) is read once.
/* global uPlot */
import {APIError, api, el, errorBox, featuresPath, formatValue, guard, keyFields, keyText, mapLimit, parseDuration, start, statusBadge, timeCell} from './common.js';

const colors = ['#2458c6', '#d9480f', '#2b8a3e', '#862e9c'];
const maxDrawn = colors.length;
const concurrency = 4;
const plottable = new Set(['int64', 'float64', 'bool']);

const $ = (id) => document.getElementById(id);
const state = {sets: new Map(), set: null, key: '', at: '', chart: null, resize: null};

const featurePath = featuresPath;

const pageParams = new URLSearchParams(location.search);
// every is the interval of live reads in milliseconds (?every=SECONDS, at
// least 1; 5 by default).
const every = Math.max(1, Number(pageParams.get('every')) || 5) * 1000;

// keyInputs shows the key input of the chosen set: one for a single key,
// one per part (each named like its key field) for a composite key.
function keyInputs() {
  const fs = state.sets.get($('set').value);
  const fields = keyFields(fs);
  const single = fields.length <= 1;
  $('key-label').hidden = !single;
  $('key').required = single;
  $('key').placeholder = single && fields.length ? fields[0] : 'entity key';
  $('key-parts').replaceChildren(...(single ? [] : fields.map((k) => el('label', {}, k + ' ',
    el('input', {class: 'key', 'data-part': k, required: true, spellcheck: 'false', autocomplete: 'off', placeholder: k})))));
}

// currentKey is the key the inputs give: a string, or an object of parts.
function currentKey() {
  const parts = [...$('key-parts').querySelectorAll('input[data-part]')];
  if (!parts.length) return $('key').value;
  return Object.fromEntries(parts.map((i) => [i.dataset.part, i.value]));
}

// definition describes a stored feature (op, field, its parameters, window,
// tile, filter) or a derived one (its expression).
function definition(f) {
  if (!f) return '';
  if (f.expr !== undefined) return '= ' + f.expr + ' (derived at read time)';
  const param = f.k ? 'k ' + f.k : f.percentiles ? f.percentiles.join(', ') : f.buckets ? f.buckets + ' buckets' : '';
  const args = [f.field, param].filter(Boolean).join('; ');
  return f.op + (args ? '(' + args + ')' : '') + ' over ' + f.window + ', ' + f.tile + ' tiles' + (f.where ? ', where ' + f.where : '');
}

function syncURL(extra = {}) {
  const q = new URLSearchParams();
  if (pageParams.has('every')) q.set('every', pageParams.get('every'));
  if (state.set) q.set('set', state.set.name);
  if (typeof state.key === 'object') for (const [k, v] of Object.entries(state.key)) q.set('key.' + k, v);
  else if (state.key) q.set('key', state.key);
  if (state.at) q.set('at', state.at);
  for (const [k, v] of Object.entries(extra)) if (v) q.set(k, v);
  history.replaceState(null, '', '?' + q.toString());
}

// --- lookup ---------------------------------------------------------------

// renderValues shows one read of an entity's features. prev (a live
// re-read) maps each feature to its value and status of the read before:
// a value or status that differs gets the class "changed" (highlighted
// briefly, see app.css) until the next read. It returns the map of this
// read.
function renderValues(fs, res, prev) {
  const defs = new Map([...(fs.features || []), ...(fs.derived || [])].map((f) => [f.name, f]));
  const seen = new Map();
  let changes = 0;
  const rows = Object.entries(res.features || {}).map(([name, v]) => {
    const value = JSON.stringify(v.value === undefined ? null : v.value);
    seen.set(name, {value, status: v.status});
    const was = prev && prev.get(name);
    const valueMoved = !!was && was.value !== value;
    const statusMoved = !!was && was.status !== v.status;
    if (valueMoved || statusMoved) changes++;
    return el('tr', {'data-feature': name, 'data-status': v.status, 'data-changed': valueMoved || statusMoved},
      el('td', {class: 'head'}, el('b', {text: name})),
      el('td', {class: valueMoved ? 'value changed' : 'value', 'data-label': 'value', 'data-value': value, text: formatValue(v.value),
        title: valueMoved ? 'was ' + formatValue(JSON.parse(was.value)) : null}),
      el('td', {class: statusMoved ? 'changed' : null, 'data-label': 'status', title: statusMoved ? 'was ' + was.status : null}, statusBadge(v.status), v.as_of
        ? el('span', {class: 'asof sub', title: v.as_of, text: 'as of ' + v.as_of.replace('T', ' ').replace(/\.\d+Z$/, 'Z')})
        : null),
      el('td', {class: 'sub', 'data-label': 'definition', text: definition(defs.get(name))}),
    );
  });
  $('values').tBodies[0].replaceChildren(...rows);
  $('values-card').dataset.changes = String(changes);
  $('values-title').textContent = fs.name + ' / ' + keyText(res.entity);
  $('values-at').replaceChildren('at ', timeCell(res.at), state.at ? '' : ' (now, by the server\'s clock)');
  const f = res.freshness || {};
  $('values-freshness').replaceChildren(
    el('dt', {text: 'batch watermark'}), el('dd', {}, timeCell(f.batch_watermark)),
    el('dt', {text: 'stream watermark'}), el('dd', {}, timeCell(f.stream_watermark)),
    el('dt', {text: 'newest stream tile'}), el('dd', {}, timeCell(f.stream_latest_tile)),
  );
  $('values-card').hidden = false;
  $('values-card').dataset.entity = keyText(res.entity);
  return seen;
}

// --- live reads -----------------------------------------------------------

// live re-reads the values shown when they were read at now. gen counts
// the lookups: a read of an earlier lookup is dropped. One read is in
// flight at most; the next is timed from the end of the one before, with
// the same interval after an error.
const live = {on: true, gen: 0, target: null, timer: 0, inflight: null, prev: null, reads: 0, updated: 0};

// stopLive ends the live reads of the values shown (a new lookup, or none).
function stopLive() {
  live.gen++;
  live.target = null;
  clearTimeout(live.timer);
  live.timer = 0;
  if (live.inflight) live.inflight.abort();
  live.inflight = null;
  $('values-card').dataset.inflight = 'false';
  renderLive();
}

// startLive follows the values of a lookup at now, first rendered from res.
function startLive(set, key, prev) {
  stopLive();
  live.target = {set, key};
  live.prev = prev;
  live.reads = 1;
  live.updated = Date.now();
  renderLive();
  schedule();
}

const hidden = () => document.visibilityState === 'hidden';

function schedule() {
  clearTimeout(live.timer);
  live.timer = 0;
  if (!live.target || !live.on || hidden() || live.inflight) return;
  live.timer = setTimeout(refresh, every);
}

async function refresh() {
  live.timer = 0;
  if (!live.target || !live.on || hidden() || live.inflight) return;
  const gen = live.gen;
  const {set, key} = live.target;
  const ctl = new AbortController();
  live.inflight = ctl;
  const card = $('values-card');
  card.dataset.inflight = 'true';
  try {
    const res = await api(featurePath(set.name, key, {}), {signal: ctl.signal});
    if (gen !== live.gen) return;
    live.prev = renderValues(set, res, live.prev);
    live.reads++;
    live.updated = Date.now();
    $('values-error').replaceChildren();
  } catch (err) {
    if (gen !== live.gen || (err && err.name === 'AbortError')) return;
    if (err instanceof APIError && err.status === 401) {
      // The key was dropped or replaced: ask for it, then look up again.
      stopLive();
      showAuth(err);
      return;
    }
    // Shown above the values, which stay those of the last good read
    // ("updated" says when); the next read is tried after the interval.
    $('values-error').replaceChildren(errorBox(err));
  } finally {
    if (live.inflight === ctl) {
      live.inflight = null;
      card.dataset.inflight = 'false';
    }
  }
  if (gen !== live.gen) return;
  renderLive();
  schedule();
}

// showAuth is set by the page's loader: it shows the key prompt for err.
let showAuth = () => {};

// renderLive shows the Live toggle and when the values were last read.
function renderLive() {
  const box = $('live-box');
  const button = $('live');
  const updated = $('updated');
  box.hidden = !live.target;
  button.setAttribute('aria-pressed', String(live.on));
  button.textContent = live.on ? 'Live' : 'Paused';
  button.title = live.on ? 'Values are re-read every ' + every / 1000 + ' s; click to pause' : 'Click to re-read the values every ' + every / 1000 + ' s';
  box.classList.toggle('off', !live.on);
  updated.dataset.reads = String(live.reads);
  updated.dataset.updated = live.updated ? new Date(live.updated).toISOString() : '';
  if (!live.target) {
    updated.textContent = '';
    return;
  }
  const when = 'updated ' + new Date(live.updated).toISOString().slice(11, 19) + 'Z';
  updated.textContent = when + (!live.on ? ' (paused)' : hidden() ? ' (paused while the tab is hidden)' : ' (every ' + every / 1000 + ' s)');
}

function toggleLive() {
  live.on = !live.on;
  renderLive();
  if (live.on) refresh(); // at once, then every interval
  else {
    clearTimeout(live.timer);
    live.timer = 0;
  }
}

function visibilityChanged() {
  renderLive();
  if (hidden()) {
    clearTimeout(live.timer);
    live.timer = 0;
  } else {
    refresh(); // back on the tab: read now, then every interval
  }
}

function renderFeatureChoices(fs, chosen) {
  const feats = fs.features || [];
  let picked = chosen && chosen.length ? chosen : feats.filter((f) => plottable.has(f.result_type)).slice(0, 2).map((f) => f.name);
  if (!picked.length && feats.length) picked = [feats[0].name];
  $('history-features').replaceChildren(...feats.map((f) => {
    const box = el('input', {type: 'checkbox', name: 'feature', value: f.name, checked: picked.includes(f.name)});
    const drawable = plottable.has(f.result_type);
    return el('label', {class: drawable ? '' : 'disabled', title: drawable ? definition(f) : f.result_type + ': shown in the table, not drawn'},
      box, f.name, drawable ? '' : ' (table)');
  }));
}

let lookups = 0; // lookups started: only the newest one renders

async function lookup() {
  const set = state.sets.get($('set').value);
  const key = currentKey();
  const at = $('at').value.trim();
  $('lookup-error').replaceChildren();
  if (!set) throw new Error('choose a feature set');
  stopLive(); // the values of the lookup before are no longer followed
  $('values-error').replaceChildren();
  const seq = ++lookups;
  let res;
  try {
    res = await api(featurePath(set.name, key, {at}));
  } catch (err) {
    if (seq !== lookups) return; // a later lookup answers
    $('values-card').hidden = true; // not the values of an earlier lookup under this error
    throw err;
  }
  if (seq !== lookups) return;
  const changed = !state.set || state.set.name !== set.name;
  state.set = set;
  state.key = key;
  state.at = at;
  const read = renderValues(set, res, null);
  if (!at) startLive(set, key, read); // a read of the past stays one-off
  if (changed || !$('history-features').children.length) {
    const wanted = new URLSearchParams(location.search).get('features');
    renderFeatureChoices(set, wanted ? wanted.split(',') : null);
  }
  $('history-card').hidden = false;
  syncURL();
}

// --- history --------------------------------------------------------------

// iso is an instant in milliseconds as RFC 3339 in UTC, to the second.
const iso = (ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

const rfc3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

function parseInstant(text, what) {
  if (!rfc3339.test(text)) throw new Error(what + ' "' + text.slice(0, 64) + '" is not an RFC 3339 instant (like 2026-11-30T08:00:00Z)');
  return Date.parse(text);
}

// instants returns n instants from `from` to `to` (milliseconds), the last
// one `to`; when the step is a minute or more the others are whole minutes,
// on the tile boundaries of minute tiles (reads there are exact at `at`).
function instants(from, to, n) {
  const step = (to - from) / (n - 1);
  const out = [];
  for (let i = 0; i < n - 1; i++) {
    let t = from + i * step;
    if (step >= 60e3) t = Math.floor(t / 60e3) * 60e3;
    if (!out.length || t > out[out.length - 1]) out.push(t);
  }
  out.push(to);
  return out;
}

// toPlot is a feature value as a number to draw, null for a gap, or
// undefined when it cannot be drawn (strings, lists, non-finite floats).
function toPlot(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  return undefined;
}

async function drawHistory() {
  const fs = state.set;
  const chosen = [...document.querySelectorAll('#history-features input:checked')].map((b) => b.value);
  $('history-error').replaceChildren();
  if (!chosen.length) throw new Error('choose at least one feature');
  const n = Number($('points').value);
  const range = $('range').value;
  const progress = $('history-progress');
  const draw = $('draw');
  draw.disabled = true;
  try {
    // The range ends at "to", the custom one or the instant of the lookup;
    // with neither, at the server's now, taken from a real-time read.
    let to;
    let last = null;
    const toText = range === 'custom' ? $('to').value.trim() : state.at;
    if (toText) {
      to = parseInstant(toText, 'to');
    } else {
      last = await api(featurePath(fs.name, state.key, {features: chosen.join(',')}));
      to = Date.parse(last.at);
    }
    let from = range === 'custom' ? parseInstant($('from').value.trim(), 'from') : to - parseDuration(range);
    if (!(from < to)) throw new Error('"from" must be before "to"');
    // The API reads `at` only where every window lies within the set's
    // retention (at ≥ now − retention + longest window + its tile): start
    // there, a minute later for the time the reads take.
    let clamped = '';
    const retention = parseDuration(fs.retention);
    if (retention > 0) {
      const now = last ? to : Date.now();
      const reach = Math.max(...chosen.map((n) => {
        const f = (fs.features || []).find((x) => x.name === n);
        return f ? parseDuration(f.window) + parseDuration(f.tile) : 0;
      }));
      const oldest = Math.ceil((now - retention + reach + 60e3) / 60e3) * 60e3;
      if (from < oldest && oldest < to) {
        clamped = 'The range starts at ' + iso(oldest) + ': ' + fs.name + ' keeps ' + fs.retention +
          ' of tiles, so these windows can be read no further back.';
        from = oldest;
      }
    }
    const ats = instants(from, to, n);
    if (last) ats.pop();
    let done = 0;
    progress.textContent = 'Reading ' + ats.length + ' instants…';
    const reads = await mapLimit(ats, concurrency, async (t) => {
      const r = await api(featurePath(fs.name, state.key, {features: chosen.join(','), at: new Date(t).toISOString()}));
      done++;
      progress.textContent = 'Read ' + done + ' of ' + ats.length + ' instants…';
      return r;
    });
    if (last) reads.push(last);
    const ok = reads.filter((r) => !(r instanceof Error));
    const failed = reads.filter((r) => r instanceof Error);
    if (failed.length) {
      const box = errorBox(failed[0]);
      box.prepend(failed.length + ' of ' + reads.length + ' reads failed; the first said: ');
      $('history-error').replaceChildren(box);
    }
    progress.textContent = ok.length + ' reads from ' + iso(from) + ' to ' + iso(to) + '. ' + clamped;
    renderChart(fs, chosen, ok);
    renderHistoryTable(chosen, ok);
    syncURL({features: chosen.join(',')});
  } finally {
    draw.disabled = false;
  }
}

// series builds the chart's aligned data: x = the instant each value is
// exact at (its as_of, else the read's at), per feature its values (null
// where NOT_FOUND) and statuses.
function series(features, reads) {
  const xs = new Set();
  const points = features.map(() => new Map());
  for (const r of reads) {
    features.forEach((f, i) => {
      const v = r.features && r.features[f];
      if (!v) return;
      const x = Date.parse(v.as_of || r.at) / 1000;
      xs.add(x);
      points[i].set(x, {y: toPlot(v.value), status: v.status});
    });
  }
  const x = [...xs].sort((a, b) => a - b);
  const ys = points.map((m) => x.map((t) => (m.has(t) ? m.get(t).y : undefined)));
  const statuses = points.map((m) => x.map((t) => (m.has(t) ? m.get(t).status : undefined)));
  return {x, ys, statuses};
}

function renderChart(fs, chosen, reads) {
  const defs = new Map([...(fs.features || []), ...(fs.derived || [])].map((f) => [f.name, f]));
  const box = $('chart');
  if (state.chart) {
    state.chart.destroy();
    state.chart = null;
  }
  if (state.resize) state.resize.disconnect();
  box.replaceChildren();
  const all = series(chosen, reads);
  // Draw the features whose values are numbers or booleans, up to four.
  const drawn = [];
  chosen.forEach((f, i) => {
    const values = all.ys[i];
    const numeric = values.some((v) => typeof v === 'number') || (values.every((v) => v === null || v === undefined) && plottable.has(defs.get(f)?.result_type));
    const hasUndrawable = reads.some((r) => r.features && r.features[f] && toPlot(r.features[f].value) === undefined);
    if (numeric && !hasUndrawable && drawn.length < maxDrawn) drawn.push(i);
  });
  const notDrawn = chosen.filter((_, i) => !drawn.includes(i));
  $('history-note').textContent = notDrawn.length
    ? 'Not drawn (values that are not numbers, or more than ' + maxDrawn + ' features): ' + notDrawn.join(', ') + '; see the table.'
    : '';
  let pts = 0;
  let stale = 0;
  let missing = 0;
  for (const i of drawn) {
    all.ys[i].forEach((y, j) => {
      if (y === undefined) return;
      if (y === null) missing++;
      else pts++;
      if (all.statuses[i][j] === 'STALE' && y !== null) stale++;
    });
  }
  box.dataset.series = String(drawn.length);
  box.dataset.points = String(pts);
  box.dataset.stale = String(stale);
  box.dataset.notFound = String(missing);
  box.dataset.reads = String(reads.length);
  $('status-legend').hidden = drawn.length === 0;
  if (!drawn.length || !all.x.length) return;

  const statusOf = drawn.map((i) => all.statuses[i]);
  const narrow = box.clientWidth < 500;
  const opts = {
    width: Math.max(280, box.clientWidth),
    height: narrow ? 260 : 340,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
    scales: Object.fromEntries([['x', {time: true}], ...drawn.map((_, k) => ['y' + k, {}])]),
    series: [
      {label: 'instant (UTC)', value: (u, v) => (v == null ? '—' : new Date(v * 1000).toISOString().replace('.000Z', 'Z'))},
      ...drawn.map((i, k) => ({
        label: chosen[i], scale: 'y' + k, stroke: colors[k], width: 2, spanGaps: false,
        points: {show: false},
        value: (u, v, s, idx) => (v === undefined || v === null ? (idx != null && statusOf[k][idx] ? statusOf[k][idx] : '—') : formatValue(v)),
      })),
    ],
    axes: [
      {stroke: '#5b6472', grid: {stroke: '#eceef1'}, ticks: {stroke: '#d9dee5'}, values: utcLabels},
      ...drawn.map((i, k) => ({scale: 'y' + k, side: k % 2 ? 1 : 3, stroke: colors[k], size: narrow ? 44 : 56,
        grid: {show: k === 0, stroke: '#eceef1'}, ticks: {stroke: '#d9dee5'},
        incrs: integral.has(defs.get(chosen[i])?.result_type) ? wholeSteps : undefined})),
    ],
    hooks: {draw: [(u) => drawStatus(u, statusOf)]},
  };
  state.chart = new uPlot(opts, [all.x, ...drawn.map((i) => all.ys[i])], box);
  state.resize = new ResizeObserver(() => {
    if (state.chart && box.clientWidth > 0 && Math.abs(state.chart.width - box.clientWidth) > 4) {
      state.chart.setSize({width: Math.max(280, box.clientWidth), height: opts.height});
    }
  });
  state.resize.observe(box);
}

const integral = new Set(['int64', 'bool']);
const wholeSteps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6, 1e7, 1e8, 1e9];

// utcLabels labels the time axis in UTC, 24-hour, with the date under the
// first tick of each day.
function utcLabels(u, splits) {
  let day = '';
  return splits.map((s) => {
    const iso = new Date(s * 1000).toISOString();
    const d = iso.slice(5, 10);
    const label = iso.slice(11, 16);
    if (d === day) return label;
    day = d;
    return label + '\n' + d;
  });
}

// drawStatus draws a marker per value: filled in the line's colour when
// PRESENT, amber when STALE, and, where the value is NOT_FOUND (the line has
// a gap there), a hollow one in the line's colour just under the plot.
function drawStatus(u, statusOf) {
  const ctx = u.ctx;
  const r = 3.5 * devicePixelRatio;
  const bottom = u.bbox.top + u.bbox.height + r + 2 * devicePixelRatio;
  ctx.save();
  ctx.lineWidth = 1.5 * devicePixelRatio;
  for (let k = 1; k < u.series.length; k++) {
    const s = u.series[k];
    if (!s.show) continue;
    const ys = u.data[k];
    for (let j = 0; j < ys.length; j++) {
      const y = ys[j];
      if (y === undefined) continue;
      const cx = u.valToPos(u.data[0][j], 'x', true);
      const status = statusOf[k - 1][j];
      ctx.beginPath();
      if (y === null) {
        ctx.arc(cx, bottom, r, 0, 2 * Math.PI);
        ctx.fillStyle = '#fff';
        ctx.strokeStyle = colors[k - 1];
      } else {
        ctx.arc(cx, u.valToPos(y, s.scale, true), r, 0, 2 * Math.PI);
        ctx.fillStyle = status === 'STALE' ? '#f5b041' : colors[k - 1];
        ctx.strokeStyle = status === 'STALE' ? '#a35a00' : colors[k - 1];
      }
      ctx.fill();
      ctx.stroke();
    }
  }
  ctx.restore();
}

function renderHistoryTable(chosen, reads) {
  const table = $('history-table');
  table.tHead.replaceChildren(el('tr', {}, el('th', {text: 'at'}), chosen.map((f) => el('th', {text: f}))));
  table.tBodies[0].replaceChildren(...reads.map((r) => el('tr', {'data-at': r.at},
    el('td', {}, timeCell(r.at)),
    chosen.map((f) => {
      const v = (r.features && r.features[f]) || {};
      return el('td', {class: 'value', 'data-feature': f, 'data-value': JSON.stringify(v.value === undefined ? null : v.value), 'data-status': v.status || ''},
        formatValue(v.value), ' ', statusBadge(v.status), v.as_of ? el('span', {class: 'sub', title: 'exact at ' + v.as_of, text: ' as of ' + v.as_of.slice(11).replace(/\.\d+Z$/, 'Z')}) : null);
    }))));
  $('history-table-box').hidden = false;
}

// --- page -----------------------------------------------------------------

start('entity', async () => {
  const sets = (await api('/v1/featuresets')).featuresets || [];
  state.sets = new Map(sets.map((s) => [s.name, s]));
  const q = new URLSearchParams(location.search);
  const select = $('set');
  select.replaceChildren(...sets.map((s) => el('option', {value: s.name, text: s.name + ' (' + (keyFields(s).join(', ') || 'key') + ')'})));
  if (q.get('set') && state.sets.has(q.get('set'))) select.value = q.get('set');
  if (!sets.length) {
    $('error').replaceChildren(el('p', {class: 'empty', text: 'This API key may read no feature set.'}));
    return;
  }
  select.onchange = keyInputs;
  keyInputs();
  if (q.get('key') !== null) $('key').value = q.get('key');
  const parts = [...$('key-parts').querySelectorAll('input[data-part]')];
  for (const i of parts) if (q.get('key.' + i.dataset.part) !== null) i.value = q.get('key.' + i.dataset.part);
  const keyGiven = parts.length ? parts.every((i) => q.get('key.' + i.dataset.part) !== null) : !!q.get('key');
  if (q.get('at')) $('at').value = q.get('at');
  const doLookup = guard(lookup, $('lookup-error'));
  showAuth = (err) => guard(() => Promise.reject(err), $('values-error'), doLookup)();
  $('live').onclick = toggleLive;
  document.onvisibilitychange = visibilityChanged;
  $('lookup').onsubmit = (e) => {
    e.preventDefault();
    doLookup();
  };
  $('range').onchange = () => {
    const custom = $('range').value === 'custom';
    $('from-label').hidden = !custom;
    $('to-label').hidden = !custom;
  };
  const doDraw = guard(drawHistory, $('history-error'));
  $('history-form').onsubmit = (e) => {
    e.preventDefault();
    doDraw();
  };
  const wantedSet = q.get('set');
  if (wantedSet && !state.sets.has(wantedSet)) {
    // Not among the sets this key may read: ask the API, which says why
    // (403 for a set the key may not read, 404 for no such set).
    await api('/v1/featuresets/' + encodeURIComponent(wantedSet));
    throw new Error('feature set "' + wantedSet + '" is not listed for this key');
  }
  if (keyGiven) {
    await doLookup();
    if (q.get('features') && !$('values-card').hidden) await doDraw();
  }
});
