// Freshness of every feature set the key may read, polled. The API reports
// a set's freshness with every feature read, so the page reads one feature
// (the one with the shortest window) of a placeholder entity per set: one
// Bigtable ReadRow of an absent row. The status follows the API's rule
// (serving/openapi.yaml, Status): with C = max(batch watermark, stream
// watermark, or the newest stream tile when no watermark was written), a
// value read now is STALE when now − C exceeds the set's expectation
// (fresh_for in its definition), and always STALE when nothing was written.
import {APIError, api, el, errorBox, featuresPath, keyFields, formatDuration, formatSpan, parseDuration, start, timeCell} from './common.js';

const probeEntity = '~freshness-probe';

// probeKey is the placeholder entity of fs: probeEntity, or for a
// composite key an object of parts (the smallest int64 for int64 parts,
// which the API checks).
function probeKey(fs) {
  const fields = keyFields(fs);
  if (fields.length === 1) return probeEntity;
  const types = new Map((fs.fields || []).map((f) => [f.name, f.type]));
  return Object.fromEntries(fields.map((k) => [k, types.get(k) === 'int64' ? '-9223372036854775808' : probeEntity]));
}
const params = new URLSearchParams(location.search);
const every = Math.max(1, Number(params.get('every')) || 5) * 1000;
let generation = 0;
let polls = 0;

function probeFeature(fs) {
  let best = null;
  for (const f of fs.features || []) {
    if (!best || parseDuration(f.window) < parseDuration(best.window)) best = f;
  }
  return best;
}

function ms(t) {
  return t ? Date.parse(t) : NaN;
}

// judge applies the API's status rule to one freshness report.
export function judge(fs, res) {
  const now = ms(res.at);
  const f = res.freshness || {};
  const batch = ms(f.batch_watermark);
  const streamTime = f.stream_watermark || f.stream_latest_tile;
  const stream = ms(streamTime);
  const covered = Math.max(isNaN(batch) ? -Infinity : batch, isNaN(stream) ? -Infinity : stream);
  const expect = parseDuration(fs.fresh_for || fs.stale_after);
  const behind = now - covered;
  let status = '?';
  if (covered === -Infinity) status = 'STALE';
  else if (!isNaN(expect)) status = behind > expect ? 'STALE' : 'PRESENT';
  return {now, f, batch, stream, streamFromTile: !f.stream_watermark && !!f.stream_latest_tile, behind, expect, status};
}

function meter(behind, expect, stale) {
  const bar = el('span', {class: 'w0'});
  const ratio = isFinite(behind) && expect > 0 ? Math.min(1, Math.max(0, behind / expect)) : 1;
  bar.style.width = (ratio * 100).toFixed(1) + '%';
  return el('span', {class: 'meter' + (stale ? ' over' : ''), title: 'behind now ÷ expectation', role: 'img',
    'aria-label': Math.round(ratio * 100) + '% of the expectation'}, bar);
}

function row(fs, res, probe) {
  const j = judge(fs, res);
  const stale = j.status === 'STALE';
  const apiStatus = res.features && res.features[probe] && res.features[probe].status;
  const tr = el('tr', {'data-set': fs.name, 'data-status': j.status},
    el('td', {class: 'head'}, el('a', {href: './#set-' + encodeURIComponent(fs.name), text: fs.name})),
    el('td', {'data-label': 'status'}, el('span', {class: 'status ' + (j.status === '?' ? 'OTHER' : j.status), text: j.status})),
    el('td', {class: 'num', 'data-label': 'behind now'}, el('span', {}, isFinite(j.behind) ? formatSpan(j.behind) : 'nothing written', ' ', meter(j.behind, j.expect, stale))),
    el('td', {class: 'num', 'data-label': 'expectation', text: formatDuration(fs.fresh_for || fs.stale_after)}),
    el('td', {'data-label': 'batch watermark'}, timeCell(j.f.batch_watermark), ago(j.now, j.batch)),
    el('td', {'data-label': 'stream watermark'}, timeCell(j.f.stream_watermark), j.streamFromTile ? el('span', {class: 'ago', text: 'none written: judged by the newest tile'}) : ago(j.now, j.stream)),
    el('td', {'data-label': 'newest stream tile'}, timeCell(j.f.stream_latest_tile), ago(j.now, ms(j.f.stream_latest_tile))),
  );
  // The API's own status of the probe read, where its op is never
  // NOT_FOUND (count, sum, approx_count_distinct): the same rule, applied
  // by the server.
  if (apiStatus && apiStatus !== 'NOT_FOUND') tr.dataset.apiStatus = apiStatus;
  tr.dataset.behindMs = String(j.behind);
  return tr;
}

function ago(now, t) {
  return isNaN(t) ? null : el('span', {class: 'ago', text: formatSpan(now - t) + ' behind'});
}

function errorRow(fs, err) {
  return el('tr', {'data-set': fs.name, 'data-status': 'error'},
    el('td', {text: fs.name}),
    el('td', {colspan: '6'}, errorBox(err)));
}

async function poll(sets, gen) {
  const rows = await Promise.all(sets.map(async (fs) => {
    const probe = probeFeature(fs);
    if (!probe) return errorRow(fs, new Error('the set has no feature to read its freshness with'));
    try {
      const res = await api(featuresPath(fs.name, probeKey(fs), {features: probe.name}));
      return row(fs, res, probe.name);
    } catch (err) {
      if (err instanceof APIError && err.status === 401) throw err;
      return errorRow(fs, err);
    }
  }));
  if (gen !== generation) return;
  document.querySelector('#freshness tbody').replaceChildren(...rows);
  polls++;
  const updated = document.getElementById('updated');
  updated.dataset.polls = String(polls);
  updated.textContent = 'Updated ' + new Date().toISOString().slice(11, 19) + 'Z (every ' + every / 1000 + ' s; paused while the tab is hidden).';
}

const run = start('freshness', async () => {
  const gen = ++generation;
  document.getElementById('interval').textContent = String(every / 1000);
  const sets = (await api('/v1/featuresets')).featuresets || [];
  if (!sets.length) {
    document.querySelector('#freshness tbody').replaceChildren(el('tr', {}, el('td', {colspan: '7', class: 'empty', text: 'This API key may read no feature set.'})));
    return;
  }
  await poll(sets, gen);
  const loop = async () => {
    if (gen !== generation) return;
    if (!document.hidden) {
      try {
        await poll(sets, gen);
        document.getElementById('error').replaceChildren();
      } catch (err) {
        if (err instanceof APIError && err.status === 401) {
          generation++;
          run(); // shows the key prompt
          return;
        }
        document.getElementById('error').replaceChildren(errorBox(err));
      }
    }
    setTimeout(loop, every);
  };
  setTimeout(loop, every);
});
