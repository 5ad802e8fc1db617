// The operator console: plain JS, no build step.
//
// Every value from the API is user-supplied somewhere (userId, SKUs, reasons, DLQ payloads): it
// is only ever placed with textContent or as an attribute value, never parsed as HTML.
'use strict';

const TOKEN_KEY = 'adminToken';
const SVG_NS = 'http://www.w3.org/2000/svg';
const LANES = [
  ['order', 'Order'], ['payment', 'Payment'], ['stock', 'Stock'],
  ['coupon', 'Coupon'], ['point', 'Point'], ['dataplatform', 'DataPlatform'],
];
const PARTICIPANTS = ['payment', 'stock', 'coupon', 'point'];

// ---- DOM helpers -------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = String(v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c == null) continue;
    node.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return node;
}
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) node.setAttribute(k, String(v));
  if (text != null) node.textContent = String(text);
  return node;
}
function td(text, cls) { return el('td', { class: cls, text: text == null ? '' : text }); }
function statusCell(status) {
  return td(status, /^[A-Z_]+$/.test(String(status)) ? status : '');
}
function orderLink(id) {
  return el('a', { href: '#/orders/' + encodeURIComponent(id), class: 'mono', text: id });
}
function fmtTime(ms) {
  if (ms == null || ms === '') return '';
  const d = new Date(Number(ms));
  return isNaN(d) ? String(ms) : d.toISOString().replace('T', ' ').replace('Z', '');
}
function clock(ms) {
  const d = new Date(Number(ms));
  return isNaN(d) ? '' : d.toISOString().slice(11, 23);
}
function json(value) { return JSON.stringify(value, null, 2); }
function view() { return document.getElementById('view'); }
function setView(name, ...children) {
  view().replaceChildren(...children.filter(c => c != null));
  document.body.dataset.view = name;
}
// Tests and operators can tell when a page finished loading.
function ready(name) {
  document.body.dataset.ready = name;
  document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
}
function flash(message, isError) {
  const box = document.getElementById('flash');
  box.textContent = message;
  box.className = isError ? 'flash error' : 'flash';
  box.hidden = false;
}
function clearFlash() { document.getElementById('flash').hidden = true; }

