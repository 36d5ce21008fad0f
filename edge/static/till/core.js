// The cashier screen's core: the API, the shared state, events between panels, money in
// yuan, errors in Chinese, the key bar and dialogs. Every panel module imports this and
// nothing else of another panel: panels talk through `on`/`emit` and `state`.
//
// Events (docs/till-screen.md):
//   signed-in {staff, store}     signed-out {message}
//   member-changed member|null   basket-changed                quoted quote|null
//   sale-done {sale, receipt}    receipt {receipt, kind}       status {outbox, devices, ...}
//   new-sale                     (after a sale, a park or 清空: every panel resets)

export const $ = id => document.getElementById(id);

export const state = {
  token: sessionStorage.getItem('hy.till.token'),
  staff: null,            // {code, name, role}
  store: { code: document.body.dataset.storeCode, name: document.body.dataset.storeName },
  member: null,           // GET /members/{id} summary, or null for a walk-in
  lines: [],              // [{sku, qty, line_discount}] as POST /sales/quote takes them
  orderDiscountRate: 1000,
  manager: null,          // {code, pin} a manager gave for this basket's discounts
  quote: null,            // the last POST /sales/quote answer
};

// ---- events -------------------------------------------------------------------------
const handlers = {};
export function on(event, fn) { (handlers[event] ||= []).push(fn); }
export function emit(event, data) {
  for (const fn of handlers[event] || []) {
    try { fn(data); } catch (e) { console.error(event, e); showError(e); }
  }
}

// ---- the API ------------------------------------------------------------------------
export class ApiError extends Error {
  constructor(status, body) {
    super(chinese(body && body.message) || `请求失败 (${status})`);
    this.status = status; this.body = body || {}; this.field = this.body.field;
    this.code = this.body.error;
  }
}

// fetch /api/v1 + path as JSON; a 401 signs the screen out, any other failure throws an
// ApiError whose message is the API's Chinese text
export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  let response;
  try {
    response = await fetch('/api/v1' + path, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { message: '收银机服务无响应, 请稍后重试或联系店长' });
  }
  const text = response.status === 204 ? '' : await response.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch (e) { data = { message: `服务返回了无法读取的内容 (${response.status})` }; }
  if (response.status === 401 && state.token) signOut(chinese(data.message) || '登录已失效, 请重新登录');
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// An action a cashier may need a manager for (a 403 naming `manager`): the manager's code
// and PIN are asked for in the approval dialog and the same request is sent again with
// them as `manager`. `send(manager)` makes the request; a manager signed in needs none.
export async function withManager(reason, send) {
  try {
    return await send(null);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 403 || !(e.field || '').startsWith('manager')) throw e;
    for (;;) {
      const manager = await askManager(e.message || reason);
      if (!manager) throw new ApiError(403, { message: '已取消: 未经店长授权' });
      try {
        return await send(manager);
      } catch (again) {
        if (!(again instanceof ApiError) || again.status !== 403 || !(again.field || '').startsWith('manager')) throw again;
        e = again;
      }
    }
  }
}

// ---- money and text -----------------------------------------------------------------
// Amounts are integer fen everywhere but on screen, where they are yuan.
export const yuan = fen => (fen < 0 ? '-¥' : '¥') + (Math.abs(fen) / 100).toFixed(2);

// "12", "12.5", "12.50" yuan -> fen; anything else names what is wrong
export function toFen(text, what = '金额') {
  const t = String(text ?? '').trim().replace(/^¥/, '');
  if (!t) return 0;
  const m = t.match(/^(\d{1,9})(?:\.(\d{1,2}))?$/);
  if (!m) throw new ApiError(400, { message: `${what}格式不对: “${t}” (例如 12 或 12.50)` });
  return parseInt(m[1], 10) * 100 + parseInt((m[2] || '0').padEnd(2, '0'), 10);
}

// The API's messages are "中文 (English)": the screen shows the Chinese part. A message
// with no Chinese at all is a gap in the API (tests/edge/test_till_messages.py) and is
// shown as it is rather than hidden.
export function chinese(message) {
  if (!message) return '';
  const m = String(message).match(/^(.*[\u4e00-\u9fff].*?)\s*\([^()]*[A-Za-z][^()]*\)\s*$/s);
  return m ? m[1] : String(message);
}

export function showError(e) {
  const text = !e ? '' : (e.message || String(e));
  const bar = $('error');
  bar.textContent = text;
  bar.classList.remove('ok');
  bar.classList.toggle('shown', Boolean(text));
}

// a confirmation where errors show, in green ("已挂单", "密码已设置")
export function say(text) {
  const bar = $('error');
  bar.textContent = text;
  bar.classList.add('shown', 'ok');
}

// build an element: h('button', {class: 'big', onclick}, '文字', child...)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

// ---- keys ---------------------------------------------------------------------------
// A panel registers its keys; the key bar shows each as a button (touch) with its key.
// Keys taken (docs/till-screen.md): F1 help, F2 member, F3 new member, F4 top-up/card,
// F5 park, F6 recall, F7 return, F8 reprint, F9 discount, F10 follow-ups, Alt+S shift,
// Alt+P member password, Alt+E edit member, Esc closes a dialog.
const keys = [];
export function key(combo, label, run, { when = () => true } = {}) {
  if (keys.some(k => k.combo === combo)) throw new Error(`key ${combo} registered twice`);
  keys.push({ combo, label, run, when });
  renderKeys();
}

function comboOf(ev) {
  return (ev.altKey ? 'Alt+' : '') + (ev.ctrlKey ? 'Ctrl+' : '') + (ev.key.length === 1 ? ev.key.toUpperCase() : ev.key);
}

