// The basket: scan, type a code, change quantities, remove lines; every change is priced
// by POST /sales/quote (the API is the one source of prices).
import { $, api, emit, focusScan, h, on, showError, state, yuan } from './core.js';

function basketRequest() {
  const body = { lines: state.lines.map(l => ({ sku: l.sku, qty: l.qty, line_discount: l.line_discount || 0 })) };
  if (state.member) body.member = { member_id: state.member.member_id };
  if (state.orderDiscountRate !== 1000) body.order_discount_rate = state.orderDiscountRate;
  if (state.manager) body.manager = state.manager;
  return body;
}
export { basketRequest };

export async function requote() {
  showError('');
  if (!state.lines.length) { state.quote = null; render(); emit('quoted', null); return; }
  state.quote = await api('/sales/quote', { method: 'POST', body: basketRequest() });
  render();
  emit('quoted', state.quote);
}

function render() {
  const q = state.quote;
  $('lines-empty').hidden = Boolean(q);
  $('lines').replaceChildren(...(q ? q.lines : []).map((l, i) => h('tr', {},
    h('td', {}, l.name, l.promo ? h('span', { class: 'tag' }, '特价') : null),
    h('td', { class: 'num' }, h('input', {
      class: 'qty', value: l.qty, inputmode: 'numeric', 'aria-label': `${l.name} 数量`,
      onchange: async ev => {
        state.lines[i].qty = parseInt(ev.target.value, 10) || 1;
        try { await requote(); } catch (e) { showError(e); }
      },
    })),
    h('td', { class: 'num' }, yuan(l.unit_price)),
    h('td', { class: 'num' }, yuan(l.gross - l.amount)),
    h('td', { class: 'num' }, yuan(l.amount)),
    h('td', {}, h('button', {
      type: 'button', class: 'remove', 'aria-label': `删除 ${l.name}`,
      onclick: async () => { state.lines.splice(i, 1); try { await requote(); } catch (e) { showError(e); } focusScan(); },
    }, '删除')),
  )));
}

$('scan').addEventListener('keydown', async ev => {
  if (ev.key !== 'Enter') return;
  const code = ev.target.value.trim();
  if (!code) return;
  try {
    const { product } = await api('/products/' + encodeURIComponent(code));
    const line = state.lines.find(l => l.sku === product.sku);
    if (line) line.qty += 1; else state.lines.push({ sku: product.sku, qty: 1, line_discount: 0 });
    ev.target.value = '';
    await requote();
  } catch (e) { showError(e); }
});

on('member-changed', async () => { try { await requote(); } catch (e) { showError(e); } });
on('new-sale', () => {
  state.lines = []; state.quote = null; state.orderDiscountRate = 1000; state.manager = null;
  render(); emit('quoted', null);
});
on('signed-out', () => { state.lines = []; state.quote = null; render(); });