// ---- HTTP ----------------------------------------------------------------------------------
function token() { return sessionStorage.getItem(TOKEN_KEY); }
function showTokenState() {
  document.getElementById('token-state').textContent = token() ? 'admin token set (this tab)' : 'no admin token';
}
let tokenWaiters = [];
function askToken(why) {
  const box = document.getElementById('token-box');
  document.getElementById('token-why').textContent = why || '';
  box.hidden = false;
  document.getElementById('token-input').focus();
  return new Promise(resolve => tokenWaiters.push(resolve));
}
document.getElementById('token-form').addEventListener('submit', e => {
  e.preventDefault();
  const input = document.getElementById('token-input');
  if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
  input.value = '';
  document.getElementById('token-box').hidden = true;
  showTokenState();
  const waiters = tokenWaiters; tokenWaiters = [];
  waiters.forEach(w => w(token()));
});
document.getElementById('token-cancel').addEventListener('click', () => {
  document.getElementById('token-box').hidden = true;
  const waiters = tokenWaiters; tokenWaiters = [];
  waiters.forEach(w => w(null));
});

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (opts.admin || token()) {
    let t = token();
    if (!t && opts.admin) t = await askToken('This action needs the admin token.');
    if (opts.admin && !t) throw new Error('no admin token given');
    if (t) opts.headers.Authorization = 'Bearer ' + t;
  }
  let res = await fetch(path, opts);
  if ((res.status === 401 || res.status === 403) && opts.admin) {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
    const t = await askToken('The admin token was refused; enter it again.');
    if (!t) throw new Error('no admin token given');
    opts.headers.Authorization = 'Bearer ' + t;
    res = await fetch(path, opts);
  }
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (!res.ok) {
    const msg = body && (body.error || body.message) ? (body.error || body.message) : res.statusText;
    const err = new Error(`${res.status}: ${typeof msg === 'string' ? msg : JSON.stringify(msg)}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

// ---- Routing -------------------------------------------------------------------------------
function parseHash() {
  const hash = location.hash.replace(/^#/, '') || '/orders';
  const [path, query] = hash.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || '') };
}
async function route() {
  const { parts, params } = parseHash();
  const section = parts[0] || 'orders';
  document.querySelectorAll('header nav a').forEach(a =>
    a.classList.toggle('active', a.dataset.nav === (section === 'orders' && parts[1] ? 'orders' : section)));
  delete document.body.dataset.ready;
  try {
    if (section === 'orders' && parts[1]) await showOrder(parts[1]);
    else if (section === 'orders') await showOrders(params);
    else if (section === 'attention') await showAttention();
    else if (section === 'dlq') await showDlq();
    else if (section === 'alerts') await showAlerts();
    else if (section === 'health') await showHealth();
    else setView('missing', el('p', { text: 'No such page.' }));
  } catch (err) {
    flash(String(err.message || err), true);
    ready('error');
  }
}
window.addEventListener('hashchange', () => { clearFlash(); route(); });

// ---- Orders --------------------------------------------------------------------------------
const STATUSES = ['', 'PENDING', 'COMPLETED', 'COMPENSATING', 'FAILED', 'NEEDS_ATTENTION'];
function toMs(localValue) {
  if (!localValue) return '';
  const ms = new Date(localValue).getTime();
  return isNaN(ms) ? '' : String(ms);
}
function toLocal(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  if (isNaN(d)) return '';
  const pad = n => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
async function showOrders(params) {
  const field = (name, input) => el('label', {}, name, input);
  const status = el('select', { id: 'f-status', name: 'status' },
    ...STATUSES.map(s => el('option', { value: s, text: s || 'any', selected: params.get('status') === s && s !== '' })));
  const userId = el('input', { id: 'f-user', name: 'userId', placeholder: 'userId', value: params.get('userId') || '' });
  const orderId = el('input', { id: 'f-order', name: 'orderId', placeholder: 'orderId', size: 36 });
  const traceId = el('input', { id: 'f-trace', name: 'traceId', placeholder: 'traceId', size: 32 });
  const from = el('input', { id: 'f-from', type: 'datetime-local', value: toLocal(params.get('from')) });
  const to = el('input', { id: 'f-to', type: 'datetime-local', value: toLocal(params.get('to')) });
  const limit = el('select', { id: 'f-limit' }, ...[20, 50, 100, 500].map(n =>
    el('option', { value: n, text: n, selected: String(n) === (params.get('limit') || '50') })));
  const form = el('form', { class: 'search', id: 'search' },
    field('status', status), field('userId', userId), field('from', from), field('to', to), field('per page', limit),
    el('button', { type: 'submit', class: 'primary', id: 'search-button', text: 'Search' }),
    field('orderId', orderId), field('traceId', traceId),
    el('button', { type: 'button', id: 'open-button', text: 'Open' , onclick: () => openOne() }));
  async function openOne() {
    if (orderId.value.trim()) { location.hash = '#/orders/' + encodeURIComponent(orderId.value.trim()); return; }
    if (traceId.value.trim()) {
      try {
        const t = await api('/traces/' + encodeURIComponent(traceId.value.trim()));
        location.hash = '#/orders/' + encodeURIComponent(t.orderId);
      } catch (err) { flash('trace: ' + err.message, true); }
    }
  }
  form.addEventListener('submit', e => {
    e.preventDefault();
    if (orderId.value.trim() || traceId.value.trim()) { openOne(); return; }
    const q = new URLSearchParams();
    if (status.value) q.set('status', status.value);
    if (userId.value.trim()) q.set('userId', userId.value.trim());
    if (toMs(from.value)) q.set('from', toMs(from.value));
    if (toMs(to.value)) q.set('to', toMs(to.value));
    q.set('limit', limit.value);
    const target = '#/orders?' + q.toString();
    delete document.body.dataset.ready;
    if (location.hash === target) route(); else location.hash = target;
  });
  const tbody = el('tbody', { id: 'orders' });
  const table = el('table', { id: 'orders-table' },
    el('thead', {}, el('tr', {}, ...['order', 'status', 'user', 'amount', 'placed', 'waiting for', 'reason'].map(h => el('th', { text: h })))),
    tbody);
  const more = el('button', { id: 'next-page', text: 'Older →', disabled: true });
  const count = el('span', { class: 'muted', id: 'orders-count' });
  setView('orders', el('h1', { text: 'Orders' }), form, table, el('div', { class: 'pager' }, more, count));

  const query = new URLSearchParams();
  for (const k of ['status', 'userId', 'from', 'to']) if (params.get(k)) query.set(k, params.get(k));
  query.set('limit', params.get('limit') || '50');
  let shown = 0;
  async function load(cursor) {
    const q = new URLSearchParams(query);
    if (cursor) q.set('cursor', cursor);
    const body = await api('/orders?' + q.toString());
    for (const o of body.orders) {
      tbody.appendChild(el('tr', { 'data-order-id': o.orderId },
        el('td', {}, orderLink(o.orderId)), statusCell(o.status), td(o.userId), td(o.amount, 'num'),
        td(fmtTime(o.placedAtMs)), td((o.waitingFor || []).join(', ')), td(o.failureReason || o.attentionReason)));
    }
    shown += body.orders.length;
    count.textContent = `${shown} shown` + (body.nextCursor ? ', more older' : '');
    more.disabled = !body.nextCursor;
    more.onclick = () => { more.disabled = true; load(body.nextCursor).catch(err => flash(err.message, true)); };
    ready('orders');
  }
  await load(null);
}

// ---- One order: sequence diagram + timeline ------------------------------------------------
function subjectOf(messageId, orderId) {
  let s = String(messageId);
  if (s.startsWith(orderId + '.')) s = s.slice(orderId.length + 1);
  return s.replace(/~.*$/, '');
}
function arrowKind(subject) {
  if (/(_failed)$/.test(subject)) return 'failure';
  if (/\.(declined|insufficient|rejected)$/.test(subject) || subject === 'order.failed') return 'failure';
  if (/\.(cancelled|restored|refunded)$/.test(subject)) return 'compensation';
  if (/\.(approved|reserved|used|deducted)$/.test(subject) || subject === 'order.completed') return 'success';
  return 'neutral';
}
const DECISION_TYPES = /^(note\.|Tombstoned|DuplicateIgnored|LatePlacementIgnored|.*Ignored$|FailureRedriven|CompensationRetried|RedrivesExhausted|DeliveryParked|DeliveryResumed|AttentionNeeded)/;
function noteText(step) {
  const type = String(step.type);
  const p = step.payload || {};
  const labels = {
    'note.duplicate_ignored': 'duplicate ignored', 'note.settled_republished': 'settled: re-published',
    'note.redrive_sent': 're-drive sent', 'note.dlq_redrive': 'DLQ redrive', 'note.dlq_discard': 'DLQ discard',
    Tombstoned: 'tombstone (failed before placed)', FailureRedriven: 're-drive of order.failed',
    CompensationRetried: 'operator retry', RedrivesExhausted: 're-drives exhausted',
    AttentionNeeded: 'NEEDS ATTENTION', DeliveryParked: 'delivery parked in DLQ', DeliveryResumed: 'delivery resumed',
    DuplicateIgnored: 'duplicate ignored',
  };
  const label = labels[type] || type.replace(/^note\./, '').replace(/_/g, ' ');
  const detail = p.detail || p.reason || '';
  return detail ? `${label}: ${detail}` : label;
}

// Builds the diagram's rows from the timeline: arrows (one per message and receiver), actions
// on a lane (what a domain recorded) and notes (decisions).
function diagramRows(t, order) {
  const rows = [];
  const steps = t.steps || [];
  const orderId = t.orderId;
  const receiversOf = (msgId, subject) => {
    const base = String(msgId).replace(/~.*$/, '');
    const found = new Set();
    for (const s of steps) {
      const c = String(s.causation || '').replace(/~.*$/, '');
      if (c === base && s.domain !== 'order' && (subject.startsWith('order.'))) found.add(s.domain);
    }
    if (subject === 'order.completed') return ['dataplatform'];
    if (!subject.startsWith('order.')) return ['order'];
    // Everyone the order involves is sent the message, whether or not it answered.
    const required = (order && order.required) || PARTICIPANTS;
    return PARTICIPANTS.filter(p => found.has(p) || required.map(String).includes(p));
  };
  const seen = new Set();
  let lastCommit = null;
  for (const s of steps) {
    const domain = String(s.domain);
    const type = String(s.type);
    if (DECISION_TYPES.test(type)) {
      rows.push({ kind: 'note', lane: domain, text: noteText(s), type, time: s.recordedAtMs });
      // A DLQ redrive publishes the message again, outside any commit: draw it from its note.
      const again = type === 'note.dlq_redrive' && /re-published on (\S+)/.exec(String((s.payload || {}).detail || ''));
      if (again) {
        const subject = again[1];
        const from = subject.split('.')[0] === 'order' ? 'order' : subject.split('.')[0];
        for (const to of receiversOf(subject, subject)) {
          rows.push({ kind: 'arrow', from, to, subject, time: s.recordedAtMs, again: true, arrow: arrowKind(subject) });
        }
      }
    } else if (!(domain === 'order' && type === 'OutcomeRecorded')) {
      rows.push({ kind: 'action', lane: domain, text: type, time: s.recordedAtMs });
    }
    // Every record of one commit lists the commit's messages: draw them once.
    const ids = (s.messageIds || []).map(String);
    const commit = `${domain}|${s.causation}|${s.recordedAtMs}|${ids.join(',')}`;
    if (ids.length && commit === lastCommit) continue;
    lastCommit = commit;
    for (const id of ids) {
      const subject = subjectOf(id, orderId);
      if (subject.startsWith('ops.alert.')) {
        rows.push({ kind: 'note', lane: domain, alert: true, type: subject,
          text: 'alert: ' + subject.slice('ops.alert.'.length), time: s.recordedAtMs });
        continue;
      }
      const again = seen.has(subject);
      seen.add(subject);
      for (const to of receiversOf(id, subject)) {
        rows.push({ kind: 'arrow', from: domain, to, subject, time: s.recordedAtMs, again, arrow: arrowKind(subject) });
      }
    }
  }
  return rows;
}

function drawDiagram(t, order) {
  const unreachable = new Map((t.unreachable || []).map(u => [String(u.domain), String(u.error || '')]));
  const rows = diagramRows(t, order);
  const laneW = 170, left = 20, top = 20, headH = 34, rowH = 34;
  const x = lane => left + laneW / 2 + laneW * Math.max(0, LANES.findIndex(l => l[0] === lane));
  const width = left * 2 + laneW * LANES.length;
  const height = top + headH + 20 + rows.length * rowH + headH + 20;
  const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, id: 'sequence', role: 'img',
    'aria-label': 'Sequence diagram of the saga' });
  const defs = svg('defs');
  for (const [name, colour] of [['neutral', '#333'], ['success', '#176f2c'], ['failure', '#b3261e'], ['compensation', '#c25e00']]) {
    const marker = svg('marker', { id: 'head-' + name, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' });
    marker.appendChild(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: colour }));
    defs.appendChild(marker);
  }
  root.appendChild(defs);
  const colours = { neutral: '#333', success: '#176f2c', failure: '#b3261e', compensation: '#c25e00' };
  const bottom = height - headH - 10;
  const required = new Set(['order', 'dataplatform', ...((order && order.required) || PARTICIPANTS).map(String)]);
  for (const [lane, label] of LANES) {
    const cx = x(lane);
    const down = unreachable.has(lane);
    const idle = !down && !required.has(lane);
    const g = svg('g', { class: 'lane' + (down ? ' unreachable' : '') + (idle ? ' not-involved' : ''), 'data-lane': lane,
      'data-unreachable': down ? 'true' : null, opacity: idle ? 0.55 : null });
    g.appendChild(svg('line', { x1: cx, y1: top + headH, x2: cx, y2: bottom, stroke: down ? '#b3261e' : '#999',
      'stroke-dasharray': down ? '2 6' : '4 4' }));
    for (const y of [top, bottom]) {
      g.appendChild(svg('rect', { x: cx - 65, y, width: 130, height: headH, rx: 3,
        fill: down ? '#fdecea' : '#eaeaf7', stroke: down ? '#b3261e' : '#8a8ac0' }));
      g.appendChild(svg('text', { x: cx, y: y + 21, 'text-anchor': 'middle', 'font-size': 13, 'font-weight': 600 }, label));
    }
    if (idle) {
      g.appendChild(svg('text', { x: cx, y: top + headH + 14, 'text-anchor': 'middle', 'font-size': 11, fill: '#777' }, 'not involved'));
    }
    if (down) {
      const why = svg('text', { x: cx, y: top + headH + 14, 'text-anchor': 'middle', 'font-size': 11, fill: '#b3261e', class: 'unreachable-label' }, 'unreachable');
      why.appendChild(svg('title', {}, unreachable.get(lane)));
      g.appendChild(why);
    }
    root.appendChild(g);
  }
  rows.forEach((row, i) => {
    const y = top + headH + 30 + i * rowH;
    if (row.kind === 'arrow') {
      const x1 = x(row.from), x2 = x(row.to);
      const colour = colours[row.arrow];
      const reply = row.from !== 'order';
      const g = svg('g', { class: 'arrow ' + row.arrow + (row.again ? ' again' : ''), 'data-subject': row.subject,
        'data-from': row.from, 'data-to': row.to, 'data-kind': row.arrow });
      g.appendChild(svg('line', { x1, y1: y, x2: x2 + (x2 > x1 ? -2 : 2), y2: y, stroke: colour, 'stroke-width': 1.6,
        'stroke-dasharray': reply || row.arrow === 'compensation' || row.again ? '6 4' : null,
        'marker-end': `url(#head-${row.arrow})` }));
      const label = `${row.subject}${row.again ? ' (again)' : ''} · ${clock(row.time)}`;
      g.appendChild(svg('text', { x: (x1 + x2) / 2, y: y - 5, 'text-anchor': 'middle', 'font-size': 11, fill: colour }, label));
      root.appendChild(g);
    } else if (row.kind === 'note') {
      const cx = x(row.lane);
      const text = row.text.length > 60 ? row.text.slice(0, 57) + '…' : row.text;
      const w = Math.min(2 * laneW - 10, 16 + text.length * 6.2);
      // Keep the note inside the picture; text stays centred on it.
      const nx = Math.max(4, Math.min(width - w - 4, cx - w / 2));
      const g = svg('g', { class: 'note' + (row.alert ? ' alert' : ''), 'data-lane': row.lane, 'data-type': row.type });
      g.appendChild(svg('rect', { x: nx, y: y - 14, width: w, height: 22,
        fill: row.alert ? '#fdecea' : '#fff5ad', stroke: row.alert ? '#b3261e' : '#c9b33c' }));
      g.appendChild(svg('text', { x: nx + w / 2, y: y + 1, 'text-anchor': 'middle', 'font-size': 11 }, text));
      g.appendChild(svg('title', {}, `${row.text} (${fmtTime(row.time)})`));
      root.appendChild(g);
    } else {
      const cx = x(row.lane);
      const g = svg('g', { class: 'action', 'data-lane': row.lane });
      g.appendChild(svg('path', { d: `M ${cx} ${y - 10} h 26 v 14 h -24`, fill: 'none', stroke: '#555', 'marker-end': 'url(#head-neutral)' }));
      g.appendChild(svg('text', { x: cx + 30, y: y + 1, 'font-size': 11, fill: '#333' }, `${row.text} · ${clock(row.time)}`));
      root.appendChild(g);
    }
  });
  return root;
}

