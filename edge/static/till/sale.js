// The basket: scan, type a code, a name or pinyin initials; change quantities; remove
// lines; discounts (F9), park (F5) and recall (F6). Every change is priced by
// POST /sales/quote (the API is the one source of prices and of the refusals shown).
import {
  $, ApiError, api, closeDialog, emit, focusScan, h, key, on, openDialog, pickList, say, showDialog, showError,
  state, toFen, withManager, yuan,
} from './core.js';
import { setMember } from './member.js';

state.manualAdjustment = 0;   // 折让, fen (needs a manager: the quote names it)
state.coupons = [];           // coupon codes claimed (pay.js picks them)
let selected = -1;            // the selected line's index in state.lines
let recalling = false;        // a recall sets the member and quotes the basket itself

export function basketRequest() {
  const body = { lines: state.lines.map(l => ({ sku: l.sku, qty: l.qty, line_discount: l.line_discount || 0 })) };
  if (state.member) body.member = { member_id: state.member.member_id };
  if (state.orderDiscountRate !== 1000) body.order_discount_rate = state.orderDiscountRate;
  if (state.manualAdjustment) body.manual_adjustment = state.manualAdjustment;
  if (state.coupons.length) body.coupons = [...state.coupons];
  if (state.manager) body.manager = state.manager;
  return body;
}

// Price the basket; on a refusal the error shows and the caller puts back what it changed.
export async function requote() {
  showError('');
  if (!state.lines.length) { state.quote = null; render(); emit('quoted', null); return null; }
  state.quote = await api('/sales/quote', { method: 'POST', body: basketRequest() });
  render();
  emit('quoted', state.quote);
  return state.quote;
}

// Change the basket with `change()`; if the API refuses the result, undo it and say why
// (a quantity of 0 or 100000 is refused with its reason, never snapped back silently).
async function changeBasket(change, { approve = false } = {}) {
  const before = snapshot();
  change();
  try {
    await requote();
    if (approve) await askApproval();
    return true;
  } catch (e) {
    restore(before);
    try { await requote(); } catch (again) { console.error(again); }
    showError(e);
    return false;
  }
}

function snapshot() {
  return {
    lines: state.lines.map(l => ({ ...l })), rate: state.orderDiscountRate,
    adjust: state.manualAdjustment, manager: state.manager, coupons: [...state.coupons],
  };
}
function restore(s) {
  state.lines = s.lines; state.orderDiscountRate = s.rate; state.manualAdjustment = s.adjust;
  state.manager = s.manager; state.coupons = s.coupons;
}

// A discount past the cashier's limit or a 折让: the quote names the approval needed; the
// manager's code and PIN are asked for now and checked by the next quote.
async function askApproval() {
  const needed = state.quote && state.quote.manager_needed;
  if (!needed || state.manager) return;
  await withManager(needed, async manager => {
    if (!manager) throw new ApiError(403, { field: 'manager', message: `${needed}需要店长授权` });
    state.manager = manager;
    try { await requote(); } catch (e) { state.manager = null; throw e; }
  });
}

function render() {
  const q = state.quote;
  const priced = q ? q.lines : state.lines.map(l => ({ ...l, name: l.sku, unit_price: 0, gross: 0, amount: 0 }));
  if (selected >= priced.length) selected = priced.length - 1;
  $('lines-empty').hidden = priced.length > 0;
  $('lines').replaceChildren(...priced.map((l, i) => h('tr', {
    class: i === selected ? 'selected' : null, dataset: { sku: l.sku },
    onclick: ev => { if (ev.target.tagName !== 'INPUT' && ev.target.tagName !== 'BUTTON') select(i); },
  },
    h('td', { class: 'no' }, String(i + 1)),
    h('td', {}, l.name, l.promo ? h('span', { class: 'tag' }, '特价') : null,
      l.line_discount ? h('span', { class: 'tag' }, `单品优惠 ${yuan(l.line_discount)}`) : null),
    h('td', { class: 'num' }, h('input', {
      class: 'qty', value: String(l.qty), inputmode: 'numeric', 'aria-label': `${l.name} 数量`,
      onfocus: () => select(i, false),
      onkeydown: ev => { if (ev.key === 'Enter') { ev.preventDefault(); setQty(i, ev.target.value, true); } },
      onchange: ev => setQty(i, ev.target.value, false),
    })),
    h('td', { class: 'num' }, yuan(l.unit_price)),
    h('td', { class: 'num' }, yuan(l.gross - l.amount)),
    h('td', { class: 'num' }, yuan(l.amount)),
    h('td', {}, h('button', {
      type: 'button', class: 'remove', 'aria-label': `删除 ${l.name}`, title: '删除这一行 (Delete)',
      onclick: () => removeLine(i),
    }, '删除')),
  )));
  const items = state.lines.reduce((n, l) => n + l.qty, 0);
  $('basket-count').textContent = state.lines.length ? `${state.lines.length} 行 · ${items} 件` : '';
  const shown = [];
  if (state.orderDiscountRate !== 1000) shown.push(`整单 ${state.orderDiscountRate / 100} 折`);
  if (state.manualAdjustment) shown.push(`折让 ${yuan(state.manualAdjustment)}`);
  if (state.manager) shown.push(`店长 ${state.manager.code} 已授权`);
  $('discounts-shown').textContent = shown.join(' · ');
}

