// The member: found by card swipe (the store's reader), card number, phone, name or pinyin.
import { $, api, emit, h, on, showError, state, yuan, newId, isManager, withManager } from './core.js';

export async function setMember(m) {
  state.member = m;
  render();
  emit('member-changed', m);
}

function render() {
  const m = state.member;
  $('member-password').hidden = !m;
  if (!m) $('pw-done').textContent = '';
  $('member').classList.toggle('walkin', !m);
  $('member').textContent = m
    ? `会员 ${m.masked_name} · ${m.tier || m.card_type} · 积分 ${m.points} · 储值 ${yuan(m.stored_value.total)}${m.birthday_today ? ' · 今天生日!' : ''}`
    : '散客';
  showCard();
}

$('member-q').addEventListener('keydown', async ev => {
  if (ev.key !== 'Enter') return;
  try {
    const { members } = await api('/members?q=' + encodeURIComponent(ev.target.value));
    $('member-results').replaceChildren(...(members.length ? members.map(m => h('button', {
      type: 'button',
      onclick: async () => { $('member-results').replaceChildren(); ev.target.value = ''; await setMember(m); },
    }, `${m.name} ${m.phone} ${m.card_type} 积分${m.points} 储值${yuan(m.stored_value.total)}`)) : ['未找到会员']));
  } catch (e) { showError(e); }
});

// the member's payment password: set (none yet), change (with the old one), reset (a
// manager: signed in, or the manager's code and PIN asked for)
async function password(how) {
  const path = '/members/' + encodeURIComponent(state.member.member_id) + '/password' + (how === 'reset' ? '/reset' : '');
  const body = { password: $('pw-new').value };
  if (how === 'change') body.old_password = $('pw-old').value;
  try {
    await withManager('重置会员密码需要店长授权', manager =>
      api(path, { method: how === 'change' ? 'PUT' : 'POST', body: manager && !isManager() ? { ...body, manager } : body }));
    $('pw-done').textContent = { set: '密码已设置', change: '密码已修改', reset: '密码已重置' }[how];
    state.member.has_password = true;
  } catch (e) { showError(e); }
  $('pw-old').value = ''; $('pw-new').value = '';
}
$('pw-set').addEventListener('click', () => password('set'));
$('pw-change').addEventListener('click', () => password('change'));
$('pw-reset').addEventListener('click', () => password('reset'));

// The member's card product (年卡): its last day, lapsed or not, and renewal for cash
function showCard() {
  const m = state.member;
  $('card').replaceChildren();
  if (!m || !m.card_expires_on) return;
  $('card').append(m.card_lapsed
    ? `${m.card_type} 已于 ${m.card_expires_on} 到期, 按${m.card_type_in_force}计价 `
    : `${m.card_type} 有效期至 ${m.card_expires_on} `);
  if (!m.renewal) return;
  $('card').append(h('button', {
    type: 'button',
    onclick: async () => {
      try {
        const r = await api(`/members/${encodeURIComponent(m.member_id)}/card-product`, {
          method: 'POST', body: { card_type: m.renewal.card_type, tender: 'cash', card_sale_id: newId() },
        });
        emit('receipt', { receipt: r.receipt, kind: 'card' });
        await setMember((await api('/members/' + encodeURIComponent(m.member_id))).member);
      } catch (e) { showError(e); }
    },
  }, `续费${m.renewal.card_type} ${yuan(m.renewal.price)} (现金)`));
}

// A card swiped on the store's reader becomes a member lookup, whatever has focus.
async function watchCardReader() {
  while (state.token) {
    try {
      const r = await fetch('/api/v1/devices/reader/next?timeout=25', { headers: { Authorization: 'Bearer ' + state.token } });
      if (r.status === 200) {
        const { card_no } = await r.json();
        const found = await api('/members/by-card/' + encodeURIComponent(card_no));
        await setMember(found.member);
      } else if (r.status === 401) {
        return;  // the next API call signs the screen out
      } else if (r.status !== 204) {
        await new Promise(done => setTimeout(done, 5000));
      }
    } catch (e) { showError(e); await new Promise(done => setTimeout(done, 2000)); }
  }
}

on('signed-in', () => { watchCardReader(); });
on('new-sale', () => {
  state.member = null; $('member-q').value = ''; $('member-results').replaceChildren(); render();
});
on('signed-out', () => { state.member = null; render(); });