async function retryCompensation(id) {
  await api('/orders/' + encodeURIComponent(id) + '/retry-compensation', { method: 'POST', admin: true });
  flash(`Compensation of ${id} retried.`);
}

async function showOrder(id) {
  const [order, t] = await Promise.all([api('/orders/' + encodeURIComponent(id)), api('/orders/' + encodeURIComponent(id) + '/timeline')]);
  const dl = el('dl', { class: 'summary', id: 'order-summary' });
  const add = (k, v, cls) => { dl.appendChild(el('dt', { text: k })); dl.appendChild(el('dd', { class: cls, text: v == null ? '' : v })); };
  add('status', order.status, /^[A-Z_]+$/.test(order.status) ? order.status : '');
  add('traceId', order.traceId, 'mono');
  add('user', order.userId);
  add('amount', order.amount);
  add('items', (order.items || []).map(i => `${i.sku} × ${i.qty} @ ${i.price}`).join(', '));
  add('coupon / points', `${order.couponId == null ? '-' : order.couponId} / ${order.points}`);
  add('required', (order.required || []).join(', '));
  add('outcomes', Object.entries(order.outcomes || {}).map(([k, v]) => `${k}: ${v}`).join(', '));
  add('waiting for', (order.waitingFor || []).join(', ') || '-');
  add('failure reason', order.failureReason || '-');
  if (order.attentionReason) add('attention reason', order.attentionReason);
  add('placed / deadline', `${fmtTime(order.placedAtMs)} / ${fmtTime(order.deadlineMs)}`);
  const actions = el('p', {});
  if (order.status === 'NEEDS_ATTENTION' || order.status === 'COMPENSATING') {
    actions.appendChild(el('button', { class: 'danger', id: 'retry-compensation', text: 'Retry compensation',
      onclick: async e => { e.target.disabled = true; try { await retryCompensation(id); await route(); } catch (err) { flash(err.message, true); e.target.disabled = false; } } }));
  }
  const unreachable = (t.unreachable || []).map(u => el('li', { class: 'unreachable' }, `${u.domain}: ${u.error}`));
  const rows = (t.steps || []).map((s, i) => {
    const payload = el('details', {}, el('summary', { text: 'payload' }), el('pre', { text: json(s.payload) }));
    return el('tr', { 'data-step': i, 'data-type': s.type },
      td(fmtTime(s.recordedAtMs), 'mono'), td(s.domain), td(s.type), td((s.messageIds || []).map(m => subjectOf(m, t.orderId)).join(', '), 'mono'),
      td(subjectOf(s.causation || '', t.orderId), 'mono'), el('td', {}, payload));
  });
  setView('order',
    el('p', {}, el('a', { href: '#/orders', text: '← orders' })),
    el('h1', { id: 'title', text: `Timeline of ${id} (${t.status})` }),
    dl, actions,
    unreachable.length ? el('div', {}, el('h2', { text: 'Unreachable participants' }), el('ul', { id: 'unreachable' }, ...unreachable)) : null,
    el('h2', { text: 'Sequence' }),
    el('div', { class: 'legend' }, el('span', { class: 'ok', text: '→ success' }), el('span', { class: 'fail', text: '→ rejection / failure' }),
      el('span', { class: 'comp', text: '⇢ compensation' }), el('span', { text: 'dashed: reply or repeat; yellow: decision' })),
    el('div', { class: 'diagram' }, drawDiagram(t, order)),
    el('h2', { text: 'Timeline' }),
    el('table', { id: 'timeline' },
      el('thead', {}, el('tr', {}, ...['time', 'domain', 'type', 'published', 'caused by', 'payload'].map(h => el('th', { text: h })))),
      el('tbody', {}, ...rows)));
  ready('order');
}

