// F7 退货: find the sale (its receipt's barcode scanned, its number typed, or the member's
// recent sales), choose how many of each line come back, see the refund per tender as
// the API previews it (POST /sales/{id}/returns/quote), and confirm with a manager's
// approval (every return needs one); the slip then shows (receipts.js, on `receipt`).
import { $, api, closeDialog, emit, h, key, newId, say, showDialog, state, withManager, yuan, ApiError } from './core.js';

let sale = null;      // GET /sales?receipt_no= answer's sale (receipts.sale_view)
let quote = null;     // the last preview for the quantities shown
let asked = 0;        // the preview asked last: an older answer arriving late is dropped

const STATUS = { completed: '未退货', partly_returned: '部分已退', returned: '已全部退货' };

function fail(e) { $('return-error').textContent = e ? (e.message || String(e)) : ''; }

function open() {
  sale = null; quote = null;
  $('return-no').value = '';
  $('return-found').replaceChildren();
  $('return-sale').hidden = true;
  $('return-quote').replaceChildren();
  $('return-confirm').disabled = true;
  $('return-by-member').hidden = !state.member;
  if (state.member) $('return-by-member').textContent = `${state.member.masked_name || '本会员'} 近期消费`;
  fail('');
  showDialog('return-dialog', 'return-no');
}

async function findByNumber(ev) {
  ev.preventDefault();
  const no = $('return-no').value.trim();
  fail('');
  if (!no) { fail('请扫描小票条码或输入小票号'); return; }
  try {
    const { sales } = await api('/sales?receipt_no=' + encodeURIComponent(no));
    $('return-found').replaceChildren();
    show(sales[0]);
  } catch (e) { fail(e); $('return-no').select(); }
}

async function findByMember() {
  fail('');
  try {
    const { sales } = await api(`/sales?member_id=${encodeURIComponent(state.member.member_id)}&limit=10`);
    $('return-found').replaceChildren(...(sales.length ? sales.map(s => h('button', {
      type: 'button', class: 'sale-pick', onclick: () => { $('return-found').replaceChildren(); show(s); },
    }, `${s.receipt_no} · ${s.occurred_at} · ${yuan(s.total)} · ${STATUS[s.status]}`)) : [h('div', { class: 'muted' }, '该会员近90天在本店没有消费')]));
    const first = $('return-found').querySelector('button');
    if (first) first.focus();
  } catch (e) { fail(e); }
}

function show(s) {
  sale = s; quote = null;
  $('return-sale').hidden = false;
  $('return-head').replaceChildren(
    h('b', {}, `小票 ${s.receipt_no}`), ` · ${s.occurred_at} · 收银员 ${s.cashier}`,
    s.member ? ` · 会员 ${s.member.masked_name} 卡号 ****${s.member.card_no_tail}` : ' · 散客',
    h('br'), `实收 ${yuan(s.total)} (${s.tenders.map(t => `${t.label} ${yuan(t.amount)}`).join(', ')})`,
    s.refunded ? ` · 已退 ${yuan(s.refunded)}` : '', ` · ${STATUS[s.status]}`,
  );
  $('return-lines').replaceChildren(...s.lines.map(l => h('tr', { class: l.left ? '' : 'done' },
    h('td', {}, l.name),
    h('td', { class: 'num' }, String(l.qty)),
    h('td', { class: 'num' }, String(l.returned_qty)),
    h('td', { class: 'num' }, h('input', {
      class: 'qty', value: '0', inputmode: 'numeric', autocomplete: 'off', disabled: !l.left,
      dataset: { line: l.line_no, left: l.left }, 'aria-label': `${l.name} 退货数量, 最多 ${l.left}`,
      onchange: preview,
      onkeydown: ev => { if (ev.key === 'Enter') { ev.preventDefault(); preview().then(() => nextAfter(ev.target)); } },
    }), h('span', { class: 'muted' }, ` /${l.left}`)),
    h('td', { class: 'num' }, yuan(l.refundable)),
  )));
  $('return-quote').replaceChildren();
  $('return-confirm').disabled = true;
  if (!s.lines.some(l => l.left)) { fail('这张小票已全部退货'); return; }
  const first = $('return-lines').querySelector('input:not([disabled])');
  if (first) { first.focus(); first.select(); }
}

