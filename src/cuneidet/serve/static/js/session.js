/* The login session: signing in, logging out, and what an expired session does. */

import { api, report } from './api.js';
import { jobs } from './jobs.js';
import { go, parseRoute } from './router.js';
import { EXPIRED, state } from './state.js';

export function signedIn(answer) {
  state.user = answer.user;
  state.csrf = answer.csrf_token;
  state.classes = null;
  jobs.resume();
}

/** A 401 on a logged-in page: back to the login form, then to the page the user was on. */
export function sessionExpired(error) {
  error.handled = true;
  if (!state.user) return; // already handled (several requests failing at once)
  state.user = null;
  state.csrf = null;
  jobs.stopAll();
  state.pendingMessage = EXPIRED;
  const route = parseRoute();
  if (route.name !== 'login' && route.name !== 'setup') state.afterLogin = location.hash;
  go('#/login');
}

export async function logout() {
  try {
    await api('POST', '/api/logout', undefined, { expire: false });
  } catch (err) {
    if (err.status !== 401) report(err);
  }
  state.user = null;
  state.csrf = null;
  state.classes = null;
  jobs.stopAll();
  go('#/login');
}
