// Who is signed in (`GET /api/session`), the sign-in form and signing out.

import { $, formMessage, showAlert } from './dom.js';
import { api, onSignedOut } from './api.js';

/** Who is signed in, as `GET /api/session` says. */
export let me = { username: null, role: 'admin', auth: 'off' };

export const showOwners = () => me.auth === 'required' && me.role === 'admin';

/** Shows the sign-in form instead of the page (no session, or it ended). */
export function showSignIn() {
  $('main').hidden = true;
  $('connection').hidden = true;
  $('sign-in').hidden = false;
  $('who').hidden = true;
  $('sign-in-username').focus();
}

onSignedOut(showSignIn);

$('sign-in-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const submit = $('sign-in-submit');
  submit.disabled = true;
  try {
    await api('POST', '/api/session', {
      username: $('sign-in-username').value,
      password: $('sign-in-password').value,
    });
    // Everything starts afresh with the session's cookie.
    window.location.reload();
  } catch (err) {
    const text = err.status === 401 ? 'The user name or the password is wrong.' : formMessage(err, {});
    showAlert($('sign-in-error'), text);
    submit.disabled = false;
  }
});

$('sign-out').addEventListener('click', async () => {
  try {
    await api('DELETE', '/api/session');
  } finally {
    window.location.reload();
  }
});

/** Who is signed in; false when nobody is and signing in is required. */
export async function whoAmI() {
  try {
    me = await api('GET', '/api/session');
    if (me.auth === 'required') {
      $('who-name').textContent = `${me.username} (${me.role})`;
      $('who').hidden = false;
    }
    // An admin sees everyone's jobs and may narrow them to their own.
    $('jobs-owner-field').hidden = !showOwners();
    return true;
  } catch (err) {
    if (err.status === 401) {
      showSignIn();
      return false;
    }
    return true; // the server is away: the page says so and reconnects
  }
}
