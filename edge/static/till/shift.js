// Alt+S: the shift and the day close (dialog_shift.html). A shift opens with a float (the
// cash counted into the drawer) and closes (交班) with a cash count: the API says what the
// drawer should hold and the difference before the close is confirmed. The day close (日结)
// is a manager's: a cashier gets the manager approval dialog. Every figure comes from the
// API (/api/v1/shifts, /api/v1/day-close); the screen only shows it, in yuan.
import { $, api, closeDialog, h, isManager, key, on, say, showDialog, showError, state, toFen, withManager, yuan, newId } from './core.js';

let shift = null;       // the open shift (GET /shifts/current), or null
let counted = null;     // the last count the API checked: {counted, denominations}
let approval = null;    // the manager's {code, pin} given for this day close

const TENDERS = { cash: '现金', stored_value: '储值', points: '积分抵扣' };
const difference = fen => h('span', { class: fen > 0 ? 'over' : fen < 0 ? 'short' : '' },
  `${fen > 0 ? '长款 ' : fen < 0 ? '短款 ' : ''}${yuan(fen)}`);
const row = (label, value, cls) => h('tr', { class: cls }, h('td', {}, label), h('td', { class: 'num' }, value));

function pane(name) {
  for (const p of ['open', 'close', 'day']) $('shift-' + p).hidden = p !== name;
  $('shift-tab-shift').setAttribute('aria-selected', String(name !== 'day'));
  $('shift-tab-day').setAttribute('aria-selected', String(name === 'day'));
  $('shift-title').textContent = { open: '开班', close: '交班', day: '日结' }[name];
}

async function loadShift() {
  shift = (await api('/shifts/current')).shift;
  showAsk();
  return shift;
}

async function showShift() {
  $('shift-done').textContent = '';
  try { await loadShift(); } catch (e) { showError(e); return; }
  if (!shift) {
    pane('open');
    $('shift-float').value = '';
    showDialog('shift-dialog', 'shift-float');
    return;
  }
  pane('close');
  $('shift-info').textContent = `${shift.staff_name} 的班次, 开班 ${shift.opened_at.slice(0, 16).replace('T', ' ')}, 备用金 ${yuan(shift.float)}; 目前应有现金 ${yuan(shift.expected)}`;
  $('shift-counted').value = '';
  for (const input of document.querySelectorAll('#shift-dialog .denom')) input.value = '';
  $('shift-preview').hidden = true; $('shift-close-go').disabled = true; counted = null;
  showDialog('shift-dialog', 'shift-counted');
}

$('shift-open-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  try {
    const r = await api('/shifts', { method: 'POST', body: { float: toFen($('shift-float').value, '备用金'), shift_id: newId() } });
    shift = r.shift;
    closeDialog('shift-dialog');
    say(`已开班, 备用金 ${yuan(shift.float)}`);
    showAsk();
  } catch (e) { showError(e); $('shift-done').textContent = ''; }
});

// what was counted, as the API takes it: the denominations if any were typed, else the total
function countBody() {
  const denominations = {};
  for (const input of document.querySelectorAll('#shift-dialog .denom')) {
    const t = input.value.trim();
    if (!t) continue;
    if (!/^\d{1,6}$/.test(t)) throw new Error(`${input.parentElement.textContent.trim()} 的张数须为整数`);
    denominations[input.dataset.face] = parseInt(t, 10);
  }
  const total = $('shift-counted').value.trim();
  const body = {};
  if (Object.keys(denominations).length) body.denominations = denominations;
  if (total || !body.denominations) body.counted = toFen(total, '实点现金');
  return body;
}

