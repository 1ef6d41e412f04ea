// What every page of Tandem's UI shares: calls to the public JSON API with
// the API key of this tab, the key prompt, and formatting. Every value from
// the API reaches the page as text (textContent), never as markup.

const keyStorage = 'tandem.apiKey';

// apiBase is the path the API is under: the page's own path less /ui/...,
// "" when served at the root.
const apiBase = location.pathname.slice(0, Math.max(0, location.pathname.lastIndexOf('/ui/')));

// APIError is an answer of the API that is not 2xx: its HTTP status and the
// code and message of the API's JSON error body.
export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiKey() {
  return sessionStorage.getItem(keyStorage) || '';
}

function setKey(key) {
  if (key) sessionStorage.setItem(keyStorage, key);
  else sessionStorage.removeItem(keyStorage);
}

// api calls the API at path (a JSON body for POST) and returns the decoded
// body, or throws an APIError with the API's message.
export async function api(path, {method = 'GET', body, signal} = {}) {
  const headers = {Accept: 'application/json'};
  const key = apiKey();
  if (key) headers.Authorization = 'Bearer ' + key;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(apiBase + path, {method, headers, signal, cache: 'no-store', credentials: 'omit',
      body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new APIError(0, 'network', 'the server did not answer (' + e.message + ')');
  }
  const text = await res.text();
  let data = null;
  try {
    data = JSON.parse(text);
  } catch {
    // not JSON: net/http's own plain-text errors
  }
  if (!res.ok) {
    const e = data && data.error;
    throw new APIError(res.status, (e && e.code) || 'http_' + res.status,
      (e && e.message) || text.trim() || res.statusText || 'HTTP ' + res.status);
  }
  if (data === null) throw new APIError(res.status, 'bad_response', 'the server answered with something that is not JSON');
  return data;
}

// entityPath is key as one path segment: percent-encoded, with "." and
// ".." as %2E, which the API requires.
export function entityPath(key) {
  if (key === '.') return '%2E';
  if (key === '..') return '%2E%2E';
  return encodeURIComponent(key);
}

// keyFields are the entity key fields of a feature set definition, in key
// order: one for a single key, several for a composite key (entity.key is
// then a list).
export function keyFields(fs) {
  const k = fs && fs.entity ? fs.entity.key : null;
  if (Array.isArray(k)) return k;
  return k ? [k] : [];
}

// featuresPath is the API path of one entity's features: the key in the
// path for a single key (a string), the key parts as query parameters named
// like the key fields for a composite key (an object, field → part), and
// params (features, at) when set.
export function featuresPath(set, key, params) {
  const q = new URLSearchParams();
  if (typeof key === 'object' && key) for (const [k, v] of Object.entries(key)) q.set(k, v);
  for (const [k, v] of Object.entries(params || {})) if (v) q.set(k, v);
  const qs = q.toString();
  const base = '/v1/features/' + encodeURIComponent(set) + (typeof key === 'object' ? '' : '/' + entityPath(key));
  return base + (qs ? '?' + qs : '');
}

// keyText shows an entity key: the key itself, or a composite key's parts
// as field=part, joined by commas.
export function keyText(key) {
  if (typeof key !== 'object' || !key) return String(key);
  return Object.entries(key).map(([k, v]) => k + '=' + v).join(', ');
}

// el builds an element: attrs are attributes ("text" sets textContent,
// "class" the class), children are nodes or strings (as text).
export function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') n.textContent = v;
    else if (k === 'class') n.className = v;
    else n.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

// formatValue is a feature value as the API sent it: numbers in their
// shortest exact form, strings as they are, null as "null", and any other
// shape (lists, objects) as JSON.
export function formatValue(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

export function statusBadge(status) {
  const known = ['PRESENT', 'STALE', 'NOT_FOUND'].includes(status);
  return el('span', {class: 'status ' + (known ? status : 'OTHER'), text: status || '?'});
}

// parseDuration parses the definitions' duration syntax ("90s", "10m",
// "24h", "7d") into milliseconds, or NaN.
export function parseDuration(s) {
  const m = /^(\d+)(s|m|h|d)$/.exec(s || '');
  if (!m) return NaN;
  return Number(m[1]) * {s: 1e3, m: 60e3, h: 3600e3, d: 86400e3}[m[2]];
}

// formatDuration is a definition's duration ("1561m") in full units
// ("1d 2h 1m"), or the text itself when it does not parse.
export function formatDuration(text) {
  const ms = parseDuration(text);
  if (!isFinite(ms)) return text || '?';
  if (ms === 0) return '0s';
  const parts = [];
  let rest = ms / 1e3;
  for (const [unit, secs] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
    const n = Math.floor(rest / secs);
    if (n > 0) parts.push(n + unit);
    rest -= n * secs;
  }
  return parts.join(' ');
}

// formatSpan is a duration in milliseconds as "3d 4h", "12m 5s", "800ms".
export function formatSpan(ms) {
  if (!isFinite(ms)) return '—';
  const neg = ms < 0;
  ms = Math.abs(ms);
  let out;
  if (ms < 1000) out = Math.round(ms) + 'ms';
  else if (ms < 60e3) out = (ms / 1e3).toFixed(ms < 10e3 ? 1 : 0) + 's';
  else {
    const parts = [];
    let rest = Math.floor(ms / 1e3);
    for (const [unit, secs] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
      const n = Math.floor(rest / secs);
      if (n > 0 && parts.length < 2) parts.push(n + unit);
      else if (parts.length > 0) break;
      rest -= n * secs;
    }
    out = parts.join(' ');
  }
  return neg ? '−' + out : out;
}

// formatTime is an RFC 3339 instant as the API sent it, shortened for
// display ("2026-12-01 11:30:05Z"); title gives the full text.
export function timeCell(t) {
  if (!t) return el('span', {class: 'empty', text: 'never'});
  return el('span', {class: 'mono', title: t, text: t.replace('T', ' ').replace(/\.\d+Z$/, 'Z')});
}

// errorBox renders err (an APIError shows the API's code and message).
export function errorBox(err) {
  const box = el('div', {class: 'error', role: 'alert'});
  if (err instanceof APIError) {
    box.dataset.status = String(err.status);
    box.dataset.code = err.code;
    box.append(el('span', {class: 'code', text: err.status ? err.status + ' ' + err.code : err.code}), err.message);
  } else {
    box.append(String(err && err.message ? err.message : err));
  }
  return box;
}

// authFailed reports whether err means the key is missing or wrong; then
// the key prompt is shown with the API's message.
function authFailed(err) {
  return err instanceof APIError && err.status === 401;
}

// start runs load, the page's loader, once the page is parsed. When the API
// answers 401 (no key, or a wrong one) it shows the key prompt with the
// API's message and runs load again once a key is given. Other errors are
// shown in #error.
export function start(page, load) {
  const run = async () => {
    markNav(page);
    renderKeyState(run);
    const auth = document.getElementById('auth');
    const errors = document.getElementById('error');
    errors.replaceChildren();
    try {
      await load();
      auth.hidden = true;
      document.querySelector('main').hidden = false;
      document.body.dataset.ready = 'true';
    } catch (err) {
      if (authFailed(err)) {
        showKeyPrompt(err, run);
      } else {
        errors.replaceChildren(errorBox(err));
      }
      document.body.dataset.ready = 'error';
    }
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', run);
  else run();
  return run;
}

// guard wraps a handler of a page action: a 401 shows the key prompt, other
// errors go to target (or #error).
export function guard(fn, target, retry) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      if (authFailed(err)) showKeyPrompt(err, retry || (() => fn(...args)));
      else (target || document.getElementById('error')).replaceChildren(errorBox(err));
    }
  };
}

