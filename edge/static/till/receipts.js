// The receipt on screen, as the paper reads (edge/devices/receipt_render.py): title (重打 on
// a copy), receipt number, cashier, lines, totals, tenders, the member by masked name and
// card tail with the points of this receipt signed once. Shown on every `receipt` event:
// after a sale beside the basket until the next key or touch; after a return or a reprint
// as a dialog that Enter or Esc closes. F8 重打小票: today's sales, paged, or one by number.
import { $, api, closeDialog, emit, focusScan, h, key, on, openDialog, say, showDialog, yuan } from './core.js';

const signed = n => (n > 0 ? `+${n}` : String(n));
const row = (label, value, cls) => h('div', { class: 'row' + (cls ? ' ' + cls : '') }, h('span', {}, label), h('span', {}, value));

export function receiptView(rc) {
  const refund = rc.kind === 'return';
  const m = rc.member;
  return [
    h('div', { class: 'store' }, rc.store_name),
    h('div', { class: 'title', id: 'receipt-view-title' }, rc.title),
    rc.reprint ? h('div', { class: 'reprint' }, '** 重打 **') : null,
    row('小票号', rc.document_no, 'no'),
    row('时间', rc.occurred_at),
    row('收银员', rc.cashier),
    h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, '商品'), h('th', { class: 'num' }, '数量'), h('th', { class: 'num' }, '单价'), h('th', { class: 'num' }, '金额'))),
      h('tbody', {}, ...rc.lines.map(l => h('tr', {},
        h('td', {}, l.name, l.note ? h('span', { class: 'tag' }, l.note) : null),
        h('td', { class: 'num' }, String(l.qty)),
        h('td', { class: 'num' }, yuan(l.unit_price)),
        h('td', { class: 'num' }, yuan(l.amount)))))),
    row(refund ? '退货合计' : '商品合计', yuan(rc.subtotal)),
    rc.discount_total ? row('优惠', yuan(-rc.discount_total)) : null,
    rc.rounding ? row('抹零', yuan(-rc.rounding)) : null,
    row(refund ? '退款合计' : '应付', yuan(rc.total), 'total'),
    ...rc.tenders.map(t => row((refund ? '退' : '') + t.label + (t.points ? `(${t.points}分)` : ''), yuan(t.amount))),
    rc.change ? row('找零', yuan(rc.change)) : null,
    m ? h('div', { class: 'member' },
      row('会员', `${m.masked_name} ${m.masked_phone}`.trim()),
      row('卡号', `****${m.card_no_tail}` + (m.tier ? ` · ${m.tier}` : '')),
      row('本次积分', signed(m.points_earned), 'points'),
      row('积分余额', String(m.points_balance)),
      row('储值余额', yuan(m.stored_value_balance))) : null,
    ...(rc.footer || []).map(f => h('div', { class: 'footer' }, f)),
  ].filter(Boolean);
}

// a sale's receipt shows without taking the keyboard (the next scan closes it); a
// return's or a reprint's is a dialog of its own
let besideBasket = false;
const OWN_DIALOG = new Set(['return', 'reprint']);
on('receipt', ({ receipt, kind }) => {
  $('receipt-view').replaceChildren(...receiptView(receipt));
  $('receipt-view').dataset.kind = kind;
  const d = $('receipt-dialog');
  if (d.open) d.close();
  // a return's slip and a reprint are this module's own dialogs; any other receipt (a
  // sale's, a top-up's) must not take the screen from the panel that made it
  besideBasket = !OWN_DIALOG.has(kind);
  d.classList.toggle('beside', besideBasket);
  if (!besideBasket) { showDialog('receipt-dialog', 'receipt-close'); return; }
  // made inside a task's dialog (a top-up, an annual card): that dialog shows its result
  // and keeps the keyboard; the receipt waits for F8
  if (openDialog()) { besideBasket = false; return; }
  // a dialog shown takes the focus: give it back, so the next scan lands in the scan box
  const had = document.activeElement;
  d.show();
  d.scrollTop = 0;
  if (had && had !== document.body) had.focus(); else focusScan();
});

