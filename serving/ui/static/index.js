// The overview: every feature set the key may read (GET /v1/featuresets)
// with its features, and the feature services (GET /v1/services) linked to
// their sets, each with a form that reads it for one row of keys.
import {api, el, entityLink, errorBox, formatDuration, formatValue, guard, keyFields, setLink, start, statusBadge, timeCell} from './common.js';

function sourcesText(src) {
  const parts = [];
  const b = (src && src.batch) || {};
  const s = (src && src.stream) || {};
  if (b.bigquery_table) parts.push('batch: BigQuery table ' + b.bigquery_table);
  if (b.bigquery_query) parts.push('batch: BigQuery query');
  if (b.files) parts.push('batch: files ' + b.files);
  if (s.pubsub_subscription) parts.push('stream: Pub/Sub ' + s.pubsub_subscription);
  return parts.length ? parts.join('; ') : 'not shown (serve --expose_sources shows them)';
}

function facts(pairs) {
  const dl = el('dl', {class: 'facts'});
  for (const [k, v] of pairs) {
    if (v === undefined || v === '') continue;
    dl.append(el('dt', {text: k}), el('dd', {}, v));
  }
  return dl;
}

function setCard(fs, usedBy) {
  const features = fs.features || [];
  const rows = features.map((f) => el('tr', {'data-feature': f.name},
    el('td', {}, el('a', {href: entityLink(fs.name, '', [f.name]), title: 'look up an entity and draw ' + f.name, text: f.name})),
    el('td', {class: 'mono hide-phone'}, f.op, f.where ? el('span', {class: 'sub where', text: ' where ' + f.where}) : null),
    el('td', {class: 'mono hide-phone', text: f.field || '—'}),
    el('td', {class: 'num hide-phone', text: f.window}),
    el('td', {class: 'num hide-phone', text: f.tile}),
    el('td', {class: 'mono hide-phone', text: f.result_type}),
    el('td', {class: 'mono show-phone wrap', text: f.op + (f.field ? '(' + f.field + ')' : '') + (f.where ? ' where ' + f.where : '') + ' · ' + f.window + ' / ' + f.tile + ' → ' + f.result_type}),
  ));
  const fields = (fs.fields || []).map((f) => el('span', {class: 'chip', title: f.type}, f.name, ': ', el('span', {class: 'mono', text: f.type})));
  return el('section', {class: 'card', id: 'set-' + fs.name, 'data-set': fs.name},
    el('header', {},
      el('h2', {text: fs.name}),
      el('span', {class: 'sub'}, 'entity ', el('b', {text: (fs.entity && fs.entity.name) || '?'}), ' keyed by ', el('code', {text: keyFields(fs).join(', ') || '?'})),
      el('a', {href: entityLink(fs.name), text: 'look up an entity →'}),
    ),
    facts([
      ['event time', el('code', {text: fs.event_time})],
      ['sources', sourcesText(fs.sources)],
      ['retention', fs.retention],
      ['allowed lateness', fs.allowed_lateness],
      ['stale after', fs.fresh_for ? formatDuration(fs.fresh_for) + (fs.stale_after ? ' (its definition)' : ' (the server\'s rule for this set)') : (fs.stale_after || undefined)],
      ['used by', usedBy.length ? el('span', {}, usedBy.flatMap((s, i) => [i ? ', ' : '', el('a', {href: '#service-' + encodeURIComponent(s), text: s})])) : el('span', {class: 'empty', text: 'no feature service'})],
    ]),
    el('h3', {text: 'Fields'}),
    el('div', {class: 'chips'}, fields),
    el('h3', {text: 'Features (' + features.length + ')'}),
    el('div', {class: 'scroll'}, el('table', {class: 'features'},
      el('thead', {}, el('tr', {}, el('th', {text: 'feature'}), ['op', 'field', 'window', 'tile', 'result'].map((h) => el('th', {class: 'hide-phone', text: h})),
        el('th', {class: 'show-phone wrap', text: 'op · window / tile → result'}))),
      el('tbody', {}, rows))),
    derivedTable(fs.derived),
  );
}

// derivedTable lists derived features (name, expression, result type), or
// is null when there are none.
function derivedTable(derived) {
  if (!(derived || []).length) return null;
  return el('div', {},
    el('h3', {text: 'Derived features (' + derived.length + ')'}),
    el('div', {class: 'scroll'}, el('table', {class: 'stack'},
      el('thead', {}, el('tr', {}, el('th', {text: 'name'}), el('th', {text: 'expression'}), el('th', {text: 'result'}))),
      el('tbody', {}, derived.map((d) => el('tr', {'data-derived': d.name},
        el('td', {class: 'head'}, el('b', {text: d.name})),
        el('td', {'data-label': 'expression'}, el('code', {text: d.expr})),
        el('td', {'data-label': 'result'}, el('span', {class: 'mono', text: d.result_type}))))))));
}

