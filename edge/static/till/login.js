// Sign-in and sign-out. The token is kept for this browser tab (sessionStorage), so a
// reload asks GET /session who is signed in instead of signing the cashier out; closing
// the tab or 退出登录 ends it.
import { $, api, state, signedIn, signOut, on } from './core.js';

$('login-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  const code = $('staff').value.trim();
  if (!code) { $('login-error').textContent = '请输入员工编号'; $('staff').focus(); return; }
  if (!$('pin').value) { $('login-error').textContent = '请输入PIN'; $('pin').focus(); return; }
  $('signin').disabled = true;
  try {
    const r = await api('/session', { method: 'POST', body: { staff_code: code, pin: $('pin').value } });
    $('login-error').textContent = '';
    signedIn(r.token, r.staff, r.store);
  } catch (e) {
    $('login-error').textContent = e.message;
    $('pin').value = ''; $('pin').focus();
  } finally {
    $('signin').disabled = false;
  }
});

// Enter in the staff code goes on to the PIN (a form submits on Enter in the PIN box)
$('staff').addEventListener('keydown', ev => {
  if (ev.key === 'Enter' && !$('pin').value) { ev.preventDefault(); $('pin').focus(); }
});

$('signout').addEventListener('click', async () => {
  // the screen signs out whatever the API answers; a failure is said, not hidden
  let note = '';
  try { await api('/session', { method: 'DELETE' }); } catch (e) { note = e.status === 401 ? '' : ` (${e.message})`; }
  signOut('已退出登录' + note);
});

on('signed-out', () => { state.member = null; state.lines = []; state.quote = null; });

// after a reload: the tab's token, if the API still knows it
document.addEventListener('DOMContentLoaded', async () => {
  if (!state.token) { $('staff').focus(); return; }
  try {
    const r = await api('/session');
    signedIn(state.token, r.staff, r.store);
  } catch (e) {
    signOut(e.status === 401 ? '' : e.message);
  }
});
