/* View #/admin: the user accounts (administrators only): a new one, disabling / enabling one. */

import { api, clearMessage, report } from '../api.js';
import { field, h, table } from '../dom.js';
import { enc, fmtDate } from '../format.js';
import { state } from '../state.js';

export async function viewAdmin(root) {
  root.append(h('h1', { text: 'Users' }));
  if (!state.user.is_admin) {
    root.append(h('p', { text: 'Only administrators can manage users.' }));
    return;
  }
  const { node: list, tbody } = table('user-table', ['Username', 'Role', 'Status', 'Created', '']);
  const username = h('input', { id: 'new-user-username', type: 'text', required: true, autocomplete: 'off' });
  const password = h('input', { id: 'new-user-password', type: 'password', required: true, autocomplete: 'new-password' });
  const admin = h('input', { id: 'new-user-admin', type: 'checkbox' });
  const create = h('button', { id: 'new-user-create', type: 'submit', class: 'primary', text: 'Create user' });

  async function load() {
    const users = await api('GET', '/api/users');
    tbody.replaceChildren(...users.map(row));
  }

  function row(u) {
    const self = u.id === state.user.id;
    return h('tr', { dataset: { id: u.id }, class: u.is_active ? '' : 'inactive' },
      h('td', { text: u.username }),
      h('td', { text: u.is_admin ? 'administrator' : 'user' }),
      h('td', { text: u.is_active ? 'active' : 'disabled' }),
      h('td', { text: fmtDate(u.created_at) }),
      h('td', { class: 'actions' }, h('button', {
        type: 'button', class: 'user-toggle small', text: u.is_active ? 'Disable' : 'Enable',
        disabled: self, title: self ? 'You cannot disable your own account' : null,
        onclick: async () => {
          try {
            await api('PATCH', `/api/users/${enc(u.id)}`, { is_active: !u.is_active });
            await load();
          } catch (err) {
            report(err);
          }
        },
      })));
  }

  root.append(list, h('h2', { text: 'New user' }), h('form', {
    class: 'inline-form card',
    onsubmit: async (event) => {
      event.preventDefault();
      create.disabled = true;
      try {
        await api('POST', '/api/users',
          { username: username.value.trim(), password: password.value, is_admin: admin.checked });
        username.value = '';
        password.value = '';
        admin.checked = false;
        clearMessage();
        await load();
      } catch (err) {
        report(err);
      } finally {
        create.disabled = false;
      }
    },
  }, field('Username', username), field('Password', password),
  h('label', { class: 'check' }, admin, ' administrator'), create));
  await load();
}