// ---- Needs attention -----------------------------------------------------------------------
async function showAttention() {
  const lists = await Promise.all(['NEEDS_ATTENTION', 'PENDING', 'COMPENSATING'].map(s => api('/orders?limit=1000&status=' + s)));
  const now = Date.now();
  const orders = lists.flatMap(l => l.orders).filter(o => o.status === 'NEEDS_ATTENTION' || (o.deadlineMs && o.deadlineMs < now));
  const tbody = el('tbody', { id: 'attention' }, ...orders.map(o => el('tr', { 'data-order-id': o.orderId },
    el('td', {}, orderLink(o.orderId)), statusCell(o.status),
    td(o.status === 'NEEDS_ATTENTION' ? 'needs an operator' : 'past its deadline'),
    td((o.waitingFor || []).join(', ')), td(o.attentionReason || o.failureReason), td(fmtTime(o.deadlineMs)), td(o.redrives, 'num'),
    el('td', {}, el('button', { class: 'danger retry', 'data-order-id': o.orderId, text: 'Retry compensation',
      onclick: async e => { e.target.disabled = true; try { await retryCompensation(o.orderId); await route(); } catch (err) { flash(err.message, true); e.target.disabled = false; } } })))));
  setView('attention', el('h1', { text: 'Needs attention' }),
    el('p', { class: 'muted', text: 'Orders in NEEDS_ATTENTION, and PENDING or COMPENSATING orders past their deadline. Fix the cause (e.g. the PG), then retry the compensation.' }),
    el('table', {}, el('thead', {}, el('tr', {}, ...['order', 'status', 'why listed', 'waiting for', 'reason', 'deadline', 're-drives', ''].map(h => el('th', { text: h })))), tbody),
    orders.length ? null : el('p', { id: 'attention-empty', text: 'Nothing needs attention.' }),
    el('p', {}, el('button', { text: 'Refresh', onclick: () => route() })));
  ready('attention');
}