$('shift-count-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  try {
    const body = countBody();
    const r = await api('/shifts/current/count', { method: 'POST', body });
    counted = body;
    const f = r.figures;
    $('shift-preview').tBodies[0].replaceChildren(
      row('备用金', yuan(r.float)),
      row(`现金收入 (销售 ${yuan(f.sales.tenders.cash)}, 已扣找零 ${yuan(f.sales.change)}; 充值 ${yuan(f.topups.principal)}; 卡费 ${yuan(f.card_sales.total)})`, yuan(f.cash_in)),
      row(`现金支出 (退款 ${yuan(f.returns.tenders.cash)}; 储值退款 ${yuan(f.sv_refunds.total)})`, yuan(-f.cash_out)),
      row('应有现金', yuan(r.expected), 'big'),
      row('实点现金', yuan(r.counted), 'big'),
      row('差额', difference(r.difference), 'big'),
      row(`销售 ${f.sales.count} 笔 (${Object.entries(f.sales.tenders).filter(([, v]) => v).map(([k, v]) => `${TENDERS[k]} ${yuan(v)}`).join(', ') || '无'})`, yuan(f.sales.total)),
      row(`退货 ${f.returns.count} 笔`, yuan(f.returns.total)),
    );
    $('shift-preview').hidden = false;
    $('shift-close-go').disabled = false;
    $('shift-close-go').focus();
  } catch (e) { showError(e); }
});

$('shift-close-go').addEventListener('click', async () => {
  if (!counted) return;
  $('shift-close-go').disabled = true;
  try {
    const r = await api('/shifts/current/close', { method: 'POST', body: { ...counted, shift_id: shift.shift_id } });
    shift = null; counted = null; showAsk();
    $('shift-done').textContent = `已交班: 应有 ${yuan(r.shift.expected)}, 实点 ${yuan(r.shift.counted)}, ${r.shift.difference > 0 ? '长款' : r.shift.difference < 0 ? '短款' : '无差额'} ${yuan(Math.abs(r.shift.difference))}; 交班单已打印`;
    $('shift-preview').hidden = true;
    $('shift-done').scrollIntoView({ block: 'nearest' });
  } catch (e) { showError(e); $('shift-close-go').disabled = false; }
});

// ---- the day close ------------------------------------------------------------------------
function dayBody(extra = {}) {
  const body = { ...extra };
  const day = $('shift-day-date').value;
  if (day) body.day = day;
  return body;
}

function table(head, rows) {
  return h('table', { class: 'figures' },
    h('thead', {}, h('tr', {}, ...head.map((t, i) => h('th', { class: i ? 'num' : '' }, t)))),
    h('tbody', {}, ...rows.map(r => h('tr', {}, ...r.map((v, i) => h('td', { class: i ? 'num' : '' }, v))))));
}

function showReport(report) {
  const f = report.figures;
  const s = f.sales;
  $('shift-day-report').replaceChildren(h('div', { class: 'report' },
    h('div', {},
      h('h4', {}, `营业日 ${report.day} · 按付款方式`),
      table(['付款方式', '销售', '退款'], Object.keys(TENDERS).map(k => [TENDERS[k], yuan(s.tenders[k]), yuan(f.returns.tenders[k])])
        .concat([['合计', yuan(s.total), yuan(f.returns.total)]])),
      h('h4', {}, '会员与散客'),
      table(['', '笔数', '金额'], [['会员', String(s.member_count), yuan(s.member_total)], ['散客', String(s.walkin_count), yuan(s.walkin_total)]]),
      h('h4', {}, '其他'),
      table(['', '笔数', '金额'], [
        ['退货', String(f.returns.count), yuan(f.returns.total)],
        ['储值充值 (赠送另计)', String(f.topups.count), yuan(f.topups.principal)],
        ['卡费', String(f.card_sales.count), yuan(f.card_sales.total)],
        ['储值退款', String(f.sv_refunds.count), yuan(f.sv_refunds.total)],
        ['积分使用', '', `${s.points_used} 积分`],
        ['现金净额', '', yuan(f.cash_net)],
      ])),
    h('div', {},
      h('h4', {}, '按员工'),
      table(['员工', '笔数', '销售', '退款', '现金净额'], f.staff.map(x => [`${x.name || x.code} (${x.code})`, String(x.sales_count), yuan(x.sales_total), yuan(x.returns_total), yuan(x.cash_net)])),
      h('h4', {}, '班次'),
      table(['员工', '备用金', '应有', '实点', '差额'], f.shifts.map(x => [x.staff_name || x.staff_code, yuan(x.float), yuan(x.expected), yuan(x.counted), difference(x.difference)])
        .concat([['合计差额', '', '', '', difference(f.shifts_difference)]])))));
  const notes = [];
  if (report.open_shifts.length) notes.push(`还有未交班的班次: ${report.open_shifts.map(x => `${x.staff_name}(${x.staff_code})`).join('、')}, 请先交班`);
  if (report.closes.length) notes.push(`该营业日已日结 ${report.closes.length} 次 (最近 ${report.closes.at(-1).closed_at.slice(0, 16).replace('T', ' ')})`);
  $('shift-day-note').textContent = notes.join('; ');
  $('shift-day-close').disabled = report.open_shifts.length > 0 || report.closes.length > 0;
  $('shift-day-reclose').hidden = !(report.closes.length > 0 && !report.open_shifts.length);
  $('shift-day-close').focus();
}

