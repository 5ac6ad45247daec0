/*
 * cuneidet web page: plain JavaScript (ES2020 modules, no build step) over the JSON API
 * described in docs/serve-api.md. Hash routes: #/setup, #/login, #/collections,
 * #/collection/<id>, #/photo/<id>, #/draw, #/admin.
 *
 * Every string that comes from the server or the user goes into the page through textContent
 * or createElement (the helpers h() and svg() in dom.js), never through innerHTML.
 *
 * Modules (js/): main.js start-up; state.js shared state and constants; dom.js element
 * helpers; format.js number / date / colour formatting; api.js requests, errors and the
 * message area; session.js login, logout, expired session; jobs.js the detection job poller
 * and header indicator; header.js the header; router.js hash routes; classes.js the
 * detector's classes; viewer.js the photo viewer (SVG zoom / pan / draw / boxes); sketch.js the
 * drawing pad of the Draw page; views/*.js one module per page (auth: setup and login,
 * collections, admin, collection, photo with its sign panels in photo-signs.js, draw).
 *
 * Stable element ids (for browser tests and scripts):
 *   everywhere   message (role=alert; text in message-text, button message-close), topbar, brand,
 *                nav (nav-collections, nav-draw, nav-admin), jobs-indicator, model-status, current-user,
 *                logout-button, view (the current view's container)
 *   setup        setup-token, setup-username, setup-password, setup-submit
 *   login        login-username, login-password, login-submit
 *   collections  collection-name, collection-create, collection-table (rows tr[data-id] with
 *                a.collection-open and button.collection-delete), collections-empty
 *   admin        user-table (rows tr[data-id] with button.user-toggle), new-user-username,
 *                new-user-password, new-user-admin, new-user-create
 *   collection   collection-title, collection-summary, upload-input, upload-drop, upload-list
 *                (li.upload[data-name] with progress.upload-progress and .upload-result),
 *                detect-all, photo-table (rows tr[data-id] with a.photo-open, .photo-status,
 *                .photo-signs, progress.photo-progress, button.photo-detect,
 *                button.photo-delete), counts-table, export-min-score, export-csv, export-coco,
 *                export-counts, export-png, export-training (no href until a photo is reviewed),
 *                export-training-note
 *   photo        photo-title, photo-back, photo-prev, photo-next, viewer (the svg, viewBox in
 *                photo pixels), viewer-image, boxes, labels, draft-box, zoom-in, zoom-out,
 *                zoom-fit, labels-toggle, colour-mode, class-filter, score-threshold,
 *                score-value, line-filter, shown-count, draw-toggle, detect-button,
 *                job-progress, job-message, photo-info, scale-auto, scale-number, scale-slider,
 *                scale-auto-value, reviewed-toggle, export-csv, export-coco, export-png,
 *                sign-hint, sign-panel, sign-summary, topk-table, delete-sign, class-input,
 *                change-class, class-list (the datalist of all classes), draw-panel,
 *                draw-size, draw-class-input, draw-save, draw-cancel
 *   draw         draw-canvas, draw-width, draw-width-value, draw-undo, draw-clear, draw-mode (the
 *                fieldset of radios draw-mode-oracle, draw-mode-cuneiform; label.draw-mode
 *                [data-mode] with .draw-mode-description, .draw-mode-error when not ready),
 *                draw-run, draw-hint, draw-result (the result card), draw-input (img: what the
 *                model saw), draw-results (rows tr.draw-result[data-rank][data-label] with
 *                .draw-rank, .draw-sign, .draw-name, .draw-mzl (cuneiform), .draw-probability;
 *                the rank-1 row also has class best and best-green (p > 0.5), best-red
 *                (p < 0.0001) or best-yellow)
 *   boxes        rect.sign[data-id] (rect.sign.selected is the chosen one, rect.sign.user a
 *                drawn one), text.sign-label[data-id]
 * Keys on the photo page: n / p next / previous sign, Delete deletes the chosen one, Esc closes
 * the panel or leaves draw mode, + / - / 0 zoom in / out / fit. On the Draw page Ctrl+Z undoes
 * the last stroke.
 */

import { api, clearMessage, onSessionExpired, report } from './api.js';
import { $, h } from './dom.js';
import { watchModel } from './header.js';
import { parseRoute, render, setViews } from './router.js';
import { logout, sessionExpired, signedIn } from './session.js';
import { state } from './state.js';
import { viewAdmin } from './views/admin.js';
import { viewLogin, viewSetup } from './views/auth.js';
import { viewCollection } from './views/collection.js';
import { viewCollections } from './views/collections.js';
import { viewDraw } from './views/draw.js';
import { viewPhoto } from './views/photo.js';

setViews({
  setup: viewSetup,
  login: viewLogin,
  collections: viewCollections,
  collection: viewCollection,
  photo: viewPhoto,
  draw: viewDraw,
  admin: viewAdmin,
});
onSessionExpired(sessionExpired);

async function start() {
  $('message-close').addEventListener('click', clearMessage);
  $('logout-button').addEventListener('click', logout);
  window.addEventListener('hashchange', render);
  try {
    state.status = await api('GET', '/api/status', undefined, { expire: false });
  } catch (err) {
    report(err);
    $('view').replaceChildren(h('p', { text: 'The server did not answer. Reload the page to try again.' }));
    return;
  }
  if (!state.status.setup_required) {
    try {
      signedIn(await api('GET', '/api/session', undefined, { expire: false }));
    } catch (err) {
      if (err.status !== 401) state.pendingMessage = err.detail || String(err);
    }
  }
  render();
  watchModel(parseRoute);
}

start();