// ---- DLQ -----------------------------------------------------------------------------------
async function dlqAction(seq, action) {
  return api(`/admin/dlq/${encodeURIComponent(seq)}/${action}`, { method: 'POST', admin: true });
}
async function showDlq() {
  const body = await api('/admin/dlq?limit=1000', { admin: true });
  const detail = el('div', { id: 'dlq-detail' });
  const groupAction = async (group, action) => {
    if (!confirm(`${action} all ${group.count} entries of ${group.consumer} (${group.reason})?`)) return;
    let done = 0;
    for (const seq of group.seqs) {
      try { await dlqAction(seq, action); done += 1; } catch (err) { flash(`entry ${seq}: ${err.message}`, true); }
    }
    flash(`${action}: ${done} of ${group.count} entries.`);
    await route();
  };
  const groups = el('tbody', { id: 'dlq-groups' }, ...(body.summary || []).map(g => el('tr', { 'data-consumer': g.consumer },
    td(g.consumer), td(g.reason), td(g.count, 'num'),
    el('td', {}, el('button', { class: 'group-redrive', text: 'Redrive all', onclick: () => groupAction(g, 'redrive') }), ' ',
      el('button', { class: 'danger group-discard', text: 'Discard all', onclick: () => groupAction(g, 'discard') })))));
  const entries = el('tbody', { id: 'dlq-entries' }, ...(body.entries || []).map(e => el('tr', { 'data-seq': e.seq },
    td(e.seq, 'num'), td(e.consumer), td(e.originalSubject, 'mono'), td(e.reason), td(e.attempts, 'num'),
    el('td', {}, e.orderId ? orderLink(e.orderId) : ''), td(fmtTime(e.timeMs)),
    el('td', {},
      el('button', { class: 'inspect', text: 'Inspect', onclick: async () => {
        try {
          const d = await api('/admin/dlq/' + encodeURIComponent(e.seq), { admin: true });
          detail.replaceChildren(el('h2', { text: `Entry ${e.seq}` }), el('pre', { id: 'dlq-body', text: json(d.body) }),
            el('details', {}, el('summary', { text: 'headers' }), el('pre', { text: json(d.headers) })));
        } catch (err) { flash(err.message, true); }
      } }), ' ',
      el('button', { class: 'redrive', 'data-seq': e.seq, text: 'Redrive', onclick: async ev => {
        ev.target.disabled = true;
        try { await dlqAction(e.seq, 'redrive'); flash(`Entry ${e.seq} re-driven.`); await route(); } catch (err) { flash(err.message, true); ev.target.disabled = false; }
      } }), ' ',
      el('button', { class: 'danger discard', 'data-seq': e.seq, text: 'Discard', onclick: async ev => {
        if (!confirm(`Discard DLQ entry ${e.seq} for good?`)) return;
        ev.target.disabled = true;
        try { await dlqAction(e.seq, 'discard'); flash(`Entry ${e.seq} discarded.`); await route(); } catch (err) { flash(err.message, true); ev.target.disabled = false; }
      } })))));
  setView('dlq', el('h1', { text: `Dead-letter queue (${body.count})` }),
    el('h2', { text: 'By consumer and reason' }),
    el('table', {}, el('thead', {}, el('tr', {}, ...['consumer', 'reason', 'entries', ''].map(h => el('th', { text: h })))), groups),
    el('h2', { text: 'Entries' }),
    el('table', {}, el('thead', {}, el('tr', {}, ...['seq', 'consumer', 'subject', 'reason', 'attempts', 'order', 'dead-lettered', ''].map(h => el('th', { text: h })))), entries),
    (body.entries || []).length ? null : el('p', { id: 'dlq-empty', text: 'The DLQ is empty.' }),
    detail);
  ready('dlq');
}

