/*
 * The JSON API and the message area: fetch with the CSRF header, the person-readable text of an
 * error answer (its `detail`), and the hand-over of a 401 (session expired) to the handler that
 * main.js installs with onSessionExpired().
 */

import { $ } from './dom.js';
import { state } from './state.js';

// ---------------------------------------------------------------- messages

export function showMessage(text, kind = 'error') {
  const box = $('message');
  $('message-text').textContent = text;
  box.className = kind;
  box.hidden = false;
}

export function clearMessage() {
  $('message').hidden = true;
  $('message-text').textContent = '';
}

/** Shows a failed request's detail (unless it was handled already, e.g. session expired). */
export function report(error) {
  if (error && error.handled) return;
  if (!(error instanceof ApiError)) console.error(error);
  showMessage(error instanceof ApiError ? error.detail : `Unexpected error: ${error.message || error}`);
}

// ---------------------------------------------------------------- API

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.handled = false;
  }
}

let expiredHandler = null;

/** Installs what a 401 on a logged-in page does (it marks the error handled). */
export function onSessionExpired(handler) {
  expiredHandler = handler;
}

/** The person-readable text of an error answer (FastAPI's 422 lists are joined). */
function detailOf(body, status, statusText, retryAfter) {
  let text;
  const detail = body && body.detail;
  if (typeof detail === 'string') text = detail;
  else if (Array.isArray(detail)) {
    text = detail.map((item) => {
      if (!item || !item.msg) return JSON.stringify(item);
      const where = Array.isArray(item.loc) ? item.loc.filter((p) => p !== 'body').join('.') : '';
      return where ? `${where}: ${item.msg}` : item.msg;
    }).join('; ');
  } else if (detail !== undefined && detail !== null) text = JSON.stringify(detail);
  else text = `The server answered ${status} ${statusText || ''}`.trim();
  if (status === 429 && retryAfter && !text.includes(retryAfter)) {
    text += ` (try again in ${retryAfter} s)`;
  }
  return text;
}

export function errorFrom(status, statusText, bodyText, retryAfter) {
  let body = null;
  try {
    body = bodyText ? JSON.parse(bodyText) : null;
  } catch {
    body = null;
  }
  const error = new ApiError(status, detailOf(body, status, statusText, retryAfter));
  if (status === 401 && expiredHandler) expiredHandler(error);
  return error;
}

/**
 * A JSON request (a FormData body goes as multipart). Unsafe methods carry the CSRF token. A 401 on a logged-in page means the
 * session expired: back to the login form (pass {expire: false} where a 401 is an answer).
 */
export async function api(method, path, body, { expire = true } = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin' };
  if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
  if (body instanceof FormData) init.body = body; // multipart: the browser sets its boundary
  else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `The server cannot be reached (${err.message}).`);
  }
  const text = await response.text();
  if (!response.ok) {
    const error = expire
      ? errorFrom(response.status, response.statusText, text, response.headers.get('Retry-After'))
      : new ApiError(response.status, detailOf(safeJson(text), response.status,
        response.statusText, response.headers.get('Retry-After')));
    throw error;
  }
  return text ? safeJson(text) : null;
}

export function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
