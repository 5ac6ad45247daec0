/* Views #/setup (the first administrator) and #/login. */

import { api, report } from '../api.js';
import { field, h } from '../dom.js';
import { go } from '../router.js';
import { signedIn } from '../session.js';
import { state } from '../state.js';

export function viewSetup(root) {
  const token = h('input', { id: 'setup-token', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false' });
  const username = h('input', { id: 'setup-username', type: 'text', required: true, autocomplete: 'username' });
  const password = h('input', { id: 'setup-password', type: 'password', required: true, autocomplete: 'new-password' });
  const submit = h('button', { id: 'setup-submit', type: 'submit', class: 'primary', text: 'Create administrator' });
  root.append(h('form', {
    class: 'card narrow',
    onsubmit: async (event) => {
      event.preventDefault();
      submit.disabled = true;
      try {
        const answer = await api('POST', '/api/setup',
          { token: token.value.trim(), username: username.value.trim(), password: password.value },
          { expire: false });
        state.status.setup_required = false;
        signedIn(answer);
        go('#/collections');
      } catch (err) {
        if (err.status === 409) { // someone else completed the setup meanwhile
          state.status.setup_required = false;
          state.pendingMessage = err.detail;
          go('#/login');
          return;
        }
        report(err);
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h1', { text: 'First start' }),
  h('p', { class: 'muted', text: 'Create the administrator account. The setup token was printed by the server when it started.' }),
  field('Setup token', token), field('Username', username), field('Password', password), submit));
  token.focus();
}

export function viewLogin(root) {
  const username = h('input', { id: 'login-username', type: 'text', required: true, autocomplete: 'username' });
  const password = h('input', { id: 'login-password', type: 'password', required: true, autocomplete: 'current-password' });
  const submit = h('button', { id: 'login-submit', type: 'submit', class: 'primary', text: 'Log in' });
  root.append(h('form', {
    class: 'card narrow',
    onsubmit: async (event) => {
      event.preventDefault();
      submit.disabled = true;
      try {
        const answer = await api('POST', '/api/login',
          { username: username.value.trim(), password: password.value }, { expire: false });
        signedIn(answer);
        const next = state.afterLogin;
        state.afterLogin = null;
        go(next && !/^#\/?(login|setup)?$/.test(next) ? next : '#/collections');
      } catch (err) {
        report(err);
        password.select();
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h1', { text: 'Log in' }),
  field('Username', username), field('Password', password), submit));
  username.focus();
}