function select(i, scroll = true) {
  selected = i;
  for (const [n, tr] of [...$('lines').children].entries()) tr.classList.toggle('selected', n === i);
  if (scroll && $('lines').children[i]) $('lines').children[i].scrollIntoView({ block: 'nearest' });
}

let qtyBusy = false;  // Enter fires keydown and change: one quantity change at a time
async function setQty(i, text, thenScan) {
  if (qtyBusy) return;
  qtyBusy = true;
  try { await setQtyNow(i, text, thenScan); } finally { qtyBusy = false; }
}

async function setQtyNow(i, text, thenScan) {
  const t = String(text).trim();
  const line = state.lines[i];
  if (!line || String(line.qty) === t) { if (thenScan) focusScan(); return; }
  if (!t && !thenScan) return;  // emptied to type anew: Enter (or a number) says what it is
  if (!/^-?\d+$/.test(t)) {
    showError(new ApiError(400, { message: `数量须为整数, 现为 “${t}”` }));
    render(); markQty(i, t); return;
  }
  const ok = await changeBasket(() => { line.qty = parseInt(t, 10); });
  if (!ok) { markQty(i, t); return; }
  if (thenScan) focusScan();
}

// the refused quantity stays visible (marked) beside the message, for the cashier to fix
function markQty(i, typed) {
  const input = $('lines').children[i] && $('lines').children[i].querySelector('input.qty');
  if (!input) return;
  input.value = typed; input.classList.add('invalid'); input.focus(); input.select();
}

async function removeLine(i) {
  if (i < 0 || i >= state.lines.length) return;
  await changeBasket(() => { state.lines.splice(i, 1); });
  if (selected >= state.lines.length) selected = state.lines.length - 1;
  render();
  focusScan();
}

async function addProduct(product, qty = 1) {
  clearPicks();
  const ok = await changeBasket(() => {
    const line = state.lines.find(l => l.sku === product.sku);
    if (line) line.qty += qty; else state.lines.push({ sku: product.sku, qty, line_discount: 0 });
  });
  if (ok) {
    selected = state.lines.findIndex(l => l.sku === product.sku);
    render(); select(selected);
    $('scan').value = '';
  }
  focusScan();
}

// ---- the scan box ---------------------------------------------------------------------
$('scan').addEventListener('keydown', async ev => {
  if (ev.key === 'ArrowDown' && !$('product-results').hidden) { ev.preventDefault(); pickFocus(0); return; }
  if (ev.key === 'ArrowUp' || ev.key === 'ArrowDown') {
    if (!state.lines.length) return;
    ev.preventDefault();
    const n = state.lines.length;
    select(selected < 0 ? n - 1 : (selected + (ev.key === 'ArrowDown' ? 1 : -1) + n) % n);
    return;
  }
  if (ev.key !== 'Enter') return;
  ev.preventDefault();
  const typed = ev.target.value.trim();
  if (!typed) { goToPayment(); return; }
  // "3*6901234567001": three of it at once
  const m = typed.match(/^(\d{1,5})\s*[*xX×]\s*(\S.*)$/);
  const qty = m ? parseInt(m[1], 10) : 1;
  const q = m ? m[2].trim() : typed;
  try {
    const r = await api('/products?q=' + encodeURIComponent(q));
    if (r.exact) { await addProduct(r.exact, qty); return; }
    if (r.products.length === 1) { await addProduct(r.products[0], qty); return; }
    if (!r.products.length) { clearPicks(); showError(new ApiError(404, { message: `没有找到商品 “${q}”: 请核对条码, 或输入名称/拼音首字母` })); return; }
    showPicks(r.products, qty);
  } catch (e) { showError(e); }
});

