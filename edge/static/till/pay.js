// Payment: cash, stored value (member password), points; the receipt on screen.
import { $, api, emit, on, showError, state, toFen, yuan, newId } from './core.js';
import { basketRequest } from './sale.js';

on('quoted', q => {
  $('total').textContent = yuan(q ? q.total : 0);
  $('breakdown').textContent = q
    ? `原价 ${yuan(q.subtotal)} · 会员优惠 ${yuan(q.member_discount)} · 抹零 ${yuan(q.rounding)} · 可得积分 ${q.points_preview}`
    : '';
});

function receiptText(rc) {
  return [rc.title, rc.store_name, rc.occurred_at, ...rc.lines.map(l => `${l.name} ×${l.qty}  ${yuan(l.amount)}`),
    `合计 ${yuan(rc.total)}`, ...rc.tenders.map(t => `${t.label} ${yuan(t.amount)}`), `找零 ${yuan(rc.change)}`,
    rc.member ? `本次积分 ${rc.member.points_earned} · 积分余额 ${rc.member.points_balance} · 储值余额 ${yuan(rc.member.stored_value_balance)}` : '',
  ].join('\n');
}

on('receipt', ({ receipt }) => { $('receipt').textContent = receiptText(receipt); });

async function pay() {
  try {
    const tenders = [['cash', $('cash').value, '现金'], ['stored_value', $('sv').value, '储值'], ['points', $('pts').value, '积分抵扣']]
      .map(([kind, v, what]) => ({ kind, amount: toFen(v, what) })).filter(t => t.amount > 0);
    const body = { ...basketRequest(), tenders, sale_id: newId() };
    if ($('pw').value) body.member_password = $('pw').value;
    const r = await api('/sales', { method: 'POST', body });
    emit('receipt', { receipt: r.receipt, kind: 'sale' });
    emit('sale-done', { sale: r, receipt: r.receipt });
    ['cash', 'sv', 'pw', 'pts'].forEach(id => { $(id).value = ''; });
    emit('new-sale');
  } catch (e) { showError(e); }
}
$('pay').addEventListener('click', pay);
$('clear').addEventListener('click', () => emit('new-sale'));
