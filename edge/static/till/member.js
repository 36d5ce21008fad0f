// The member at the till (docs/till-screen.md, "The member"): found by card swipe, card
// number (letters too: C0001), phone, name or pinyin (F2); the glance (tier and progress,
// points and their worth, stored value, coupons, birthday, tags that need care, the card);
// register (F3), edit (Alt+E), top-up and annual card (F4), the member's password (Alt+P).
// Every figure comes from the API (GET /members/{id}); the screen computes no money.
import {
  $, api, closeDialog, emit, focusScan, h, isManager, key, newId, on, pickList, say, showDialog,
  showError, state, toFen, withManager, yuan, ApiError,
} from './core.js';

const memberPath = (m, tail = '') => '/members/' + encodeURIComponent(m.member_id) + tail;

// the dialogs that act on the member in the box: another member (a card swiped meanwhile,
// a new sale) closes them, so none acts on a member the cashier no longer sees
const MEMBER_DIALOGS = ['member-edit-dialog', 'member-topup-dialog', 'member-password-dialog'];

export async function setMember(m) {
  const before = state.member && state.member.member_id;
  if ((m && m.member_id) !== before) {
    for (const id of MEMBER_DIALOGS) if (!(id === 'member-edit-dialog' && !editing)) closeDialog(id);
  }
  state.member = m;
  render();
  emit('member-changed', m);
  if (m) loadCoupons(m);
}

// the member again from the API, after a top-up, a card sale, an edit or a password
async function refreshMember() {
  if (!state.member) return;
  const { member } = await api(memberPath(state.member));
  state.member = member;
  render();
  emit('member-changed', member);
  loadCoupons(member);
}

// ---- the glance -----------------------------------------------------------------------
const CALENDAR = { solar: '公历', lunar: '农历' };

function row(label, ...value) {
  return [h('dt', {}, label), h('dd', {}, ...value)];
}

function tierRow(m) {
  const p = m.tier_progress;
  const tier = m.tier || '未定级';
  if (!p) return m.tier ? row('等级', tier) : [];
  if (!p.next_tier) return row('等级', h('b', {}, tier), ' · 已是最高等级');
  return row('等级', h('b', {}, tier), ` → ${p.next_tier} 还差 ${p.to_next} 成长值 `,
    h('progress', { max: String(p.next_threshold), value: String(Math.min(p.growth, p.next_threshold)),
      'aria-label': `成长值 ${p.growth}/${p.next_threshold}` }));
}

function birthdayRow(m) {
  if (!m.birthday) return [];
  const cal = CALENDAR[m.birthday_calendar] || '';
  if (m.birthday_today) return row('生日', h('b', { class: 'hot' }, '今天生日!'), ` (${cal} ${m.birthday})`);
  if (m.birthday_this_month) {
    const passed = m.birthday_this_month_on < m.birthday_next ? ' 已过' : '';
    return row('生日', h('b', { class: 'hot' }, '本月生日'), ` ${m.birthday_this_month_on.slice(5)}${passed} (${cal} ${m.birthday})`);
  }
  return row('生日', `${cal} ${m.birthday}`);
}

function cardText(m) {
  if (!m.card_expires_on) return m.card_type;
  return m.card_lapsed
    ? `${m.card_type} 已于 ${m.card_expires_on} 到期, 按${m.card_type_in_force}计价`
    : `${m.card_type} 有效期至 ${m.card_expires_on}`;
}