function closeReceipt() { if ($('receipt-dialog').open) $('receipt-dialog').close(); }
$('receipt-close').addEventListener('click', closeReceipt);
// beside the basket: any key closes it before the screen acts on the key (so F-keys and
// scans go on as usual), any touch outside it too
document.addEventListener('keydown', ev => {
  if (!besideBasket || !$('receipt-dialog').open) return;
  closeReceipt();
  if (ev.key === 'Escape') ev.preventDefault();
}, true);
document.addEventListener('pointerdown', ev => {
  if (besideBasket && $('receipt-dialog').open && !$('receipt-dialog').contains(ev.target)) closeReceipt();
}, true);
on('quoted', q => { if (q && besideBasket) closeReceipt(); });
on('signed-out', () => { $('receipt-view').replaceChildren(); });

// ---- F8 重打小票 -------------------------------------------------------------------------
const STATUS = { completed: '', partly_returned: '部分已退', returned: '已退货' };
const PER_PAGE = 8;
let page = 1;

function fail(e) { $('reprint-error').textContent = e ? (e.message || String(e)) : ''; }

function list(sales) {
  $('reprint-empty').hidden = sales.length > 0;
  $('reprint-list').replaceChildren(...sales.map(s => h('tr', {},
    h('td', {}, s.receipt_no), h('td', {}, s.occurred_at.slice(11)), h('td', {}, s.cashier),
    h('td', {}, s.member ? `${s.member.masked_name} ****${s.member.card_no_tail}` : '散客'),
    h('td', { class: 'num' }, yuan(s.total)), h('td', {}, STATUS[s.status]),
    h('td', {}, h('button', { type: 'button', class: 'reprint', dataset: { no: s.receipt_no }, onclick: () => reprint(s) }, '重打')))));
}

async function loadPage(n) {
  fail('');
  try {
    const r = await api(`/sales?page=${n}&per_page=${PER_PAGE}`);
    page = n;
    list(r.sales);
    $('reprint-empty').textContent = n === 1 ? '今天还没有销售' : '没有更多了';
    $('reprint-page').textContent = `今日销售 第 ${n} 页`;
    $('reprint-prev').disabled = n <= 1;
    $('reprint-next').disabled = !r.more;
  } catch (e) { fail(e); }
}

async function find(ev) {
  ev.preventDefault();
  const no = $('reprint-no').value.trim();
  if (!no) { loadPage(1); return; }
  fail('');
  try {
    const { sales } = await api('/sales?receipt_no=' + encodeURIComponent(no));
    list(sales);
    $('reprint-page').textContent = `小票 ${sales[0].receipt_no}`;
    $('reprint-prev').disabled = false; $('reprint-next').disabled = true;
    const button = $('reprint-list').querySelector('button.reprint');
    if (button) button.focus();
  } catch (e) { fail(e); $('reprint-no').select(); }
}

async function reprint(s) {
  fail('');
  try {
    const r = await api(`/sales/${encodeURIComponent(s.sale_id)}/reprint`, { method: 'POST' });
    say(`小票 ${s.receipt_no} 已重打`);
    // the copy shows as printed, over the list, which stays open for the next one
    emit('receipt', { receipt: r.receipt, kind: 'reprint' });
  } catch (e) { fail(e); }
}

$('reprint-find').addEventListener('submit', find);
$('reprint-prev').addEventListener('click', () => loadPage(Math.max(1, page - 1)));
$('reprint-next').addEventListener('click', () => loadPage(page + 1));
$('reprint-close').addEventListener('click', () => closeDialog('reprint-dialog'));
$('reprint-dialog').addEventListener('keydown', ev => {
  if (ev.key === 'PageDown' && !$('reprint-next').disabled) { ev.preventDefault(); loadPage(page + 1); }
  if (ev.key === 'PageUp' && !$('reprint-prev').disabled) { ev.preventDefault(); loadPage(Math.max(1, page - 1)); }
});
key('F8', '重打小票', () => {
  $('reprint-no').value = '';
  showDialog('reprint-dialog', 'reprint-no');
  loadPage(1);
});
