// Payment: cash with change due live and quick amounts, stored value (member password),
// points (what they are worth, from the quote), the member's coupons, split tenders; the
// receipt on screen. Amounts are typed and shown in yuan; the API takes fen.
import { $, ApiError, api, emit, focusScan, h, on, say, showError, state, toFen, yuan, newId } from './core.js';
import { basketRequest, changeBasket } from './sale.js';

const TENDERS = [['cash', '现金'], ['sv', '储值'], ['pts', '积分抵扣']];
let saleId = null;   // one id per basket: a retried 结账 replays, never pays twice
let paying = false;

const due = () => (state.quote ? state.quote.total : 0);

// fen typed in a tender field, or null (with the field marked) when it does not read
function fenOf(id, what) {
  try { $(id).classList.remove('invalid'); return toFen($(id).value, what); } catch (e) { $(id).classList.add('invalid'); return null; }
}

// What the tenders typed come to against the amount due: shown live under the tenders.
function showPaid() {
  const total = due();
  const [cash, sv, pts] = TENDERS.map(([id, what]) => fenOf(id, what));
  const line = $('paid-line');
  line.className = 'paid-line';
  if (!state.quote || [cash, sv, pts].includes(null)) { line.textContent = state.quote ? '金额格式不对 (例如 12 或 12.50)' : ''; return; }
  const nonCash = sv + pts;
  const paid = cash + nonCash;
  if (!paid) { line.textContent = ''; renderQuick(); return; }
  if (nonCash > total) {
    line.textContent = `储值和积分合计 ${yuan(nonCash)}, 超过应付 ${yuan(total)} (只有现金可以找零)`;
    line.classList.add('short');
  } else if (paid < total) {
    line.textContent = `已付 ${yuan(paid)} · 还差 ${yuan(total - paid)}`;
    line.classList.add('short');
  } else {
    line.replaceChildren('已付 ', yuan(paid), ' · ', h('span', { class: 'change', id: 'change-due' }, `找零 ${yuan(paid - total)}`));
    line.classList.add('covered');
  }
  renderQuick();
}

// Quick cash amounts for what cash must still cover: exact, then ¥50/¥100 and the next
// round amounts above it (¥10, ¥20, ¥50, ¥100 steps); Alt+1..Alt+5 in the cash field.
export function quickAmounts(rest) {
  if (rest <= 0) return [];
  const out = [rest];
  for (const step of [1000, 2000, 5000, 10000]) {
    const up = Math.ceil(rest / step) * step;
    if (up > rest) out.push(up);
  }
  for (const note of [5000, 10000]) if (note > rest) out.push(note);
  return [...new Set(out)].sort((a, b) => a - b).slice(0, 5);
}

function cashStillDue() {
  const sv = fenOf('sv', '储值') || 0;
  const pts = fenOf('pts', '积分抵扣') || 0;
  return Math.max(0, due() - sv - pts);
}

function renderQuick() {
  const amounts = quickAmounts(cashStillDue());
  $('quick-cash').replaceChildren(...amounts.map((fen, i) => h('button', {
    type: 'button', class: 'quick-btn', dataset: { fen: String(fen) }, title: `现金 ${yuan(fen)} (Alt+${i + 1})`,
    onclick: () => { $('cash').value = (fen / 100).toFixed(2); showPaid(); $('cash').focus(); },
  }, h('kbd', {}, `Alt+${i + 1}`), ' ', i === 0 ? `刚好 ${yuan(fen)}` : yuan(fen))));
}

on('quoted', q => { saleId = null; showQuote(q); });  // the basket changed: a new sale

function showQuote(q) {
  $('total').textContent = yuan(q ? q.total : 0);
  $('breakdown').textContent = q ? breakdown(q) : '';
  const member = q && q.member;
  for (const row of document.querySelectorAll('.pay .member-only')) row.classList.toggle('off', !member);
  for (const id of ['sv', 'pw', 'pts', 'sv-all', 'pts-all']) $(id).disabled = !member;
  if (!member) for (const id of ['sv', 'pw', 'pts']) $(id).value = '';  // a walk-in's are cash
  $('sv-info').textContent = member ? `余额 ${yuan(member.stored_value.total)}${member.has_password ? '' : ' · 未设密码, 不能用储值'}` : '';
  const pt = q && q.points_tender;
  $('pts-info').textContent = pt
    ? (pt.closed ? pt.closed.replace(/\s*\([^()]*[A-Za-z][^()]*\)\s*$/, '') : `${pt.points} 积分, 可抵 ${yuan(pt.worth)} (${pt.points_per_yuan} 分抵 1 元)`)
    : '';
  if (pt && pt.closed) { $('pts').disabled = true; $('pts-all').disabled = true; }
  showPaid();
}
showQuote(null);

function breakdown(q) {
  const parts = [`原价 ${yuan(q.subtotal)}`];
  if (q.member_discount) parts.push(`会员优惠 ${yuan(q.member_discount)}`);
  if (q.line_discount) parts.push(`单品优惠 ${yuan(q.line_discount)}`);
  if (q.order_discount) parts.push(`整单折扣 ${yuan(q.order_discount)}`);
  if (q.manual_adjustment) parts.push(`折让 ${yuan(q.manual_adjustment)}`);
  if (q.coupon_discount) parts.push(`优惠券 ${yuan(q.coupon_discount)}`);
  if (q.rounding) parts.push(`抹零 ${yuan(q.rounding)}`);
  if (q.member) parts.push(`可得积分 ${q.points_preview}`);
  return parts.join(' · ');
}