function render() {
  const m = state.member;
  $('member').classList.toggle('walkin', !m);
  $('member-glance').hidden = !m;
  $('member-actions').hidden = !m;
  if (!m) {
    $('member').textContent = '散客';
    $('member-glance').replaceChildren();
    return;
  }
  $('member').replaceChildren(h('span', {},
    h('b', {}, m.name), ` ${m.phone}`, ' · ', m.card_type,
    m.cards.length ? h('span', { class: 'muted' }, ` 卡号 ${m.cards.join(', ')}`) : null,
    ...(m.at_risk || []).map(t => h('span', { class: 'tag care', title: '需关照' }, t))));
  const sv = m.stored_value;
  // the tags that need care (投诉, 退款) stand beside the name; the others are listed
  const others = (m.tags || []).filter(t => !(m.at_risk || []).includes(t));
  $('member-glance').replaceChildren(
    ...tierRow(m),
    ...row('积分', h('b', {}, String(m.points)), ` (可抵 ${yuan(m.points_value || 0)})`),
    ...row('储值', h('b', {}, yuan(sv.total)), ` (本金 ${yuan(sv.principal)} + 赠送 ${yuan(sv.bonus)})`),
    ...row('优惠券', h('span', { id: 'glance-coupons' }, '…')),
    ...birthdayRow(m),
    ...(others.length ? row('标签', ...others.map(t => h('span', { class: 'tag' }, t))) : []),
    // the card's row only for a card with a last day (an annual card): its type is above
    ...(m.card_expires_on ? row('卡', cardText(m), m.renewal ? h('span', { class: 'muted' }, ` · 可续费 ${yuan(m.renewal.price)} (F4)`) : null) : []),
  );
}

// the member's usable coupons: how many, and the first few (soonest to expire first)
async function loadCoupons(m) {
  try {
    const { coupons } = await api(memberPath(m, '/coupons'));
    if (state.member !== m || !$('glance-coupons')) return;
    $('glance-coupons').replaceChildren(
      coupons.length ? h('b', {}, `${coupons.length} 张`) : '无',
      ...coupons.slice(0, 3).map(c => h('span', { class: 'coupon' },
        `${c.name || c.code}${c.expires_on ? ` (至 ${c.expires_on})` : ''}`)),
    );
  } catch (e) {
    if (state.member === m && $('glance-coupons')) $('glance-coupons').textContent = '读取失败: ' + e.message;
  }
}

// ---- finding the member ---------------------------------------------------------------
// Enter searches; one member found is taken at once, several are listed: arrows move,
// 1-9 or Enter or a touch picks, Esc clears (a second Esc goes back to a walk-in).
function clearSearch() {
  $('member-q').value = '';
  $('member-results').replaceChildren();
  $('member-results').hidden = true;
}

async function pick(m) {
  clearSearch();
  await setMember(m);
  focusScan();
}

async function search() {
  const q = $('member-q').value.trim();
  if (!q) return;
  try {
    showError('');
    const { members } = await api('/members?q=' + encodeURIComponent(q));
    if (members.length === 1) { await pick(members[0]); return; }
    const list = $('member-results');
    list.hidden = false;
    if (!members.length) { list.replaceChildren(h('li', { class: 'none' }, `未找到会员 “${q}”`)); return; }
    list.replaceChildren(...members.map((m, i) => h('li', {}, h('button', {
      type: 'button', class: 'result', dataset: { n: String(i + 1) },
      onclick: () => pick(m),
    }, h('kbd', {}, String(i + 1)), ' ', h('b', {}, m.name), ` ${m.phone} · ${m.card_type}`,
    m.cards.length ? ` · ${m.cards[0]}` : '', ` · 积分 ${m.points} · 储值 ${yuan(m.stored_value.total)}`))));
    list.querySelector('button').focus();
  } catch (e) { showError(e); }
}

$('member-q').addEventListener('keydown', ev => {
  if (ev.key === 'Enter') { ev.preventDefault(); search(); }
  else if (ev.key === 'ArrowDown') { const b = $('member-results').querySelector('button'); if (b) { ev.preventDefault(); b.focus(); } }
  else if (ev.key === 'Escape') {
    ev.preventDefault();
    if ($('member-q').value || !$('member-results').hidden) clearSearch();
    else if (state.member) setMember(null);
  }
});

pickList($('member-results'), $('member-q'), clearSearch);