async function preview() {
  try {
    const report = await withManager('日结需要店长授权', manager => {
      approval = manager && !isManager() ? manager : null;
      return api('/day-close/preview', { method: 'POST', body: dayBody(approval ? { manager: approval } : {}) });
    });
    showReport(report);
  } catch (e) { showError(e); }
}

async function closeDay(reclose) {
  $('shift-day-close').disabled = true;
  try {
    const r = await withManager('日结需要店长授权', manager => {
      if (manager && !isManager()) approval = manager;
      return api('/day-close', { method: 'POST', body: dayBody({ ...(approval ? { manager: approval } : {}), ...(reclose ? { reclose: true } : {}) }) });
    });
    $('shift-done').textContent = `${r.day} 已日结${r.revision > 1 ? ` (第 ${r.revision} 次)` : ''}, 日结单已打印`;
    $('shift-day-reclose').hidden = true;
    $('shift-done').scrollIntoView({ block: 'nearest' });
  } catch (e) { showError(e); $('shift-day-close').disabled = false; }
}

$('shift-day-form').addEventListener('submit', ev => { ev.preventDefault(); preview(); });
$('shift-day-close').addEventListener('click', () => closeDay(false));
$('shift-day-reclose').addEventListener('click', () => closeDay(true));
$('shift-tab-shift').addEventListener('click', () => showShift());
$('shift-tab-day').addEventListener('click', () => {
  pane('day'); $('shift-done').textContent = ''; $('shift-day-report').replaceChildren(); $('shift-day-note').textContent = '';
  $('shift-day-close').disabled = true; $('shift-day-reclose').hidden = true; approval = null;
  showDialog('shift-dialog', 'shift-day-go');
});
for (const b of document.querySelectorAll('#shift-dialog .shift-cancel')) b.addEventListener('click', () => closeDialog('shift-dialog'));

key('Alt+S', '交班/日结', showShift);

// after sign-in (or a reload): a staff member with no open shift is asked to open one, by
// a button in the header that stays until the shift is open (it takes no focus from the
// scan box: a sale outside a shift is allowed, and counted in the day close)
const ask = h('button', { type: 'button', id: 'shift-ask', class: 'shift-ask', hidden: true, onclick: () => showShift() },
  '未开班 · 点此开班 (Alt+S)');
$('top').insertBefore(ask, $('status'));
function showAsk() { ask.hidden = !state.staff || Boolean(shift); }
on('signed-in', async () => {
  try { await loadShift(); } catch (e) { showError(e); }
  showAsk();
});
on('signed-out', () => { shift = null; counted = null; approval = null; showAsk(); });