// ---- Alerts --------------------------------------------------------------------------------
async function showAlerts() {
  const body = await api('/admin/alerts?limit=200', { admin: true });
  const rows = (body.alerts || []).map(a => {
    const b = a.body || {};
    return el('tr', { 'data-seq': a.seq },
      td(fmtTime(a.timeMs), 'mono'), td(a.kind), td(a.subject, 'mono'),
      el('td', {}, b.orderId ? orderLink(b.orderId) : ''), td(b.domain), td(b.reason || b.detail || b.message),
      el('td', {}, el('details', {}, el('summary', { text: 'body' }), el('pre', { text: json(b) }))));
  });
  setView('alerts', el('h1', { text: 'Alerts' }), el('p', { class: 'muted', text: 'ops.alert.* from the OPS stream, newest first.' }),
    el('table', {}, el('thead', {}, el('tr', {}, ...['time', 'kind', 'subject', 'order', 'domain', 'reason', ''].map(h => el('th', { text: h })))),
      el('tbody', { id: 'alerts' }, ...rows)),
    rows.length ? null : el('p', { id: 'alerts-empty', text: 'No alerts.' }),
    el('p', {}, el('button', { text: 'Refresh', onclick: () => route() })));
  ready('alerts');
}

// ---- Health --------------------------------------------------------------------------------
async function showHealth() {
  const body = await api('/admin/health', { admin: true });
  const services = (body.services || []).map(s => el('tr', { 'data-service': s.name },
    td(s.name), td(s.ready ? 'ready' : 'NOT READY', s.ready ? 'ok-cell' : 'bad-cell'),
    td(s.status ? s.status.logHead : (s.readyz ? s.readyz.head : ''), 'num'),
    td(s.status ? s.status.outboxBacklog : '', 'num'), td(s.url || '(this service)', 'mono'), td(s.error)));
  const consumers = (body.consumers || []).map(c => el('tr', { 'data-durable': c.durable },
    td(c.stream), td(c.durable, 'mono'), td(c.numPending, 'num'), td(c.numAckPending, 'num'), td(c.numRedelivered, 'num'), td(c.error)));
  setView('health', el('h1', { text: 'Health' }),
    el('h2', { text: 'Services' }),
    el('table', {}, el('thead', {}, el('tr', {}, ...['service', 'readiness', 'log head', 'outbox backlog', 'url', 'error'].map(h => el('th', { text: h })))),
      el('tbody', { id: 'services' }, ...services)),
    el('h2', { text: 'Consumers (lag)' }),
    el('table', {}, el('thead', {}, el('tr', {}, ...['stream', 'durable', 'pending', 'ack pending', 'redelivered', 'error'].map(h => el('th', { text: h })))),
      el('tbody', { id: 'consumers' }, ...consumers)),
    el('p', {}, el('button', { text: 'Refresh', onclick: () => route() })));
  ready('health');
}

showTokenState();
route();