function goToPayment() {
  if (!state.lines.length) { showError(new ApiError(400, { message: '购物篮是空的, 请先扫描商品' })); return; }
  emit('go-pay');
}

// ---- several products found: pick one (arrow keys, number keys 1-9, Enter, click) -----
function showPicks(products, qty) {
  showError('');
  const box = $('product-results');
  box.replaceChildren(...products.map((p, i) => h('button', {
    type: 'button', class: 'pick', role: 'option', dataset: { sku: p.sku },
    onclick: () => addProduct(p, qty),
  }, i < 9 ? h('kbd', {}, String(i + 1)) : null, ' ', p.name, ' ',
    h('span', { class: 'muted' }, `${p.sku} · ${yuan(p.promo_price ?? p.price)}`))));
  box.hidden = false;
  pickFocus(0);
}

function pickFocus(i) {
  const buttons = [...$('product-results').children];
  if (buttons.length) buttons[Math.max(0, Math.min(i, buttons.length - 1))].focus();
}

function clearPicks() { $('product-results').replaceChildren(); $('product-results').hidden = true; }
pickList($('product-results'), $('scan'), clearPicks);

// ---- keys -----------------------------------------------------------------------------
// Delete removes the selected line from the empty scan box (or with no field focused);
// in any field with text it stays the key that deletes a character, so it is handled
// here and not on the key bar (whose keys act everywhere). Touch: the line's 删除.
document.addEventListener('keydown', ev => {
  if (ev.key !== 'Delete' || ev.altKey || ev.ctrlKey || !state.staff || openDialog()) return;
  const a = document.activeElement;
  const inField = a && (a.tagName === 'INPUT' || a.tagName === 'TEXTAREA' || a.tagName === 'SELECT');
  if (inField && !(a.id === 'scan' && !a.value)) return;
  if (selected < 0 || !state.lines.length) return;
  ev.preventDefault();
  removeLine(selected);
});
key('Alt+Q', '改数量', () => {
  const tr = $('lines').children[selected >= 0 ? selected : state.lines.length - 1];
  const input = tr && tr.querySelector('input.qty');
  if (input) { input.focus(); input.select(); }
}, { when: () => state.lines.length > 0 });

// ---- discounts (F9) -------------------------------------------------------------------
// The order discount is typed as 折: "9.5" or "95" is 九五折 (950 permille), "9" is 九折.
export function rateOf(text) {
  const t = String(text || '').trim().replace(/折$/, '');
  if (!t) return 1000;
  if (!/^\d{1,3}(\.\d)?$/.test(t)) throw new ApiError(400, { message: `整单折扣格式不对: “${t}” (例如 9.5 或 95 表示九五折)` });
  const x = parseFloat(t);
  const rate = x <= 10 ? Math.round(x * 100) : Math.round(x * 10);
  if (rate <= 0 || rate > 1000) throw new ApiError(400, { message: `整单折扣须在 0.1 折到 10 折 (不打折) 之间, 现为 “${t}”` });
  return rate;
}

key('F9', '折扣/折让', () => {
  if (!state.lines.length) { showError(new ApiError(400, { message: '购物篮是空的, 请先扫描商品' })); return; }
  if (selected < 0) select(state.lines.length - 1);
  const line = state.lines[selected];
  const priced = state.quote && state.quote.lines[selected];
  $('discount-line-name').textContent = priced ? `${priced.name} ×${line.qty}` : line.sku;
  $('discount-line').value = line.line_discount ? (line.line_discount / 100).toFixed(2) : '';
  $('discount-rate').value = state.orderDiscountRate !== 1000 ? String(state.orderDiscountRate / 100) : '';
  $('discount-adjust').value = state.manualAdjustment ? (state.manualAdjustment / 100).toFixed(2) : '';
  $('discount-error').textContent = '';
  showDialog('discount-dialog', 'discount-line');
});

$('discount-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  let lineFen, rate, adjust;
  try {
    lineFen = toFen($('discount-line').value, '单品优惠');
    rate = rateOf($('discount-rate').value);
    adjust = toFen($('discount-adjust').value, '折让');
  } catch (e) { $('discount-error').textContent = e.message; return; }
  const i = selected;
  closeDialog('discount-dialog');
  const ok = await changeBasket(() => {
    if (state.lines[i]) state.lines[i].line_discount = lineFen;
    state.orderDiscountRate = rate; state.manualAdjustment = adjust;
    state.manager = null;  // a new discount is approved anew
  }, { approve: true });
  if (ok) say('折扣已更新');
  focusScan();
});
$('discount-clear').addEventListener('click', async () => {
  closeDialog('discount-dialog');
  await changeBasket(() => {
    state.lines.forEach(l => { l.line_discount = 0; });
    state.orderDiscountRate = 1000; state.manualAdjustment = 0; state.manager = null;
  });
  focusScan();
});
$('discount-cancel').addEventListener('click', () => closeDialog('discount-dialog'));