function serviceCard(svc, known) {
  const keys = (svc.keys || []).map((k) => el('span', {class: 'chip'}, k.name, ': ', el('span', {class: 'mono', text: k.type})));
  const rows = (svc.features || []).map((e) => el('tr', {},
    el('td', {class: 'head'}, known.has(e.featureset) ? el('a', {href: setLink(e.featureset), text: e.featureset}) : e.featureset),
    el('td', {'data-label': 'key column'}, el('span', {}, (e.keys || [{name: e.key, type: e.key_type}]).flatMap((k, i) => [i ? ', ' : '', el('code', {text: k.name}), ' ', el('span', {class: 'sub', text: k.type})]))),
    el('td', {'data-label': 'features'}, el('span', {}, (e.features || []).flatMap((f, i) => [i ? ', ' : '', el('a', {href: entityLink(e.featureset, '', [f]), text: f})]))),
  ));
  return el('section', {class: 'card', id: 'service-' + svc.name, 'data-service': svc.name},
    el('header', {}, el('h2', {text: svc.name}), svc.description ? el('span', {class: 'sub', text: svc.description}) : null),
    el('h3', {text: 'Request keys'}),
    el('div', {class: 'chips'}, keys),
    el('h3', {text: 'Features by feature set'}),
    el('div', {class: 'scroll'}, el('table', {class: 'stack'},
      el('thead', {}, el('tr', {}, el('th', {text: 'feature set'}), el('th', {text: 'key column'}), el('th', {text: 'features'}))),
      el('tbody', {}, rows))),
    derivedTable(svc.derived),
    serviceLookup(svc),
  );
}

// serviceLookup is a form that reads the service for one row of its key
// columns (GET /v1/services/{name}?KEY=...&at=...) and shows the values by
// feature set.
function serviceLookup(svc) {
  const inputs = (svc.keys || []).map((k) => el('input', {class: 'key', name: k.name, required: true, spellcheck: 'false', autocomplete: 'off', placeholder: k.type}));
  const at = el('input', {class: 'time', name: 'at', spellcheck: 'false', autocomplete: 'off', placeholder: 'now'});
  const out = el('div', {class: 'service-values'});
  const form = el('form', {class: 'row service-lookup'},
    (svc.keys || []).map((k, i) => el('label', {}, k.name, inputs[i])),
    el('label', {}, 'At (RFC 3339, empty for now)', at),
    el('button', {type: 'submit', text: 'Read the service'}));
  const read = guard(async () => {
    out.replaceChildren();
    const q = new URLSearchParams();
    (svc.keys || []).forEach((k, i) => q.set(k.name, inputs[i].value));
    if (at.value.trim()) q.set('at', at.value.trim());
    const res = await api('/v1/services/' + encodeURIComponent(svc.name) + '?' + q);
    const rows = [];
    const row = (attrs, head, v) => rows.push(el('tr', Object.assign(attrs, {'data-status': v.status}),
      el('td', {class: 'head'}, head),
      el('td', {class: 'value', 'data-label': 'value', 'data-value': JSON.stringify(v.value === undefined ? null : v.value), text: formatValue(v.value)}),
      el('td', {'data-label': 'status'}, statusBadge(v.status),
        v.as_of ? el('span', {class: 'asof sub', title: v.as_of, text: 'as of ' + v.as_of.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}) : null)));
    for (const [set, feats] of Object.entries(res.features || {})) {
      for (const [name, v] of Object.entries(feats)) {
        row({'data-set': set, 'data-feature': name}, [el('a', {href: setLink(set), text: set}), ' / ', el('b', {text: name})], v);
      }
    }
    for (const [name, v] of Object.entries(res.derived || {})) {
      row({'data-set': '', 'data-feature': name, 'data-derived': '1'}, [el('span', {class: 'sub', text: 'derived'}), ' / ', el('b', {text: name})], v);
    }
    out.replaceChildren(el('p', {class: 'sub'}, 'at ', timeCell(res.at)),
      el('div', {class: 'scroll'}, el('table', {class: 'stack'},
        el('thead', {}, el('tr', {}, ['feature', 'value', 'status'].map((h) => el('th', {text: h})))),
        el('tbody', {}, rows))));
  }, out);
  form.onsubmit = (e) => {
    e.preventDefault();
    read();
  };
  return el('div', {}, el('h3', {text: 'Read it'}), form, out);
}

start('index', async () => {
  const [sets, services] = await Promise.all([api('/v1/featuresets'), api('/v1/services')]);
  const list = sets.featuresets || [];
  const svcs = services.services || [];
  const usedBy = new Map(list.map((s) => [s.name, []]));
  for (const svc of svcs) {
    for (const e of svc.features || []) {
      const u = usedBy.get(e.featureset);
      if (u && !u.includes(svc.name)) u.push(svc.name);
    }
  }
  document.getElementById('sets').replaceChildren(...(list.length
    ? list.map((s) => setCard(s, usedBy.get(s.name)))
    : [el('p', {class: 'empty', text: 'This API key may read no feature set.'})]));
  const known = new Set(list.map((s) => s.name));
  document.getElementById('services').replaceChildren(...(svcs.length
    ? svcs.map((s) => serviceCard(s, known))
    : [el('p', {class: 'empty', text: 'No feature service (or none whose every feature set this key may read).'})]));
  if (location.hash) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView();
});