// ---- keys -----------------------------------------------------------------------------
function needsMember(run) {
  return () => {
    if (!state.member) { showError(new ApiError(400, { message: '请先刷卡或查找会员 (F2)' })); $('member-q').focus(); return; }
    run();
  };
}

key('F2', '查会员', () => { $('member-q').focus(); $('member-q').select(); });
key('F3', '新会员', () => openEdit(null));
key('F4', '充值/年卡', needsMember(() => openTopup('topup')));
key('Alt+E', '改会员', needsMember(() => openEdit(state.member)));
key('Alt+P', '会员密码', needsMember(() => openPassword()));
$('member-edit').addEventListener('click', needsMember(() => openEdit(state.member)));
$('member-topup').addEventListener('click', needsMember(() => openTopup('topup')));
$('member-password').addEventListener('click', needsMember(() => openPassword()));

// ---- errors beside their fields -------------------------------------------------------
// The API names the field it refuses (`field`): the message goes under that field in the
// dialog; one the form has no place for goes to the dialog's own error line.
const FIELD_ALIASES = { birthday_calendar: 'birthday', birthday_leap_month: 'birthday' };

function clearFieldErrors(dialog) {
  for (const el of dialog.querySelectorAll('.field-error')) el.textContent = '';
  for (const el of dialog.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

function showFieldError(dialog, e, fallbackId) {
  const field = FIELD_ALIASES[e.field] || (e.field || '').split('.')[0];
  const slot = field && dialog.querySelector(`.field-error[data-for="${field}"]`);
  if (slot && !slot.closest('[hidden]')) {
    slot.textContent = e.message;
    const input = dialog.querySelector(`[data-field="${field}"]`);
    if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
  } else {
    $(fallbackId).textContent = e.message;
  }
}

// ---- register (F3) and edit (Alt+E) -----------------------------------------------------
let form = null;        // GET /member-form, once a session
let editing = null;     // the member being edited, or null when registering

async function formOptions() {
  if (!form) {
    form = await api('/member-form');
    try { form.maintainers = (await api('/maintainers')).maintainers; } catch (e) { form.maintainers = []; }
  }
  return form;
}

function options(select, items, value) {
  select.replaceChildren(...items.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
}

async function openEdit(member) {
  let f;
  let profile = null;
  try {
    f = await formOptions();
    if (member) profile = (await api(memberPath(member, '/profile'))).member;
  } catch (e) { showError(e); return; }
  editing = profile;
  const d = $('member-edit-dialog');
  d.classList.toggle('editing', Boolean(profile));
  for (const el of d.querySelectorAll('.register-only')) el.hidden = Boolean(profile);
  $('member-edit-title').textContent = profile ? `修改会员资料 · ${profile.name} ${profile.phone}` : '新会员登记';
  $('member-edit-save').textContent = profile ? '保存 (回车)' : '登记 (回车)';
  $('member-edit-error').textContent = '';
  clearFieldErrors(d);
  const p = profile || {};
  $('me-name').value = p.name || '';
  $('me-phone').value = ''; $('me-card-no').value = ''; $('me-password').value = ''; $('me-referrer').value = '';
  options($('me-gender'), f.genders.map(g => [g.value, g.label]), p.gender || '');
  options($('me-calendar'), f.calendars.map(c => [c.value, c.label]), p.birthday_calendar || 'solar');
  $('me-birthday').value = p.birthday || '';
  $('me-leap').checked = false;
  options($('me-card-type'), f.card_types.map(t => [t, t]), f.default_card_type);
  options($('me-staff'), [['', '不指定'], ...f.maintainers.map(s => [s.code, `${s.name} (${s.code})`])], state.staff ? state.staff.code : '');
  $('me-occupation').value = p.occupation || '';
  $('me-tags').value = (p.tags || []).join(', ');
  $('me-notes').value = p.notes || '';
  // consent: at registration a box per channel (unticked: no consent); when editing, the
  // till does not hold the member's choice, so each channel is left as it is unless changed
  $('me-consent').replaceChildren(...f.consent.map(c => profile
    ? h('label', { class: 'inline' }, c.label, ' ', h('select', { dataset: { channel: c.channel } },
      h('option', { value: '' }, '不变'), h('option', { value: 'true' }, '同意'), h('option', { value: 'false' }, '不同意')))
    : h('label', { class: 'inline' }, h('input', { type: 'checkbox', dataset: { channel: c.channel } }), ' ', c.label)));
  showDialog('member-edit-dialog', 'me-name');
}

function tagsOf(text) {
  return text.split(/[,，、\s]+/).map(t => t.trim()).filter(Boolean);
}

function registrationBody() {
  const body = { name: $('me-name').value.trim(), phone: $('me-phone').value.trim() };
  const optional = {
    gender: $('me-gender').value, card_no: $('me-card-no').value.trim(), card_type: $('me-card-type').value,
    staff_code: $('me-staff').value, password: $('me-password').value, referrer: $('me-referrer').value.trim(),
    occupation: $('me-occupation').value.trim(), notes: $('me-notes').value.trim(),
  };
  for (const [k, v] of Object.entries(optional)) if (v) body[k] = v;
  if ($('me-birthday').value.trim()) {
    body.birthday = $('me-birthday').value.trim();
    body.birthday_calendar = $('me-calendar').value;
    if ($('me-leap').checked) body.birthday_leap_month = true;
  }
  const tags = tagsOf($('me-tags').value);
  if (tags.length) body.tags = tags;
  body.consent = Object.fromEntries([...$('me-consent').querySelectorAll('input')].map(c => [c.dataset.channel, c.checked]));
  return body;
}

// only what the cashier changed goes to PUT /members/{id}
function editBody(p) {
  const body = {};
  const name = $('me-name').value.trim();
  if (name !== p.name) body.name = name;
  if ($('me-gender').value !== (p.gender || '')) body.gender = $('me-gender').value;
  const birthday = $('me-birthday').value.trim();
  if (birthday !== (p.birthday || '') || (birthday && $('me-calendar').value !== p.birthday_calendar) || $('me-leap').checked) {
    body.birthday = birthday || null;
    if (birthday) { body.birthday_calendar = $('me-calendar').value; body.birthday_leap_month = $('me-leap').checked; }
  }
  for (const [k, id] of [['occupation', 'me-occupation'], ['notes', 'me-notes']]) {
    if ($(id).value.trim() !== (p[k] || '')) body[k] = $(id).value.trim();
  }
  const tags = tagsOf($('me-tags').value);
  if (tags.join('\n') !== (p.tags || []).join('\n')) body.tags = tags;
  return body;
}

$('member-edit-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  const d = $('member-edit-dialog');
  clearFieldErrors(d);
  $('member-edit-error').textContent = '';
  $('member-edit-save').disabled = true;
  try {
    if (!editing) {
      const { member } = await api('/members', { method: 'POST', body: registrationBody() });
      closeDialog('member-edit-dialog');
      await setMember(member);
      say(`已登记会员 ${member.name} ${member.phone}`);
    } else {
      const body = editBody(editing);
      const consent = Object.fromEntries([...$('me-consent').querySelectorAll('select')]
        .filter(s => s.value).map(s => [s.dataset.channel, s.value === 'true']));
      if (!Object.keys(body).length && !Object.keys(consent).length) { closeDialog('member-edit-dialog'); say('资料未修改'); return; }
      if (Object.keys(body).length) await api(memberPath(editing), { method: 'PUT', body });
      if (Object.keys(consent).length) await api(memberPath(editing, '/consent'), { method: 'PUT', body: { consent } });
      closeDialog('member-edit-dialog');
      await refreshMember();
      say('会员资料已保存');
    }
  } catch (e) {
    if (e instanceof ApiError) showFieldError(d, e, 'member-edit-error'); else showError(e);
  } finally {
    $('member-edit-save').disabled = false;
  }
});
$('member-edit-cancel').addEventListener('click', () => closeDialog('member-edit-dialog'));

// ---- top-up and annual card (F4) ------------------------------------------------------
// The bonus is the API's (GET /topups/preview, the function the top-up itself uses); past
// the cashier's limits the top-up asks for a manager (core.js withManager).
const QUICK_YUAN = [100, 200, 500, 1000, 2000];
let previewing = null;  // the AbortController of the preview in flight

function showTab(which) {
  for (const [tab, pane] of [['tab-topup', 'pane-topup'], ['tab-card', 'pane-card']]) {
    const on = tab === `tab-${which}`;
    $(tab).setAttribute('aria-selected', String(on));
    $(tab).classList.toggle('active', on);
    $(pane).hidden = !on;
  }
  if (which === 'topup') { $('topup-amount').focus(); $('topup-amount').select(); } else renderCardOffers();
}

async function openTopup(which) {
  const m = state.member;
  $('topup-who').textContent = `${m.name} ${m.phone} · 储值 ${yuan(m.stored_value.total)}`;
  $('topup-amount').value = '';
  $('topup-preview').textContent = '输入金额查看赠送';
  $('topup-approval').textContent = '';
  $('topup-error').textContent = '';
  $('card-error').textContent = '';
  $('topup-receipt').textContent = '';
  showDialog('member-topup-dialog', 'topup-amount');
  showTab(which);
  try {
    const p = await api('/topups/preview?amount=100');
    const quick = [...new Set([...QUICK_YUAN.map(y => y * 100), ...p.bonus_tiers.map(t => t.threshold)])]
      .filter(f => f <= p.topup_max).sort((a, b) => a - b);
    $('topup-quick').replaceChildren(...quick.map(f => h('button', {
      type: 'button', class: 'quick-amount', dataset: { fen: String(f) },
      onclick: () => { $('topup-amount').value = (f / 100).toFixed(0); preview(); $('topup-amount').focus(); },
    }, yuan(f), p.bonus_tiers.some(t => t.threshold === f) ? h('small', {}, ` 送${yuan(p.bonus_tiers.find(t => t.threshold === f).bonus)}`) : null)));
  } catch (e) { $('topup-error').textContent = e.message; }
}

async function preview() {
  $('topup-error').textContent = '';
  if (previewing) previewing.abort();
  let fen;
  try { fen = toFen($('topup-amount').value, '充值金额'); } catch (e) { $('topup-preview').textContent = ''; $('topup-error').textContent = e.message; return null; }
  if (!fen) { $('topup-preview').textContent = '输入金额查看赠送'; $('topup-approval').textContent = ''; return null; }
  previewing = new AbortController();
  try {
    const p = await api('/topups/preview?amount=' + fen, { signal: previewing.signal });
    $('topup-preview').replaceChildren(
      h('div', {}, '实收现金 ', h('b', {}, yuan(p.principal)), ' · 赠送 ', h('b', { class: 'hot' }, yuan(p.bonus)),
        ' · 到账 ', h('b', {}, yuan(p.total))),
      ...(p.next_bonus ? [h('div', { class: 'muted' }, `再充 ${yuan(p.next_bonus.more)} 可送 ${yuan(p.next_bonus.bonus)}`)] : []),
    );
    $('topup-approval').textContent = p.needs_manager ? `${p.needs_manager} (付款时请店长输入编号和PIN)` : '';
    return p;
  } catch (e) {
    if (e.name !== 'AbortError') { $('topup-preview').textContent = ''; $('topup-error').textContent = e.message; }
    return null;
  }
}
$('topup-amount').addEventListener('input', () => { preview(); });

$('topup-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  const m = state.member;
  let amount;
  try { amount = toFen($('topup-amount').value, '充值金额'); } catch (e) { $('topup-error').textContent = e.message; return; }
  if (!amount) { $('topup-error').textContent = '请输入充值金额'; $('topup-amount').focus(); return; }
  $('topup-pay').disabled = true;
  const topupId = newId();
  try {
    const r = await withManager('充值需要店长授权', manager => api('/topups', {
      method: 'POST',
      body: { member: { member_id: m.member_id }, amount, topup_id: topupId, ...(manager ? { manager } : {}) },
    }));
    emit('receipt', { receipt: r.receipt, kind: 'topup' });
    $('topup-receipt').textContent = `${r.receipt.title} 已打印 · 充值 ${yuan(r.principal)} · 赠送 ${yuan(r.bonus)}`
      + (r.card_type ? ` · 已升级为${r.card_type}` : '');
    $('topup-amount').value = '';
    $('topup-preview').textContent = '';
    $('topup-approval').textContent = '';
    await refreshMember();
    $('topup-who').textContent = `${state.member.name} ${state.member.phone} · 储值 ${yuan(state.member.stored_value.total)}`;
    say(`已充值 ${yuan(r.principal)}, 赠送 ${yuan(r.bonus)}`);
  } catch (e) {
    $('topup-error').textContent = e.message;
  } finally {
    $('topup-pay').disabled = false;
  }
});

// the card products on offer to this member, each with the period it would give (the
// summary's card_offers); the card fee is taken in cash, as the API allows
function renderCardOffers() {
  const m = state.member;
  $('card-now').textContent = `当前: ${cardText(m)}`;
  const offers = m.card_offers || [];
  if (!offers.length) { $('card-offers').replaceChildren(h('p', { class: 'muted' }, '本店没有可购买或续费的年卡')); return; }
  $('card-offers').replaceChildren(...offers.map(o => h('div', { class: 'offer' },
    h('div', {}, h('b', {}, o.card_type), ` ${yuan(o.price)} · ${o.renewal ? '续费' : '购买'} · 有效期 ${o.valid_from} 至 ${o.valid_to}`),
    h('button', { type: 'button', class: 'primary', dataset: { cardType: o.card_type }, onclick: ev => sellCard(o, ev.target) },
      `${o.renewal ? '续费' : '购买'} 收现金 ${yuan(o.price)}`))));
  const first = $('card-offers').querySelector('button');
  if (first) first.focus();
}

async function sellCard(offer, button) {
  const m = state.member;
  $('card-error').textContent = '';
  button.disabled = true;
  try {
    const r = await api(memberPath(m, '/card-product'), {
      method: 'POST', body: { card_type: offer.card_type, tender: 'cash', card_sale_id: newId() },
    });
    emit('receipt', { receipt: r.receipt, kind: 'card' });
    await refreshMember();
    $('topup-receipt').textContent = `${r.receipt.title || '年卡'} 已打印 · ${offer.card_type} 有效期至 ${state.member.card_expires_on}`;
    renderCardOffers();
    say(`${offer.card_type}已${offer.renewal ? '续费' : '开通'}, 有效期至 ${state.member.card_expires_on}`);
  } catch (e) {
    $('card-error').textContent = e.message;
    button.disabled = false;
  }
}

$('tab-topup').addEventListener('click', () => showTab('topup'));
$('tab-card').addEventListener('click', () => showTab('card'));
$('member-topup-dialog').addEventListener('keydown', ev => {
  // ←/→ on a tab switches tabs (the ARIA tabs pattern)
  if ((ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') && ev.target.getAttribute('role') === 'tab') {
    ev.preventDefault();
    const next = ev.target.id === 'tab-topup' ? 'card' : 'topup';
    showTab(next);
    $(`tab-${next}`).focus();
  }
});
for (const b of $('member-topup-dialog').querySelectorAll('.close-dialog')) {
  b.addEventListener('click', () => closeDialog('member-topup-dialog'));
}

// ---- the member's payment password (Alt+P) --------------------------------------------
// set (none yet), change (with the old one), reset (a manager: signed in, or the
// manager's code and PIN asked for by withManager)
let pwMode = 'set';

function pwShow(mode) {
  pwMode = mode;
  for (const b of $('pw-modes').querySelectorAll('button')) {
    const on = b.dataset.mode === mode;
    b.setAttribute('aria-selected', String(on));
    b.classList.toggle('active', on);
  }
  $('pw-old-row').hidden = mode !== 'change';
  $('pw-error').textContent = '';
  $('pw-submit').textContent = { set: '设置密码', change: '修改密码', reset: '店长重置' }[mode] + ' (回车)';
  $(mode === 'change' ? 'pw-old' : 'pw-new').focus();
}

function openPassword() {
  const m = state.member;
  $('pw-who').textContent = `${m.name} ${m.phone}`;
  $('pw-state').textContent = m.has_password ? '已设置密码: 可修改 (需原密码) 或由店长重置' : '尚未设置密码';
  for (const id of ['pw-old', 'pw-new', 'pw-again']) $(id).value = '';
  $('pw-done').textContent = '';
  $('pw-mode-set').hidden = m.has_password;
  $('pw-mode-change').hidden = !m.has_password;
  showDialog('member-password-dialog', 'pw-new');
  pwShow(m.has_password ? 'change' : 'set');
}

async function password(how) {
  const path = memberPath(state.member, '/password' + (how === 'reset' ? '/reset' : ''));
  const body = { password: $('pw-new').value };
  if (how === 'change') body.old_password = $('pw-old').value;
  await withManager('重置会员密码需要店长授权', manager =>
    api(path, { method: how === 'change' ? 'PUT' : 'POST', body: manager && !isManager() ? { ...body, manager } : body }));
}

$('pw-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  $('pw-error').textContent = '';
  if ($('pw-new').value !== $('pw-again').value) { $('pw-error').textContent = '两次输入的新密码不一致'; $('pw-again').focus(); return; }
  $('pw-submit').disabled = true;
  try {
    await password(pwMode);
    const done = { set: '密码已设置', change: '密码已修改', reset: '密码已重置' }[pwMode];
    for (const id of ['pw-old', 'pw-new', 'pw-again']) $(id).value = '';
    await refreshMember();
    closeDialog('member-password-dialog');
    say(done);
  } catch (e) {
    $('pw-error').textContent = e.message;
  } finally {
    $('pw-submit').disabled = false;
  }
});
for (const b of $('pw-modes').querySelectorAll('button')) b.addEventListener('click', () => pwShow(b.dataset.mode));
$('pw-cancel').addEventListener('click', () => closeDialog('member-password-dialog'));

// ---- the card reader ------------------------------------------------------------------
// A card swiped on the store's reader becomes a member lookup, whatever has focus.
async function watchCardReader() {
  while (state.token) {
    try {
      const r = await fetch('/api/v1/devices/reader/next?timeout=25', { headers: { Authorization: 'Bearer ' + state.token } });
      if (r.status === 200) {
        const { card_no } = await r.json();
        const found = await api('/members/by-card/' + encodeURIComponent(card_no));
        clearSearch();
        await setMember(found.member);
      } else if (r.status === 401) {
        return;  // the next API call signs the screen out
      } else if (r.status !== 204) {
        await new Promise(done => setTimeout(done, 5000));
      }
    } catch (e) { showError(e); await new Promise(done => setTimeout(done, 2000)); }
  }
}

on('signed-in', () => { form = null; watchCardReader(); });
on('new-sale', () => { setMemberQuietly(null); clearSearch(); });
on('signed-out', () => { setMemberQuietly(null); form = null; clearSearch(); });

// a reset of the panel (new-sale, signed-out): the other panels reset themselves
function setMemberQuietly(m) {
  for (const id of MEMBER_DIALOGS) closeDialog(id);
  state.member = m;
  render();
}
