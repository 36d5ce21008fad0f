// Follow-up calls (回访, docs/till-screen.md "Follow-up calls"): F10 lists today's calls of
// the signed-in staff (a manager may tick 本店全部), each opens a form for the outcome —
// reached or not, satisfaction 1-5, what the member said, a complaint, a request — sent as
// POST /followups/{id}/outcome with an outcome_id minted once per form, so a retry never
// records twice. On member-changed, the member's open calls fill #member-followups.
import { $, api, closeDialog, h, isManager, key, newId, on, say, showDialog, showError, state } from './core.js';

let current = null;   // the call whose form is open: {call, outcomeId}

function line(call, onpick) {
  return h('button', { type: 'button', role: 'listitem', dataset: { id: call.followup_id }, onclick: () => onpick(call) },
    h('span', { class: 'fu-due' + (call.overdue ? ' overdue' : '') }, call.overdue ? `逾期 ${call.due_on}` : call.due_on),
    h('span', {}, call.kind_label),
    h('span', {}, `${call.masked_name} ${call.phone}`),
    h('span', { class: 'fu-reason' }, call.reason),
    h('span', { class: 'muted' }, call.staff_code ? `${call.staff_name || ''} ${call.staff_code}` : '门店'));
}

async function load() {
  const all = isManager() && $('fu-all').checked;
  const { followups } = await api('/followups' + (all ? '?all=1' : ''));
  $('fu-count').textContent = followups.length ? `${followups.length} 个, 逾期 ${followups.filter(c => c.overdue).length} 个` : '';
  $('fu-list').replaceChildren(...(followups.length
    ? followups.map(c => line(c, openForm))
    : [h('div', { class: 'empty' }, all ? '本店今天没有要回访的会员' : '今天没有您要回访的会员')]));
  return followups;
}

async function openList() {
  $('fu-all-label').hidden = !isManager();
  $('fu-form').hidden = true; $('fu-list').hidden = false;
  current = null;
  showDialog('followups-dialog', 'fu-close');
  try {
    await load();
    const first = $('fu-list').querySelector('button');
    if (first) first.focus();
  } catch (e) { showError(e); }
}

function openForm(call) {
  current = { call, outcomeId: newId() };
  $('fu-who').replaceChildren(
    `${call.kind_label} · ${call.masked_name} ${call.phone} · `,
    h('span', { class: call.overdue ? 'fu-overdue' : '' }, call.overdue ? `逾期 (应于 ${call.due_on})` : `应于 ${call.due_on}`),
    h('div', { class: 'fu-reason' }, call.reason));
  for (const id of ['fu-said', 'fu-complaint', 'fu-request']) $(id).value = '';
  for (const r of document.querySelectorAll('#fu-form input[type=radio]')) r.checked = r.value === '' && r.name === 'fu-sat';
  $('fu-error').textContent = '';
  $('fu-list').hidden = true; $('fu-form').hidden = false;
  showDialog('followups-dialog', 'fu-reached-yes');
}

function picked(name) {
  const r = document.querySelector(`#fu-form input[name=${name}]:checked`);
  return r ? r.value : null;
}

async function save(ev) {
  ev.preventDefault();
  if (!current) return;
  const reached = picked('fu-reached');
  if (reached === null) { $('fu-error').textContent = '请选择是否联系上会员'; $('fu-reached-yes').focus(); return; }
  const sat = picked('fu-sat');
  const body = {
    outcome_id: current.outcomeId,
    reached: reached === '1',
    satisfaction: sat ? Number(sat) : null,
    said: $('fu-said').value, complaint: $('fu-complaint').value, request: $('fu-request').value,
  };
  $('fu-save').disabled = true;
  try {
    await api(`/followups/${encodeURIComponent(current.call.followup_id)}/outcome`, { method: 'POST', body });
    say(body.complaint.trim() ? '已记录回访结果, 投诉已交店长处理' : '已记录回访结果');
    const memberId = current.call.member_id;
    current = null;
    $('fu-form').hidden = true; $('fu-list').hidden = false;
    const left = await load();
    const first = $('fu-list').querySelector('button');
    (first || $('fu-close')).focus();
    if (state.member && state.member.member_id === memberId) await memberCalls(state.member);
    if (!left.length) $('fu-close').focus();
  } catch (e) {
    $('fu-error').textContent = e.message;
  } finally {
    $('fu-save').disabled = false;
  }
}

// the member panel's slot: the member's open calls, whoever they are assigned to
async function memberCalls(m) {
  const slot = $('member-followups');
  slot.replaceChildren();
  if (!m) return;
  try {
    const { followups } = await api(`/members/${encodeURIComponent(m.member_id)}/followups`);
    if (!state.member || state.member.member_id !== m.member_id) return;  // another member since
    slot.replaceChildren(...followups.map(c => h('button', {
      type: 'button', class: 'fu-member', dataset: { id: c.followup_id },
      onclick: () => { $('fu-all-label').hidden = !isManager(); openForm(c); },
    },
    h('span', {},
      h('span', { class: 'fu-due' + (c.overdue ? ' overdue' : '') }, c.overdue ? `回访逾期 ${c.due_on}` : `回访 ${c.due_on}`),
      ` · ${c.kind_label} · `,
      h('span', { class: 'muted' }, c.staff_code ? `${c.staff_name || ''} ${c.staff_code}` : '门店')),
    h('span', { class: 'fu-reason' }, c.reason))));
  } catch (e) { showError(e); }
}

key('F10', '回访', openList);
$('fu-form').addEventListener('submit', save);
$('fu-back').addEventListener('click', async () => {
  current = null; $('fu-form').hidden = true; $('fu-list').hidden = false;
  try { await load(); } catch (e) { showError(e); }
});
$('fu-close').addEventListener('click', () => closeDialog('followups-dialog'));
$('fu-all').addEventListener('change', async () => { try { await load(); } catch (e) { showError(e); } });
on('member-changed', memberCalls);
on('signed-out', () => { $('member-followups').replaceChildren(); current = null; });
