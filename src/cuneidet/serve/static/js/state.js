/*
 * The page's shared state and constants: one object that the modules read and write (the
 * logged-in user, the CSRF token, the current view's hooks, …).
 */

export const POLL_MS = 1000;
export const DEFAULT_THRESHOLD = 0.3;
export const EXPIRED = 'Session expired, please log in again.';

export const state = {
  status: null, // GET /api/status
  user: null, // {id, username, is_admin}
  csrf: null,
  classes: null, // GET /api/classes, loaded once per login
  view: null, // the current view's hooks: {destroy(), onJob(job)}
  renderToken: 0,
  pendingMessage: null, // shown by the next view (e.g. "session expired")
  afterLogin: null, // the route to return to after logging in
};
