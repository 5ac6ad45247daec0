/* View #/collections: the user's collections, a new one, deleting one. */

import { api, clearMessage, report } from '../api.js';
import { field, h, table } from '../dom.js';
import { enc, fmtDate, plural } from '../format.js';

export async function viewCollections(root) {
  const name = h('input', { id: 'collection-name', type: 'text', required: true, maxlength: 200, placeholder: 'e.g. Kültepe letters 2024' });
  const create = h('button', { id: 'collection-create', type: 'submit', class: 'primary', text: 'Create' });
  const { node: list, tbody } = table('collection-table', ['Name', ['Photos', 'num'], ['Signs', 'num'], 'Created', '']);
  const empty = h('p', { id: 'collections-empty', class: 'muted', hidden: true, text: 'No collections yet: create one, then upload tablet photos into it.' });

  async function load() {
    const collections = await api('GET', '/api/collections');
    tbody.replaceChildren(...collections.map(row));
    list.hidden = collections.length === 0;
    empty.hidden = collections.length > 0;
  }

  function row(c) {
    return h('tr', { dataset: { id: c.id } },
      h('td', {}, h('a', { class: 'collection-open', href: `#/collection/${enc(c.id)}`, text: c.name })),
      h('td', { class: 'num', text: c.photo_count }),
      h('td', { class: 'num', text: c.sign_count }),
      h('td', { text: fmtDate(c.created_at) }),
      h('td', { class: 'actions' }, h('button', {
        type: 'button', class: 'collection-delete danger small', text: 'Delete',
        onclick: async () => {
          if (!confirm(`Delete the collection “${c.name}” with its ${plural(c.photo_count, 'photo')} and their signs? This cannot be undone.`)) return;
          try {
            await api('DELETE', `/api/collections/${enc(c.id)}`);
            await load();
          } catch (err) {
            report(err);
          }
        },
      })));
  }

  root.append(
    h('h1', { text: 'Collections' }),
    h('form', {
      class: 'inline-form card',
      onsubmit: async (event) => {
        event.preventDefault();
        create.disabled = true;
        try {
          await api('POST', '/api/collections', { name: name.value.trim() });
          name.value = '';
          clearMessage();
          await load();
        } catch (err) {
          report(err);
        } finally {
          create.disabled = false;
        }
      },
    }, field('New collection', name), create),
    list, empty);
  await load();
}