// ---- coupons: the member's usable ones, ticked to claim (the quote prices them) --------
on('member-changed', async m => {
  const box = $('coupons');
  box.replaceChildren(h('span', { class: 'muted' }, m ? '正在读取…' : '无可用券'));
  if (!m) return;
  try {
    const { coupons } = await api('/members/' + encodeURIComponent(m.member_id) + '/coupons');
    if (!state.member || state.member.member_id !== m.member_id) return;
    renderCoupons(coupons);
  } catch (e) { box.replaceChildren(h('span', { class: 'muted' }, '优惠券读取失败')); showError(e); }
});

function renderCoupons(coupons) {
  const box = $('coupons');
  if (!coupons.length) { box.replaceChildren(h('span', { class: 'muted' }, '无可用券')); return; }
  box.replaceChildren(...coupons.map(c => h('label', { class: 'coupon' },
    h('input', {
      type: 'checkbox', value: c.code, checked: state.coupons.includes(c.code),
      onchange: async ev => {
        const on = ev.target.checked;
        const ok = await changeBasket(() => {
          state.coupons = on ? [...state.coupons, c.code] : state.coupons.filter(x => x !== c.code);
        });
        if (!ok) ev.target.checked = !on;
      },
    }),
    ` ${c.name || c.code}`, c.gives ? h('span', { class: 'muted' }, ` ${c.gives}`) : null,
    c.expires_on ? h('span', { class: 'muted' }, ` 至 ${c.expires_on}`) : null)));
}

// ---- paying ---------------------------------------------------------------------------
async function pay() {
  if (paying) return;
  if (!state.lines.length) { showError(new ApiError(400, { message: '购物篮是空的, 请先扫描商品' })); return; }
  try {
    const tenders = [['cash', 'cash', '现金'], ['stored_value', 'sv', '储值'], ['points', 'pts', '积分抵扣']]
      .map(([kind, id, what]) => ({ kind, amount: toFen($(id).value, what) })).filter(t => t.amount > 0);
    if (!tenders.length) {
      showError(new ApiError(400, { message: `请填写付款金额: 应付 ${yuan(due())}` }));
      $('cash').focus(); return;
    }
    saleId = saleId || newId();
    const body = { ...basketRequest(), tenders, sale_id: saleId };
    if ($('pw').value) body.member_password = $('pw').value;
    paying = true; $('pay').disabled = true;
    const r = await api('/sales', { method: 'POST', body });
    emit('receipt', { receipt: r.receipt, kind: 'sale' });
    emit('sale-done', { sale: r, receipt: r.receipt });
    resetTenders();
    emit('new-sale');
    say(r.change ? `收款成功 · 找零 ${yuan(r.change)}` : '收款成功');
    focusScan();  // the next customer
  } catch (e) {
    showError(e);
    if (e.field === 'member_password') { $('pw').value = ''; $('pw').focus(); }
  } finally {
    paying = false; $('pay').disabled = false;
  }
}

function resetTenders() {
  for (const id of ['cash', 'sv', 'pw', 'pts']) { $(id).value = ''; $(id).classList.remove('invalid'); }
  $('paid-line').textContent = ''; $('paid-line').className = 'paid-line';
  $('quick-cash').replaceChildren();
  saleId = null;
}

// Enter in a tender: pay once the tenders cover the amount due, or in the last one;
// otherwise on to the next tender.
const ORDER = ['cash', 'sv', 'pw', 'pts'];
for (const id of ORDER) {
  $(id).addEventListener('input', showPaid);
  $(id).addEventListener('keydown', ev => {
    if (ev.key !== 'Enter') return;
    ev.preventDefault();
    const open = ORDER.filter(x => !$(x).disabled);
    const [cash, sv, pts] = TENDERS.map(([tid, what]) => fenOf(tid, what));
    const covered = ![cash, sv, pts].includes(null) && cash + sv + pts >= due() && due() > 0;
    const last = open[open.length - 1] === id;
    const needsPassword = id !== 'pw' && sv > 0 && !$('pw').value;
    if (needsPassword) { $('pw').focus(); return; }
    if (covered || last) { pay(); return; }
    $(open[open.indexOf(id) + 1]).focus();
  });
}
$('cash').addEventListener('keydown', ev => {
  if (!ev.altKey || !/^[1-5]$/.test(ev.key)) return;
  const b = $('quick-cash').children[+ev.key - 1];
  if (b) { ev.preventDefault(); b.click(); }
});
$('sv-all').addEventListener('click', () => {
  const m = state.quote && state.quote.member;
  if (!m) return;
  const rest = Math.max(0, due() - (fenOf('pts', '积分抵扣') || 0));
  $('sv').value = (Math.min(rest, m.stored_value.total) / 100).toFixed(2);
  showPaid(); $('pw').focus();
});
$('pts-all').addEventListener('click', () => {
  const pt = state.quote && state.quote.points_tender;
  if (!pt) return;
  const rest = Math.max(0, due() - (fenOf('sv', '储值') || 0));
  $('pts').value = (Math.min(rest, pt.max_fen) / 100).toFixed(2);
  showPaid(); $('pts').focus();
});

// Enter on an empty scan box: the cash field, holding what cash must cover, selected
on('go-pay', () => {
  const rest = cashStillDue();
  if (!$('cash').value) $('cash').value = (rest / 100).toFixed(2);
  showPaid();
  $('cash').focus(); $('cash').select();
});

on('new-sale', () => { resetTenders(); renderCoupons([]); });
on('signed-out', () => { resetTenders(); });
$('pay').addEventListener('click', pay);
$('clear').addEventListener('click', () => { emit('new-sale'); });
