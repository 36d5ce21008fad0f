// The header's state of the store: the offline banner and the devices, from
// GET /api/v1/status every 10 s (a background request: it does not keep the session alive).
// The sync agent writes its link to the broker and HQ where the till reads it (`sync` in
// the status; edge/services/sync_link.py): a lost link shows at once. Without an agent's
// word (none ever ran, or it stopped writing) the outbox tells: sales HQ has not
// acknowledged for a minute mean the store is cut off. Trading goes on either way, and the
// banner says so.
import { $, api, emit, h, on, state } from './core.js';

const POLL_MS = 10000;
const OFFLINE_AFTER_S = 60;
let timer = null;

const ROLE = { printer: '打印机', reader: '读卡器', display: '顾客显示屏' };
const STATE = { ready: '正常', busy: '忙', connecting: '连接中', disconnected: '未连接', paper_out: '缺纸', error: '故障' };
// what to do, per role and state: the cashier's own steps first, then whom to call
const TODO = {
  'printer.paper_out': '打印机缺纸: 请打开盖子装入新纸卷再合上, 未打出的小票会自动补打',
  'printer.disconnected': '打印机未连接: 请检查打印机电源和USB线; 小票已排队, 接好后自动打印',
  'printer.error': '打印机故障: 请关闭打印机电源再打开; 仍不行请联系技术人员',
  'reader.disconnected': '读卡器未连接: 请插好读卡器USB线; 期间可在会员框手输卡号或手机号',
  'reader.error': '读卡器故障: 请拔下读卡器再插上; 期间可在会员框手输卡号或手机号',
  'display.disconnected': '顾客显示屏未连接: 请检查连线 (不影响收银)',
  'display.error': '顾客显示屏故障: 请检查连线 (不影响收银)',
};

export function secondsBetween(nowIso, thenIso) {
  const s = Math.max(0, (Date.parse(nowIso) - Date.parse(thenIso)) / 1000);
  return Number.isFinite(s) ? s : 0;
}

// "2026-11-23T10:05:00+08:00" -> "10:05" (the till's own clock, as the agent stamped it)
function clock(iso) { return String(iso || '').slice(11, 16); }

function ageText(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} 秒`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} 分钟`;
  return `${Math.round(seconds / 3600)} 小时`;
}

function render(s) {
  const notes = [];
  const outbox = s.outbox || {};
  const age = outbox.oldest_pending_at ? secondsBetween(s.now, outbox.oldest_pending_at) : 0;
  const link = s.sync;
  const backlog = outbox.pending ? `${outbox.pending} 笔待上传` : '没有待上传的记录';
  let offline = false;
  if (link && !link.stale && !link.connected) {
    offline = true;
    notes.push(`网络中断: 自 ${clock(link.since)} 连不上总部; ${backlog}; 收银照常进行, 恢复后自动补传`);
  } else if (link && !link.stale && link.hq_online === false) {
    offline = true;
    notes.push(`总部暂停服务: ${backlog}; 收银照常进行, 恢复后自动补传`);
  } else if (outbox.pending > 0 && age >= OFFLINE_AFTER_S) {
    offline = true;
    const why = link && link.stale ? '同步程序未运行 (请联系技术人员)' : '网络中断或总部未确认';
    notes.push(`${why}: ${outbox.pending} 笔待上传, 最早一笔在 ${ageText(age)}前; 收银照常进行, 恢复后自动补传`);
  }
  const refused = outbox.refused && outbox.refused.count;
  const chips = [];
  for (const [role, d] of Object.entries(s.devices || {})) {
    if (!d || d.state === 'disabled') continue;
    const bad = Boolean(TODO[`${role}.${d.state}`]);
    chips.push(h('span', { class: 'chip' + (bad ? ' bad' : ''), dataset: { role, state: d.state }, title: d.last_error || '' },
      `${ROLE[role] || role} ${STATE[d.state] || d.state}`));
    if (bad) notes.push(TODO[`${role}.${d.state}`]);
  }
  chips.unshift(h('span', { class: 'chip' + (offline ? ' bad' : ''), dataset: { role: 'outbox' } },
    outbox.pending ? `待上传 ${outbox.pending}` : '已同步'));
  if (refused) chips.push(h('span', { class: 'chip bad', title: '总部拒收的记录, 请联系技术人员' }, `总部拒收 ${refused}`));
  $('status').replaceChildren(...chips);
  showBanner(notes, offline);
}

function showBanner(notes, offline) {
  const banner = $('banner');
  banner.replaceChildren(...notes.map(n => h('span', { class: 'note' }, n)));
  banner.classList.toggle('offline', offline);
  banner.hidden = notes.length === 0;
}

export async function refreshStatus() {
  if (!state.staff) return;
  try {
    const s = await api('/status');
    render(s);
    emit('status', s);
  } catch (e) {
    if (e.status === 0) showBanner([e.message], true);
    else if (e.status !== 401) console.error('status', e);
  }
}

function start() {
  stop();
  refreshStatus();
  timer = setInterval(refreshStatus, POLL_MS);
}
function stop() {
  if (timer) clearInterval(timer);
  timer = null;
}

on('signed-in', start);
on('signed-out', () => { stop(); $('status').replaceChildren(); showBanner([], false); });
// a receipt just printed (or not): the printer's state now rather than in 10 s
on('sale-done', () => setTimeout(refreshStatus, 800));