// ---- park (F5) and recall (F6): kept on the box (POST/GET/DELETE /parked) -------------
key('F5', '挂单', () => {
  if (!state.lines.length) { showError(new ApiError(400, { message: '购物篮是空的, 没有可挂的单' })); return; }
  $('park-note').value = '';
  $('park-summary').textContent = `${state.lines.length} 行 · 应付 ${yuan(state.quote ? state.quote.total : 0)}${state.member ? ' · 会员 ' + state.member.masked_name : ''}`;
  showDialog('park-dialog', 'park-note');
});

$('park-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  try {
    const body = { ...basketRequest(), note: $('park-note').value };
    delete body.manager;  // an approval is for this sale now, not for whenever it comes back
    const { parked } = await api('/parked', { method: 'POST', body });
    closeDialog('park-dialog');
    emit('new-sale');
    say(`已挂单: ${parked.items} 件 ${yuan(parked.total)} (F6 取单)`);
  } catch (e) { closeDialog('park-dialog'); showError(e); }
});
$('park-cancel').addEventListener('click', () => closeDialog('park-dialog'));

key('F6', '取单', async () => {
  try {
    const { parked } = await api('/parked');
    const list = $('recall-list');
    list.replaceChildren(...parked.map((p, i) => h('tr', {},
      h('td', {}, i < 9 ? h('kbd', {}, String(i + 1)) : ''),
      h('td', {}, p.parked_at.slice(11, 16)),
      h('td', {}, p.member_name || '散客'),
      h('td', { class: 'num' }, `${p.items} 件`),
      h('td', { class: 'num' }, yuan(p.total)),
      h('td', {}, p.note),
      h('td', {}, h('button', { type: 'button', class: 'primary recall', dataset: { id: p.id }, onclick: () => recall(p.id) }, '取单')),
    )));
    $('recall-empty').hidden = parked.length > 0;
    showDialog('recall-dialog', parked.length ? null : 'recall-close');
    const first = list.querySelector('button.recall');
    if (first) first.focus();
  } catch (e) { showError(e); }
});

$('recall-dialog').addEventListener('keydown', ev => {
  if (!/^[1-9]$/.test(ev.key)) return;
  const b = $('recall-list').querySelectorAll('button.recall')[+ev.key - 1];
  if (b) { ev.preventDefault(); b.click(); }
});
$('recall-close').addEventListener('click', () => closeDialog('recall-dialog'));

async function recall(id) {
  if (state.lines.length) {
    showError(new ApiError(409, { message: '当前购物篮还有商品: 请先结账或挂单, 再取单' }));
    closeDialog('recall-dialog');
    return;
  }
  try {
    const { parked } = await api('/parked/' + encodeURIComponent(id), { method: 'DELETE' });
    closeDialog('recall-dialog');
    state.lines = parked.lines.map(l => ({ ...l }));
    state.orderDiscountRate = parked.discounts.order_discount_rate ?? 1000;
    state.manualAdjustment = parked.discounts.manual_adjustment ?? 0;
    state.manager = null;
    selected = state.lines.length - 1;
    if (parked.member_id) {
      const { member } = await api('/members/' + encodeURIComponent(parked.member_id));
      recalling = true;  // the member panel shows them; the basket is quoted once, below
      try { await setMember(member); } finally { recalling = false; }
    }
    state.coupons = [...(parked.discounts.coupons || [])];
    await requote();
    await askApproval();
    say(`已取单: ${parked.items} 件`);
  } catch (e) { showError(e); }
  focusScan();
}

// ---- the rest of the screen -------------------------------------------------------------
// another member (or none): their coupons are not this one's
on('member-changed', async () => {
  if (recalling) return;
  state.coupons = [];
  try { await requote(); } catch (e) { showError(e); }
});
on('new-sale', () => {
  state.lines = []; state.quote = null; state.orderDiscountRate = 1000; state.manager = null;
  state.manualAdjustment = 0; state.coupons = []; selected = -1;
  clearPicks(); $('scan').value = '';
  render(); emit('quoted', null);
});
on('signed-out', () => {
  state.lines = []; state.quote = null; state.manualAdjustment = 0; state.coupons = []; selected = -1;
  clearPicks(); render();
});
export { changeBasket };