// Enter in a quantity goes to the next one, and from the last to the confirm button
function nextAfter(input) {
  const inputs = [...$('return-lines').querySelectorAll('input:not([disabled])')];
  const next = inputs[inputs.indexOf(input) + 1];
  if (next) { next.focus(); next.select(); } else if (!$('return-confirm').disabled) $('return-confirm').focus();
}

// the quantities typed, checked: [{line_no, qty}] of those above 0
function wanted() {
  const lines = [];
  for (const input of $('return-lines').querySelectorAll('input.qty:not([disabled])')) {
    const text = input.value.trim() || '0';
    const left = Number(input.dataset.left);
    if (!/^\d{1,6}$/.test(text) || Number(text) > left) {
      input.focus();
      throw new ApiError(400, { message: `退货数量须为 0 到 ${left} 的整数: “${text}”` });
    }
    if (Number(text) > 0) lines.push({ line_no: Number(input.dataset.line), qty: Number(text) });
  }
  return lines;
}

async function preview() {
  fail(''); quote = null;
  $('return-confirm').disabled = true;
  $('return-quote').replaceChildren();
  let lines;
  try { lines = wanted(); } catch (e) { fail(e); return; }
  if (!lines.length) return;
  const mine = ++asked;
  try {
    const q = await api(`/sales/${encodeURIComponent(sale.sale_id)}/returns/quote`, { method: 'POST', body: { lines } });
    if (mine !== asked) return;
    quote = { ...q, asked: lines };
    const points = [];
    if (q.points_restored) points.push(`退回积分 +${q.points_restored}`);
    if (q.points_reversed) points.push(`扣回积分 -${q.points_reversed}`);
    $('return-quote').replaceChildren(
      h('div', { class: 'refund' }, '退款合计 ', h('b', { id: 'return-total' }, yuan(q.refund_total)), q.full ? ' (整单退完)' : ''),
      h('div', {}, q.tenders.map(t => `退${t.label} ${yuan(t.amount)}`).join(' · ') + ' — 按原支付方式退回'),
      points.length ? h('div', { class: 'muted' }, points.join(' · ')) : null,
    );
    $('return-confirm').disabled = false;
  } catch (e) { if (mine === asked) fail(e); }
}

function fill(all) {
  for (const input of $('return-lines').querySelectorAll('input.qty:not([disabled])')) input.value = all ? input.dataset.left : '0';
  preview();
}

async function confirm() {
  if (!sale || !quote) return;
  const lines = quote.asked;
  const body = { lines, return_id: newId() };  // one id for this return, kept over retries
  fail('');
  $('return-confirm').disabled = true;
  try {
    const r = await withManager('退货需要店长授权', manager =>
      api(`/sales/${encodeURIComponent(sale.sale_id)}/returns`, { method: 'POST', body: manager ? { ...body, manager } : body }));
    closeDialog('return-dialog');
    say(`已退款 ${yuan(r.return.refund_total)}: ${r.return.tenders.map(t => yuan(t.amount)).join(' + ')} 按原支付方式退回`);
    emit('receipt', { receipt: r.receipt, kind: 'return' });
  } catch (e) { fail(e); $('return-confirm').disabled = false; }
}

$('return-find').addEventListener('submit', findByNumber);
$('return-by-member').addEventListener('click', findByMember);
$('return-all').addEventListener('click', () => fill(true));
$('return-none').addEventListener('click', () => fill(false));
$('return-confirm').addEventListener('click', confirm);
$('return-close').addEventListener('click', () => closeDialog('return-dialog'));
key('F7', '退货', open);