function showKeyPrompt(err, retry) {
  const auth = document.getElementById('auth');
  const msg = document.getElementById('auth-message');
  msg.replaceChildren(errorBox(err));
  document.getElementById('auth-intro').textContent = apiKey()
    ? 'The server did not accept this key.'
    : 'This server asks for an API key.';
  auth.hidden = false;
  document.querySelector('main').hidden = true; // nothing to show without a key
  const form = document.getElementById('auth-form');
  const input = document.getElementById('auth-key');
  form.onsubmit = (e) => {
    e.preventDefault();
    setKey(input.value.trim());
    input.value = '';
    auth.hidden = true;
    document.querySelector('main').hidden = false;
    retry();
  };
  input.focus();
}

function renderKeyState(rerun) {
  const box = document.getElementById('keystate');
  if (!box) return;
  if (!apiKey()) {
    box.replaceChildren();
    return;
  }
  const forget = el('button', {class: 'plain', type: 'button', text: 'forget key'});
  forget.onclick = () => {
    setKey('');
    rerun();
  };
  box.replaceChildren('API key given for this tab', forget);
}

function markNav(page) {
  for (const a of document.querySelectorAll('header.top nav a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
  }
}

// setLink is the URL of a feature set's card on the overview.
export function setLink(name) {
  return './#set-' + encodeURIComponent(name);
}

// entityLink is the URL of the entity page for a set (and key).
export function entityLink(set, key, features) {
  const q = new URLSearchParams({set});
  if (key) q.set('key', key);
  if (features && features.length) q.set('features', features.join(','));
  return 'entity.html?' + q.toString();
}

// mapLimit runs fn over items with at most limit calls in flight, and
// returns their results in order (an error is kept as the result).
export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i], i);
      } catch (err) {
        if (err && err.name === 'AbortError') throw err;
        out[i] = err instanceof Error ? err : new Error(String(err));
      }
    }
  };
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker));
  return out;
}
