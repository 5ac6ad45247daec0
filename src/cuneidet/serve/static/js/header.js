/* The header: navigation, the logged-in user, and the detector's status (asked again while it loads). */

import { api } from './api.js';
import { $ } from './dom.js';
import { plural } from './format.js';
import { state } from './state.js';

export function updateHeader(route) {
  const user = state.user;
  $('nav').hidden = !user;
  $('nav-admin').hidden = !(user && user.is_admin);
  $('logout-button').hidden = !user;
  $('current-user').textContent = user ? `${user.username}${user.is_admin ? ' (admin)' : ''}` : '';
  for (const [id, names] of [['nav-collections', ['collections', 'collection', 'photo']], ['nav-draw', ['draw']], ['nav-admin', ['admin']]]) {
    if (names.includes(route.name)) $(id).setAttribute('aria-current', 'page');
    else $(id).removeAttribute('aria-current');
  }
  const model = state.status && state.status.model;
  const modelNode = $('model-status');
  if (!model) modelNode.textContent = '';
  else if (model.ready) {
    modelNode.textContent = `Detector: ${model.name}`;
    modelNode.title = `${model.kind}, ${plural(model.num_classes, 'class')}`;
    modelNode.classList.remove('warn');
  } else {
    modelNode.textContent = model.loading ? 'Detector loading…' : 'No detector loaded';
    modelNode.title = model.error || '';
    modelNode.classList.toggle('warn', !model.loading);
  }
}

/**
 * While the detector loads, ask again every few seconds so the header tells when it is ready;
 * currentRoute() answers the route the header is drawn for.
 */
export function watchModel(currentRoute) {
  const model = state.status && state.status.model;
  if (!model || !model.loading) return;
  setTimeout(async () => {
    try {
      const status = await api('GET', '/api/status', undefined, { expire: false });
      state.status = status;
      if (!status.model.loading) state.classes = null;
      updateHeader(currentRoute());
    } catch (err) {
      console.warn('status not refreshed', err);
    }
    watchModel(currentRoute);
  }, 3000);
}
