/*
 * Hash routes (#/setup, #/login, #/collections, #/collection/<id>, #/photo/<id>, #/draw, #/admin):
 * which view a route shows, the redirects of a logged-out page, and the switch from one view
 * to the next. The views are registered by main.js (setViews), so that they can import go().
 */

import { ApiError, clearMessage, report, showMessage } from './api.js';
import { $, h } from './dom.js';
import { updateHeader } from './header.js';
import { state } from './state.js';

let VIEWS = {};

/** Registers the views: route name -> async function (container, id) answering the view's hooks. */
export function setViews(views) {
  VIEWS = views;
}

export function parseRoute() {
  const [name = '', id = null] = location.hash.replace(/^#\/?/, '').split('/');
  return { name, id: id === null ? null : decodeURIComponent(id) };
}

export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

export async function render() {
  const route = parseRoute();
  if (state.status && state.status.setup_required) {
    if (route.name !== 'setup') return go('#/setup');
  } else if (!state.user) {
    if (route.name !== 'login') {
      if (route.name) state.afterLogin = location.hash;
      return go('#/login');
    }
  } else if (!VIEWS[route.name] || route.name === 'login' || route.name === 'setup') {
    return go('#/collections');
  }

  if (state.view && state.view.destroy) state.view.destroy();
  state.view = null;
  clearMessage();
  if (state.pendingMessage) {
    showMessage(state.pendingMessage);
    state.pendingMessage = null;
  }
  updateHeader(route);
  const token = ++state.renderToken;
  const container = h('div', { class: `view view-${route.name}` });
  $('view').replaceChildren(container);
  try {
    const hooks = await VIEWS[route.name](container, route.id);
    if (token === state.renderToken) state.view = hooks || null;
    else if (hooks && hooks.destroy) hooks.destroy();
  } catch (err) {
    if (token !== state.renderToken) return;
    report(err);
    if (err instanceof ApiError && (err.status === 404 || err.status === 422)) {
      container.append(h('p', {}, 'Nothing here. ', h('a', { href: '#/collections', text: 'Back to the collections' })));
    }
  }
}