function renderKeys() {
  const bar = $('keys');
  if (!bar) return;
  // F1..F12 in order, then the Alt keys (modules load in any order)
  const rank = k => (/^F\d+$/.test(k.combo) ? Number(k.combo.slice(1)) : 100);
  const shown = [...keys].sort((a, b) => rank(a) - rank(b) || a.combo.localeCompare(b.combo));
  bar.replaceChildren(...shown.map(k => h('button', {
    type: 'button', class: 'key', dataset: { key: k.combo }, title: `${k.label} (${k.combo})`,
    onclick: () => { if (state.staff && k.when()) k.run(); },
  }, h('kbd', {}, k.combo), ' ', k.label)));
}

document.addEventListener('keydown', ev => {
  if (!state.staff) return;
  const combo = comboOf(ev);
  const k = keys.find(x => x.combo === combo);
  if (!k) return;
  if (openDialog() && !combo.startsWith('F1')) {
    // inside a dialog only its own keys and Esc act (Esc: the browser closes the dialog)
    return;
  }
  ev.preventDefault();
  if (k.when()) k.run();
});

// ---- lists to pick from ----------------------------------------------------------------
// Buttons found for what was typed in ``input`` (products, members): ↓/→ and ↑/← move
// (↑ from the first goes back to ``input``), 1-9 pick that one, Esc ``clear``s the list
// and goes back to ``input``. One listener on the list, whatever buttons it holds.
export function pickList(list, input, clear) {
  list.addEventListener('keydown', ev => {
    const buttons = [...list.querySelectorAll('button')];
    const at = buttons.indexOf(document.activeElement);
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowRight') {
      ev.preventDefault();
      if (buttons.length) buttons[Math.min(at + 1, buttons.length - 1)].focus();
    } else if (ev.key === 'ArrowUp' || ev.key === 'ArrowLeft') {
      ev.preventDefault();
      if (at <= 0) input.focus(); else buttons[at - 1].focus();
    } else if (/^[1-9]$/.test(ev.key) && buttons[Number(ev.key) - 1]) {
      ev.preventDefault();
      buttons[Number(ev.key) - 1].click();
    } else if (ev.key === 'Escape') {
      ev.preventDefault();
      clear();
      input.focus();
    }
  });
}

// ---- dialogs --------------------------------------------------------------------------
// Every task is a <dialog> (edge/templates/till/dialog_*.html): modal, Esc closes it, focus
// goes back to the scan box when it closes.
export function openDialog() { return document.querySelector('dialog[open]'); }

export function showDialog(id, focusId) {
  const d = $(id);
  if (!d.open) d.showModal();
  const first = focusId ? $(focusId) : d.querySelector('input, select, textarea, button');
  if (first) { first.focus(); if (first.select) first.select(); }
  return d;
}

export function closeDialog(id) {
  const d = $(id);
  if (d.open) d.close();
}

document.addEventListener('close', ev => {
  if (ev.target.tagName !== 'DIALOG' || openDialog()) return;
  // a field the cashier is typing in keeps the keys (a receipt beside the basket closes
  // on the first key of a card number typed into the member box)
  const a = document.activeElement;
  if (a && a.matches('input, textarea, select') && !a.closest('dialog')) return;
  focusScan();
}, true);

export function focusScan() { const s = $('scan'); if (s && !$('till').hidden) s.focus(); }

// The manager approval dialog (_manager.html): resolves {code, pin}, or null when cancelled.
export function askManager(reason) {
  return new Promise(resolve => {
    const d = $('manager-dialog');
    $('manager-reason').textContent = reason;
    $('manager-code').value = ''; $('manager-pin').value = '';
    const done = value => { d.removeEventListener('close', onClose); $('manager-form').onsubmit = null; d.close(); resolve(value); };
    const onClose = () => done(null);
    d.addEventListener('close', onClose);
    $('manager-form').onsubmit = ev => {
      ev.preventDefault();
      done({ code: $('manager-code').value.trim(), pin: $('manager-pin').value });
    };
    $('manager-cancel').onclick = () => done(null);
    showDialog('manager-dialog', 'manager-code');
  });
}

// ---- sign-in ---------------------------------------------------------------------------
export function signedIn(token, staff, store) {
  state.token = token; state.staff = staff;
  if (store) state.store = store;
  sessionStorage.setItem('hy.till.token', token);
  $('who').textContent = `${staff.name} (${staff.code})${staff.role === 'manager' ? ' · 店长' : ' · 收银员'}`;
  $('store').textContent = state.store.name;
  $('login').hidden = true; $('till').hidden = false; $('keys').hidden = false; $('signout').hidden = false;
  emit('signed-in', { staff, store: state.store });
  focusScan();
}

export function signOut(message) {
  const wasIn = Boolean(state.staff);
  state.token = null; state.staff = null;
  sessionStorage.removeItem('hy.till.token');
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  $('who').textContent = ''; $('signout').hidden = true;
  $('till').hidden = true; $('keys').hidden = true; $('login').hidden = false;
  $('pin').value = ''; $('login-error').textContent = message || '';
  if (wasIn) emit('signed-out', { message });
  $('staff').focus();
}

export const isManager = () => Boolean(state.staff && state.staff.role === 'manager');

// A fresh id (UUID v4) for a sale, top-up or return: the API replays a retried request by
// it. crypto.randomUUID exists only on https or localhost; a till's screen on the store's
// network is plain http, where getRandomValues still works.
export function newId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map(v => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
