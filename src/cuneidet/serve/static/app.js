/*
 * cuneidet web page: plain JavaScript (ES2020, no build step) over the JSON API described in
 * docs/serve-api.md. Hash routes: #/setup, #/login, #/collections, #/collection/<id>,
 * #/photo/<id>, #/admin.
 *
 * Every string that comes from the server or the user goes into the page through textContent
 * or createElement (the helpers h() and svg() below), never through innerHTML.
 *
 * Stable element ids (for browser tests and scripts):
 *   everywhere   message (role=alert; text in message-text, button message-close), topbar, brand,
 *                nav (nav-collections, nav-admin), jobs-indicator, model-status, current-user,
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
 *   boxes        rect.sign[data-id] (rect.sign.selected is the chosen one, rect.sign.user a
 *                drawn one), text.sign-label[data-id]
 * Keys on the photo page: n / p next / previous sign, Delete deletes the chosen one, Esc closes
 * the panel or leaves draw mode, + / - / 0 zoom in / out / fit.
 */
(() => {
  'use strict';

  const POLL_MS = 1000;
  const DEFAULT_THRESHOLD = 0.3;
  const EXPIRED = 'Session expired, please log in again.';

  const state = {
    status: null, // GET /api/status
    user: null, // {id, username, is_admin}
    csrf: null,
    classes: null, // GET /api/classes, loaded once per login
    view: null, // the current view's hooks: {destroy(), onJob(job)}
    renderToken: 0,
    pendingMessage: null, // shown by the next view (e.g. "session expired")
    afterLogin: null, // the route to return to after logging in
  };

  // ---------------------------------------------------------------- DOM helpers

  const $ = (id) => document.getElementById(id);
  const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'multiple', 'selected']);

  function appendChildren(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  /** An HTML element; props: text, class, dataset, on<event> handlers, properties, attributes. */
  function h(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === 'text') node.textContent = String(value);
      else if (key === 'class') node.className = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key.startsWith('on') && typeof value === 'function') {
        node.addEventListener(key.slice(2).toLowerCase(), value);
      } else if (PROPS.has(key)) node[key] = value;
      else if (value !== false) node.setAttribute(key, value === true ? '' : String(value));
    }
    appendChildren(node, children);
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';

  /** An SVG element; every prop is an attribute. */
  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value !== undefined && value !== null && value !== false) {
        node.setAttribute(key, String(value));
      }
    }
    appendChildren(node, children);
    return node;
  }

  /** A labelled form field. */
  function field(label, input, hint) {
    return h('label', { class: 'field' }, h('span', { text: label }), input,
      hint ? h('small', { class: 'muted', text: hint }) : null);
  }

  /** A data table; a heading is a text or [text, class] (e.g. 'num' for right-aligned). */
  function table(id, headings, extraClass = '') {
    const tbody = h('tbody');
    const th = (heading) => {
      const [text, cls] = Array.isArray(heading) ? heading : [heading, null];
      return h('th', { scope: 'col', class: cls, text });
    };
    const node = h('table', { id, class: `data ${extraClass}`.trim() },
      h('thead', {}, h('tr', {}, headings.map(th))), tbody);
    return { node, tbody };
  }

  function glyphSpan(glyph) {
    return h('span', { class: 'glyph', text: glyph || '' });
  }

  // ---------------------------------------------------------------- formatting

  const enc = encodeURIComponent;
  const fmtScore = (x) => (typeof x === 'number' ? x.toFixed(2) : '–');
  const fmtMzl = (m) => (m === null || m === undefined || m < 0 ? '–' : String(m));

  function fmtBytes(n) {
    if (!Number.isFinite(n)) return '';
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} kB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  function fmtDate(text) {
    const date = new Date(text);
    return Number.isNaN(date.getTime()) ? String(text || '') : date.toLocaleDateString();
  }

  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

  /** A stable hue for a class label: golden-angle steps for numbers, else a mixed FNV-1a hash. */
  function hueOf(key) {
    const text = String(key);
    if (/^\d+$/.test(text)) return (Number(text) * 137.508) % 360;
    let hash = 0x811c9dc5;
    for (const ch of text) hash = Math.imul(hash ^ ch.codePointAt(0), 16777619);
    hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
    hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
    return ((hash ^ (hash >>> 16)) >>> 0) % 360;
  }

  // ---------------------------------------------------------------- messages

  function showMessage(text, kind = 'error') {
    const box = $('message');
    $('message-text').textContent = text;
    box.className = kind;
    box.hidden = false;
  }

  function clearMessage() {
    $('message').hidden = true;
    $('message-text').textContent = '';
  }

  /** Shows a failed request's detail (unless it was handled already, e.g. session expired). */
  function report(error) {
    if (error && error.handled) return;
    if (!(error instanceof ApiError)) console.error(error);
    showMessage(error instanceof ApiError ? error.detail : `Unexpected error: ${error.message || error}`);
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
      this.detail = detail;
      this.handled = false;
    }
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

  function errorFrom(status, statusText, bodyText, retryAfter) {
    let body = null;
    try {
      body = bodyText ? JSON.parse(bodyText) : null;
    } catch {
      body = null;
    }
    const error = new ApiError(status, detailOf(body, status, statusText, retryAfter));
    if (status === 401) sessionExpired(error);
    return error;
  }

  /**
   * A JSON request. Unsafe methods carry the CSRF token. A 401 on a logged-in page means the
   * session expired: back to the login form (pass {expire: false} where a 401 is an answer).
   */
  async function api(method, path, body, { expire = true } = {}) {
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin' };
    if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
    if (body !== undefined) {
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

  function safeJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  function sessionExpired(error) {
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

  function signedIn(answer) {
    state.user = answer.user;
    state.csrf = answer.csrf_token;
    state.classes = null;
    jobs.resume();
  }

  /** The detector's classes, fetched once per login; [] when none is loaded. */
  async function loadClasses() {
    if (state.classes) return state.classes;
    try {
      state.classes = await api('GET', '/api/classes');
    } catch (err) {
      if (err.handled) throw err;
      state.classes = [];
    }
    return state.classes;
  }

  function classOptionText(cls) {
    const mzl = cls.mzl === null || cls.mzl === undefined || cls.mzl < 0 ? '' : ` (MZL ${cls.mzl})`;
    return `${cls.name}${mzl} ${cls.glyph || ''}`.trim();
  }

  /** The class a typed or chosen text names: the datalist text, the label, name, MZL or glyph. */
  function resolveClass(text) {
    const wanted = text.trim();
    if (!wanted || !state.classes) return null;
    const lower = wanted.toLowerCase();
    const tests = [
      (c) => classOptionText(c) === wanted,
      (c) => String(c.name).toLowerCase() === lower,
      (c) => String(c.label) === wanted,
      (c) => String(c.mzl) === wanted.replace(/^mzl\s*/i, ''),
      (c) => c.glyph && c.glyph === wanted,
    ];
    for (const test of tests) {
      const found = state.classes.find(test);
      if (found) return found;
    }
    return null;
  }

  function classDatalist() {
    const list = h('datalist', { id: 'class-list' });
    loadClasses().then((classes) => {
      list.replaceChildren(...classes.map((c) => h('option', { value: classOptionText(c) })));
    }).catch(report);
    return list;
  }

  // ---------------------------------------------------------------- detection jobs

  const isFinished = (job) => job.status === 'done' || job.status === 'failed';

  /**
   * Polls every running job once a second, whatever the page shows; the current view hears of
   * every update through its onJob hook. A failed job's error is shown as a message.
   */
  const jobs = {
    active: new Map(), // job id -> {job, label, failures}
    timer: null,

    track(job, label) {
      if (!job) return;
      this.notify(job);
      if (isFinished(job)) return;
      const known = this.active.get(job.id);
      this.active.set(job.id, { job, label: label || (known && known.label), failures: 0 });
      this.indicate();
      this.schedule();
    },

    async resume() {
      try {
        const list = await api('GET', '/api/jobs');
        for (const job of list || []) if (!isFinished(job)) this.track(job);
      } catch (err) {
        if (!err.handled) console.warn('jobs not resumed', err);
      }
    },

    schedule() {
      if (!this.timer && this.active.size) this.timer = setTimeout(() => this.poll(), POLL_MS);
    },

    async poll() {
      this.timer = null;
      await Promise.all([...this.active.values()].map((entry) => this.pollOne(entry)));
      this.indicate();
      this.schedule();
    },

    async pollOne(entry) {
      try {
        const job = await api('GET', `/api/jobs/${enc(entry.job.id)}`);
        if (!this.active.has(job.id)) return; // stopped meanwhile
        entry.job = job;
        entry.failures = 0;
        if (isFinished(job)) this.active.delete(job.id);
        if (job.status === 'failed') {
          showMessage(`Detection failed${entry.label ? ` for ${entry.label}` : ''}: ${job.error || 'no reason given'}`);
        }
        this.notify(job);
      } catch (err) {
        if (err.handled) return;
        entry.failures += 1;
        if (entry.failures >= 5) {
          this.active.delete(entry.job.id);
          report(err);
        }
      }
    },

    notify(job) {
      if (state.view && state.view.onJob) state.view.onJob(job);
    },

    stopAll() {
      clearTimeout(this.timer);
      this.timer = null;
      this.active.clear();
      this.indicate();
    },

    indicate() {
      const n = this.active.size;
      $('jobs-indicator').textContent = n ? `${plural(n, 'detection job')} running…` : '';
    },
  };

  /** POST /detect for one photo and track its job; a refusal (409, 503…) is thrown. */
  async function startDetection(photo) {
    const job = await api('POST', `/api/photos/${enc(photo.id)}/detect`, {});
    jobs.track(job, photo.name);
    return job;
  }

  // ---------------------------------------------------------------- routing

  function parseRoute() {
    const [name = '', id = null] = location.hash.replace(/^#\/?/, '').split('/');
    return { name, id: id === null ? null : decodeURIComponent(id) };
  }

  function go(hash) {
    if (location.hash === hash) render();
    else location.hash = hash;
  }

  const VIEWS = {
    setup: viewSetup,
    login: viewLogin,
    collections: viewCollections,
    collection: viewCollection,
    photo: viewPhoto,
    admin: viewAdmin,
  };

  async function render() {
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

  function updateHeader(route) {
    const user = state.user;
    $('nav').hidden = !user;
    $('nav-admin').hidden = !(user && user.is_admin);
    $('logout-button').hidden = !user;
    $('current-user').textContent = user ? `${user.username}${user.is_admin ? ' (admin)' : ''}` : '';
    for (const [id, names] of [['nav-collections', ['collections', 'collection', 'photo']], ['nav-admin', ['admin']]]) {
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

  /** While the detector loads, ask again every few seconds so the header tells when it is ready. */
  function watchModel() {
    const model = state.status && state.status.model;
    if (!model || !model.loading) return;
    setTimeout(async () => {
      try {
        const status = await api('GET', '/api/status', undefined, { expire: false });
        state.status = status;
        if (!status.model.loading) state.classes = null;
        updateHeader(parseRoute());
      } catch (err) {
        console.warn('status not refreshed', err);
      }
      watchModel();
    }, 3000);
  }

  // ---------------------------------------------------------------- views: setup and login

  function viewSetup(root) {
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

  function viewLogin(root) {
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

  async function logout() {
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

  // ---------------------------------------------------------------- view: collections

  async function viewCollections(root) {
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

  // ---------------------------------------------------------------- view: admin

  async function viewAdmin(root) {
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

  // ---------------------------------------------------------------- view: collection

  function statusBadge(status) {
    return h('span', { class: `badge status-${status}`, text: status });
  }

  function exportLink(id, text, href) {
    return h('a', { id, class: 'export', href, download: '', text });
  }

  async function viewCollection(root, id) {
    const base = `/api/collections/${enc(id)}`;
    const collection = await api('GET', base);
    const photos = new Map(collection.photos.map((p) => [p.id, p]));
    const rows = new Map();
    let countsTimer = null;

    // header
    const summary = h('p', { id: 'collection-summary', class: 'muted' });
    function updateSummary() {
      const list = [...photos.values()];
      const signs = list.reduce((sum, p) => sum + (p.sign_count || 0), 0);
      const reviewed = list.filter((p) => p.reviewed).length;
      summary.textContent = `${plural(list.length, 'photo')}, ${plural(signs, 'sign')}, ${reviewed} reviewed`;
      // the training export holds the reviewed photos only (the server refuses it without any)
      if (reviewed) training.href = `${base}/export?format=training`;
      else training.removeAttribute('href');
      training.classList.toggle('disabled', !reviewed);
      training.setAttribute('aria-disabled', String(!reviewed));
      trainingNote.textContent = reviewed ? ` ${plural(reviewed, 'reviewed photo')}` : ' mark photos reviewed first';
    }

    // uploads
    const input = h('input', { id: 'upload-input', type: 'file', multiple: true, accept: '.jpg,.jpeg,.png,.tif,.tiff,image/jpeg,image/png,image/tiff' });
    const uploads = h('ul', { id: 'upload-list' });
    const drop = h('label', { id: 'upload-drop', class: 'drop' },
      h('strong', { text: 'Add photos' }),
      h('span', { class: 'muted', text: ' — drop JPEG, PNG or TIFF files here, or choose them: ' }),
      input);
    const queue = [];
    const refusals = [];
    let uploading = false;

    input.addEventListener('change', () => {
      enqueue(input.files);
      input.value = '';
    });
    drop.addEventListener('dragover', (event) => {
      event.preventDefault();
      drop.classList.add('over');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (event) => {
      event.preventDefault();
      drop.classList.remove('over');
      enqueue(event.dataTransfer.files);
    });

    function enqueue(files) {
      if (!files || !files.length) return;
      if (!uploading) refusals.length = 0;
      for (const file of files) {
        const progress = h('progress', { class: 'upload-progress', max: 1, value: 0 });
        const result = h('span', { class: 'upload-result muted', text: 'waiting' });
        const item = h('li', { class: 'upload', dataset: { name: file.name } },
          h('span', { class: 'upload-name', text: file.name }),
          h('span', { class: 'muted', text: fmtBytes(file.size) }), progress, result);
        uploads.append(item);
        queue.push({ file, item, progress, result });
      }
      pump();
    }

    async function pump() {
      if (uploading) return;
      uploading = true;
      while (queue.length) await uploadOne(queue.shift());
      uploading = false;
      scheduleCounts();
    }

    function refuse(entry, text) {
      entry.item.classList.add('refused');
      entry.result.className = 'upload-result error';
      entry.result.textContent = text.startsWith(`${entry.file.name}: `) ? text.slice(entry.file.name.length + 2) : text;
      entry.progress.hidden = true;
      refusals.push(text.includes(entry.file.name) ? text : `${entry.file.name}: ${text}`);
      showMessage(refusals.join('\n'));
    }

    function uploadOne(entry) {
      const limit = state.status && state.status.limits && state.status.limits.max_upload_bytes;
      if (limit && entry.file.size > limit) {
        refuse(entry, `the file has ${fmtBytes(entry.file.size)}; the server takes at most ${fmtBytes(limit)}`);
        return Promise.resolve();
      }
      entry.result.textContent = 'uploading…';
      return new Promise((resolve) => {
        const xhr = new XMLHttpRequest();
        xhr.open('POST', `${base}/photos`);
        xhr.setRequestHeader('Accept', 'application/json');
        if (state.csrf) xhr.setRequestHeader('X-CSRF-Token', state.csrf);
        xhr.upload.onprogress = (event) => {
          if (event.lengthComputable) entry.progress.value = event.loaded / event.total;
        };
        xhr.onload = () => {
          if (xhr.status >= 200 && xhr.status < 300) {
            const answer = safeJson(xhr.responseText) || {};
            for (const photo of answer.photos || []) {
              photos.set(photo.id, photo);
              upsertRow(photo);
            }
            const rejected = answer.rejected || [];
            if (rejected.length) refuse(entry, rejected.map((r) => r.detail).join('; '));
            else {
              entry.progress.value = 1;
              entry.item.classList.add('done');
              entry.result.className = 'upload-result ok';
              entry.result.textContent = 'uploaded';
            }
            updateSummary();
          } else {
            const error = errorFrom(xhr.status, xhr.statusText, xhr.responseText, xhr.getResponseHeader('Retry-After'));
            if (error.handled) queue.length = 0;
            else refuse(entry, error.detail);
          }
          resolve();
        };
        xhr.onerror = () => {
          refuse(entry, 'the upload was interrupted (network error)');
          resolve();
        };
        const form = new FormData();
        form.append('files', entry.file, entry.file.name);
        xhr.send(form);
      });
    }

    // photos
    const detectAll = h('button', { id: 'detect-all', type: 'button', class: 'primary', text: 'Detect all' });
    const { node: photoTable, tbody } = table('photo-table', ['', 'Photo', 'Size', 'Status', ['Signs', 'num'], ['Reviewed', 'center'], 'Detection', '']);

    function jobText(p) {
      if (!p.job) return '';
      return p.status === 'failed' ? p.job.error || 'failed' : p.job.message || '';
    }

    function photoRow(p) {
      const job = p.job;
      const busy = p.status === 'queued' || p.status === 'running';
      const progress = h('progress', { class: 'photo-progress', max: 1, value: job ? job.progress || 0 : 0, hidden: !busy });
      return h('tr', { dataset: { id: p.id } },
        h('td', { class: 'thumb' }, h('a', { href: `#/photo/${enc(p.id)}`, tabindex: -1 },
          h('img', { src: `/api/photos/${enc(p.id)}/thumbnail`, alt: '', loading: 'lazy' }))),
        h('td', {}, h('a', { class: 'photo-open', href: `#/photo/${enc(p.id)}`, text: p.name })),
        h('td', { class: 'photo-size muted' }, `${p.width} × ${p.height}`, h('br'), fmtBytes(p.bytes)),
        h('td', { class: 'photo-status' }, statusBadge(p.status)),
        h('td', { class: 'photo-signs num', text: p.sign_count }),
        h('td', { class: 'center', text: p.reviewed ? '✓' : '' }),
        h('td', { class: 'photo-job' }, progress,
          h('span', { class: `small-text ${p.status === 'failed' ? 'error-text' : 'muted'}`, text: jobText(p) })),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'photo-detect small', text: 'Detect', disabled: busy, onclick: () => detect(p.id) }),
          h('button', { type: 'button', class: 'photo-delete small danger', text: 'Delete', onclick: () => removePhoto(p.id) })));
    }

    function upsertRow(photo) {
      const fresh = photoRow(photo);
      const old = rows.get(photo.id);
      if (old) old.replaceWith(fresh);
      else tbody.append(fresh);
      rows.set(photo.id, fresh);
      photoTable.hidden = photos.size === 0;
    }

    /** Starts one photo's detection; answers whether "Detect all" may go on with the next. */
    async function detect(photoId) {
      try {
        await startDetection(photos.get(photoId));
        return true;
      } catch (err) {
        report(err);
        if (err.handled || err.status === 0 || err.status === 503) return false;
        await refreshPhoto(photoId); // e.g. 409: show the job that runs already
        return true;
      }
    }

    async function removePhoto(photoId) {
      const photo = photos.get(photoId);
      if (!confirm(`Delete the photo “${photo.name}” and its signs?`)) return;
      try {
        await api('DELETE', `/api/photos/${enc(photoId)}`);
        photos.delete(photoId);
        rows.get(photoId).remove();
        rows.delete(photoId);
        photoTable.hidden = photos.size === 0;
        updateSummary();
        scheduleCounts();
      } catch (err) {
        report(err);
      }
    }

    async function refreshPhoto(photoId) {
      try {
        const photo = await api('GET', `/api/photos/${enc(photoId)}`);
        photos.set(photo.id, photo);
        upsertRow(photo);
        updateSummary();
        if (photo.job && !isFinished(photo.job)) jobs.track(photo.job, photo.name);
      } catch (err) {
        report(err);
      }
    }

    detectAll.addEventListener('click', async () => {
      detectAll.disabled = true;
      try {
        for (const photo of [...photos.values()]) {
          if (photo.status === 'queued' || photo.status === 'running') continue;
          if (!(await detect(photo.id))) break; // no detector: one message is enough
        }
      } finally {
        detectAll.disabled = false;
      }
    });

    // counts and exports
    const minScore = h('input', { id: 'export-min-score', type: 'number', min: 0, max: 1, step: 0.05, value: DEFAULT_THRESHOLD });
    const links = [
      exportLink('export-csv', 'Signs (CSV)', ''),
      exportLink('export-coco', 'Boxes (COCO JSON)', ''),
      exportLink('export-counts', 'Counts per class (CSV)', ''),
      exportLink('export-png', 'Annotated photos (PNG zip)', ''),
    ];
    const training = exportLink('export-training', 'Training data (CSDD zip)', `${base}/export?format=training`);
    const trainingNote = h('small', { id: 'export-training-note', class: 'muted' });
    const { node: countsTable, tbody: countsBody } = table('counts-table', ['Glyph', 'Name', ['MZL', 'num'], ['Count', 'num']], 'compact');
    const countsEmpty = h('p', { class: 'muted', text: 'No signs at this score yet.' });

    function score() {
      const value = Number(minScore.value);
      return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0;
    }

    function updateLinks() {
      const formats = ['csv', 'coco', 'counts', 'png'];
      links.forEach((link, i) => { link.href = `${base}/export?format=${formats[i]}&min_score=${score()}`; });
    }

    let countsAsked = 0;

    async function loadCounts() {
      const asked = ++countsAsked;
      try {
        const counts = await api('GET', `${base}/counts?min_score=${score()}`);
        if (asked !== countsAsked) return; // a newer answer is coming
        countsBody.replaceChildren(...counts.map((c) => h('tr', {},
          h('td', { class: 'glyph-cell' }, glyphSpan(c.glyph)),
          h('td', { text: c.name }),
          h('td', { class: 'num', text: fmtMzl(c.mzl) }),
          h('td', { class: 'num', text: c.count }))));
        countsTable.hidden = counts.length === 0;
        countsEmpty.hidden = counts.length > 0;
      } catch (err) {
        report(err);
      }
    }

    function scheduleCounts() {
      clearTimeout(countsTimer);
      countsTimer = setTimeout(loadCounts, 300);
    }

    minScore.addEventListener('input', () => {
      updateLinks();
      scheduleCounts();
    });

    root.append(
      h('p', { class: 'crumbs' }, h('a', { href: '#/collections', text: 'Collections' }), ' / '),
      h('h1', { id: 'collection-title', text: collection.name }), summary,
      h('div', { class: 'two-columns' },
        h('div', { class: 'main-column' },
          h('section', { class: 'card' }, drop, uploads),
          h('section', { class: 'card' },
            h('div', { class: 'section-head' }, h('h2', { text: 'Photos' }), detectAll),
            h('div', { class: 'table-scroll' }, photoTable))),
        h('aside', { class: 'side-column' },
          h('section', { class: 'card' }, h('h2', { text: 'Export' }),
            field('Minimum score', minScore, 'for the counts and the exports'),
            h('ul', { class: 'links' }, links.map((a) => h('li', {}, a)),
              h('li', {}, training, trainingNote))),
          h('section', { class: 'card' }, h('h2', { text: 'Signs per class' }), countsTable, countsEmpty))));

    for (const photo of photos.values()) {
      upsertRow(photo);
      if (photo.job && !isFinished(photo.job)) jobs.track(photo.job, photo.name);
    }
    photoTable.hidden = photos.size === 0;
    updateSummary();
    updateLinks();
    loadCounts();

    return {
      destroy() {
        clearTimeout(countsTimer);
      },
      onJob(job) {
        const photo = photos.get(job.photo_id);
        if (!photo) return;
        photo.job = job;
        photo.status = job.status;
        upsertRow(photo);
        if (isFinished(job)) {
          refreshPhoto(photo.id);
          scheduleCounts();
        }
      },
    };
  }

  // ---------------------------------------------------------------- view: photo

  async function viewPhoto(root, id) {
    const base = `/api/photos/${enc(id)}`;
    let photo = await api('GET', base);
    let signs = await api('GET', `${base}/signs`);
    loadClasses().catch(() => {});
    const W = photo.width;
    const H = photo.height;
    const st = {
      threshold: photo.reviewed && typeof photo.review_threshold === 'number' ? photo.review_threshold : DEFAULT_THRESHOLD,
      classFilter: 'all',
      lineFilter: 'all',
      colour: 'class',
      labels: true,
      selected: null, // sign id
      drawing: false,
      draft: null, // {x1, y1, x2, y2} waiting for its class
      vb: { x: 0, y: 0, w: W, h: H },
      drag: null,
    };

    // ------------- toolbar
    const button = (bid, text, title, onclick) => h('button', { id: bid, type: 'button', class: 'small', text, title, onclick });
    const threshold = h('input', { id: 'score-threshold', type: 'range', min: 0, max: 1, step: 0.01, value: st.threshold });
    const thresholdValue = h('output', { id: 'score-value', for: 'score-threshold', text: fmtScore(st.threshold) });
    const classFilter = h('select', { id: 'class-filter' });
    const lineFilter = h('select', { id: 'line-filter' });
    const colourMode = h('select', { id: 'colour-mode' },
      h('option', { value: 'class', text: 'by class' }), h('option', { value: 'confidence', text: 'by confidence' }));
    const labelsToggle = h('input', { id: 'labels-toggle', type: 'checkbox', checked: st.labels });
    const drawToggle = h('button', { id: 'draw-toggle', type: 'button', class: 'small toggle', text: 'Draw box', 'aria-pressed': 'false', title: 'Drag on the photo to draw a box (Esc to stop)' });
    const shownCount = h('span', { id: 'shown-count', class: 'muted' });

    const toolbar = h('div', { class: 'toolbar' },
      h('span', { class: 'group' },
        button('zoom-out', '−', 'Zoom out', () => zoomBy(1.4)),
        button('zoom-fit', 'Fit', 'Show the whole photo', () => setViewBox({ x: 0, y: 0, w: W, h: H })),
        button('zoom-in', '+', 'Zoom in', () => zoomBy(1 / 1.4))),
      h('label', { class: 'group' }, labelsToggle, ' labels'),
      h('label', { class: 'group' }, 'colour ', colourMode),
      h('label', { class: 'group' }, 'class ', classFilter),
      h('label', { class: 'group' }, 'score ≥ ', threshold, thresholdValue),
      h('label', { class: 'group' }, 'line ', lineFilter),
      h('span', { class: 'group' }, drawToggle),
      shownCount);

    // ------------- viewer
    const image = svg('image', { id: 'viewer-image', href: `${base}/image`, x: 0, y: 0, width: W, height: H, preserveAspectRatio: 'none' });
    image.addEventListener('error', () => showMessage(`The image of ${photo.name} could not be loaded; reload the page to try again.`));
    const boxes = svg('g', { id: 'boxes' });
    const labels = svg('g', { id: 'labels' });
    const draftBox = svg('rect', { id: 'draft-box', class: 'draft', visibility: 'hidden' });
    const viewer = svg('svg', { id: 'viewer', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'xMidYMid meet', role: 'img', 'aria-label': `Photo ${photo.name} with its signs` },
      image, boxes, labels, draftBox);

    // ------------- side panel
    const detectButton = h('button', { id: 'detect-button', type: 'button', class: 'primary', text: 'Run detection' });
    const jobProgress = h('progress', { id: 'job-progress', max: 1, value: 0, hidden: true });
    const jobMessage = h('p', { id: 'job-message', class: 'muted small-text' });
    const info = h('p', { id: 'photo-info', class: 'muted small-text' });

    const scaleAuto = h('input', { id: 'scale-auto', type: 'checkbox' });
    const scaleNumber = h('input', { id: 'scale-number', type: 'number', min: 0.2, max: 5, step: 0.01 });
    const scaleSlider = h('input', { id: 'scale-slider', type: 'range', min: 0.2, max: 5, step: 0.01 });
    const scaleAutoValue = h('p', { id: 'scale-auto-value', class: 'muted small-text' });

    const reviewed = h('input', { id: 'reviewed-toggle', type: 'checkbox' });
    const reviewedNote = h('small', { class: 'muted' });
    const exports = ['csv', 'coco', 'png'].map((format) => exportLink(`export-${format}`,
      { csv: 'Signs (CSV)', coco: 'Boxes (COCO JSON)', png: 'Annotated photo (PNG)' }[format], ''));

    const signHint = h('p', { id: 'sign-hint', class: 'muted small-text', text: 'Click a box to see its candidates (keys n / p: next / previous sign, Del: delete it). Drag to move the photo, scroll to zoom.' });
    const signPanel = h('section', { id: 'sign-panel', class: 'card accent', hidden: true });
    const drawPanel = h('section', { id: 'draw-panel', class: 'card accent', hidden: true });

    const prev = h('a', { id: 'photo-prev', class: 'button-link small', text: '← previous', hidden: true });
    const next = h('a', { id: 'photo-next', class: 'button-link small', text: 'next →', hidden: true });
    const back = h('a', { id: 'photo-back', href: `#/collection/${enc(photo.collection_id)}`, text: 'Collection' });

    root.append(
      h('div', { class: 'photo-head' },
        h('p', { class: 'crumbs' }, h('a', { href: '#/collections', text: 'Collections' }), ' / ', back, ' /'),
        h('h1', { id: 'photo-title', text: photo.name }),
        h('span', { class: 'spacer' }), prev, next),
      toolbar,
      h('div', { class: 'photo-body' },
        h('div', { class: 'viewer-wrap' }, viewer),
        h('aside', { class: 'photo-side' },
          signHint, signPanel, drawPanel,
          h('section', { class: 'card' }, h('h2', { text: 'Detection' }), detectButton, jobProgress, jobMessage, info),
          h('section', { class: 'card' }, h('h2', { text: 'Scale' }),
            h('label', { class: 'check', title: 'The photo is resized so that signs are about 128 px high' }, scaleAuto, ' automatic'),
            h('div', { class: 'scale-row' }, scaleSlider, scaleNumber), scaleAutoValue),
          h('section', { class: 'card' }, h('h2', { text: 'Review' }),
            h('label', { class: 'check' }, reviewed, ' reviewed'), reviewedNote),
          h('section', { class: 'card' }, h('h2', { text: 'Export' }),
            h('ul', { class: 'links' }, exports.map((a) => h('li', {}, a))),
            h('small', { class: 'muted', text: 'with the signs at or above the score threshold' }))),
        classDatalist()));

    // ------------- filters and drawing
    function signById(signId) {
      return signs.find((sg) => String(sg.id) === String(signId)) || null;
    }

    /** The colour of a sign's box (or, light, of its label on the dark halo). */
    function colourOf(sign, light = false) {
      const hue = st.colour === 'confidence'
        ? Math.round(Math.min(1, Math.max(0, sign.score || 0)) * 120) : Math.round(hueOf(sign.label));
      return light ? `hsl(${hue}, 95%, 72%)` : `hsl(${hue}, 85%, 45%)`;
    }

    function visibleSigns() {
      return signs.filter((sg) => sg.score >= st.threshold - 1e-9
        && (st.classFilter === 'all' || String(sg.label) === st.classFilter)
        && (st.lineFilter === 'all' || String(sg.line) === st.lineFilter));
    }

    function drawOverlay() {
      const shown = visibleSigns();
      boxes.replaceChildren(...shown.map((sg) => {
        const colour = colourOf(sg);
        const classes = ['sign'];
        if (String(sg.id) === String(st.selected)) classes.push('selected');
        if (sg.source === 'user') classes.push('user');
        return svg('rect', {
          class: classes.join(' '), 'data-id': sg.id, x: sg.x1, y: sg.y1,
          width: Math.max(0, sg.x2 - sg.x1), height: Math.max(0, sg.y2 - sg.y1), stroke: colour, fill: colour,
        }, svg('title', {}, `${sg.name} ${sg.glyph || ''} · ${fmtScore(sg.score)}`));
      }));
      labels.replaceChildren(...(st.labels ? shown.map((sg) => svg('text', {
        class: 'sign-label', 'data-id': sg.id, x: sg.x1, y: sg.y1, dy: '-0.3em', fill: colourOf(sg, true),
      }, svg('tspan', {}, `${sg.name} `), svg('tspan', { class: 'glyph' }, sg.glyph || ''))) : []));
      shownCount.textContent = `${shown.length} of ${plural(signs.length, 'sign')} shown`;
    }

    function fillFilters() {
      const byLabel = new Map();
      for (const sg of signs) {
        const key = String(sg.label);
        const entry = byLabel.get(key) || { sign: sg, count: 0 };
        entry.count += 1;
        byLabel.set(key, entry);
      }
      if (st.classFilter !== 'all' && !byLabel.has(st.classFilter)) st.classFilter = 'all';
      const classes = [...byLabel.entries()].sort((a, b) => String(a[1].sign.name).localeCompare(String(b[1].sign.name)));
      classFilter.replaceChildren(h('option', { value: 'all', text: `all (${signs.length})` }),
        ...classes.map(([key, { sign, count }]) => h('option', { value: key, text: `${sign.name} ${sign.glyph || ''} (${count})` })));
      classFilter.value = st.classFilter;

      const lines = [...new Set(signs.map((sg) => sg.line))].sort((a, b) => a - b);
      if (st.lineFilter !== 'all' && !lines.map(String).includes(st.lineFilter)) st.lineFilter = 'all';
      lineFilter.replaceChildren(h('option', { value: 'all', text: 'all' }),
        ...lines.map((line) => h('option', { value: String(line), text: line ? `line ${line}` : 'unknown' })));
      lineFilter.value = st.lineFilter;
    }

    function refreshSigns() {
      fillFilters();
      drawOverlay();
      renderSignPanel();
    }

    async function reloadSigns() {
      signs = await api('GET', `${base}/signs`);
      if (st.selected !== null && !signById(st.selected)) st.selected = null;
      refreshSigns();
    }

    function updateExports() {
      for (const link of exports) {
        link.href = `${base}/export?format=${link.id.slice('export-'.length)}&min_score=${st.threshold}`;
      }
    }

    // ------------- zoom and pan (the viewBox is in photo pixels)
    function setViewBox(vb) {
      const w = Math.min(W, Math.max(vb.w, Math.min(W, 16)));
      const hgt = w * (H / W);
      let { x, y } = vb;
      if (w >= W) {
        x = 0;
        y = 0;
      } else {
        x = Math.min(W - w / 2, Math.max(-w / 2, x));
        y = Math.min(H - hgt / 2, Math.max(-hgt / 2, y));
      }
      st.vb = { x, y, w, h: hgt };
      viewer.setAttribute('viewBox', `${x} ${y} ${w} ${hgt}`);
      updateLabelSize();
    }

    /** Screen pixels per photo pixel. */
    function screenScale() {
      const ctm = viewer.getScreenCTM();
      return ctm ? ctm.a : 1;
    }

    function updateLabelSize() {
      labels.style.fontSize = `${13 / screenScale()}px`;
    }

    function toPhoto(event) {
      const point = viewer.createSVGPoint();
      point.x = event.clientX;
      point.y = event.clientY;
      const ctm = viewer.getScreenCTM();
      return ctm ? point.matrixTransform(ctm.inverse()) : { x: 0, y: 0 };
    }

    function zoomBy(factor, centre) {
      const c = centre || { x: st.vb.x + st.vb.w / 2, y: st.vb.y + st.vb.h / 2 };
      const w = Math.min(W, Math.max(st.vb.w * factor, Math.min(W, 16)));
      const f = w / st.vb.w;
      setViewBox({ x: c.x - (c.x - st.vb.x) * f, y: c.y - (c.y - st.vb.y) * f, w, h: st.vb.h * f });
    }

    const clampX = (x) => Math.min(W, Math.max(0, x));
    const clampY = (y) => Math.min(H, Math.max(0, y));

    viewer.addEventListener('wheel', (event) => {
      event.preventDefault();
      const delta = event.deltaY * (event.deltaMode === 1 ? 16 : event.deltaMode === 2 ? 400 : 1);
      zoomBy(Math.exp(delta * 0.0015), toPhoto(event));
    }, { passive: false });

    viewer.addEventListener('pointerdown', (event) => {
      if (event.button !== 0) return;
      event.preventDefault();
      viewer.setPointerCapture(event.pointerId);
      if (st.drawing) {
        const p = toPhoto(event);
        st.drag = { kind: 'draw', x: clampX(p.x), y: clampY(p.y), sx: event.clientX, sy: event.clientY };
        setDraft({ x1: st.drag.x, y1: st.drag.y, x2: st.drag.x, y2: st.drag.y });
      } else {
        st.drag = { kind: 'pan', sx: event.clientX, sy: event.clientY, vb: { ...st.vb }, scale: screenScale(), moved: false, target: event.target };
      }
    });

    viewer.addEventListener('pointermove', (event) => {
      const drag = st.drag;
      if (!drag) return;
      if (drag.kind === 'pan') {
        const dx = event.clientX - drag.sx;
        const dy = event.clientY - drag.sy;
        if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
        if (drag.moved) {
          viewer.classList.add('panning');
          setViewBox({ ...drag.vb, x: drag.vb.x - dx / drag.scale, y: drag.vb.y - dy / drag.scale });
        }
      } else {
        const p = toPhoto(event);
        setDraft({ x1: drag.x, y1: drag.y, x2: clampX(p.x), y2: clampY(p.y) });
      }
    });

    function endDrag(event, cancelled) {
      const drag = st.drag;
      if (!drag) return;
      st.drag = null;
      viewer.classList.remove('panning');
      if (drag.kind === 'pan') {
        if (!drag.moved && !cancelled) {
          const target = drag.target;
          select(target && target.classList && target.classList.contains('sign') ? target.dataset.id : null);
        }
        return;
      }
      const p = toPhoto(event);
      const box = normalise({ x1: drag.x, y1: drag.y, x2: clampX(p.x), y2: clampY(p.y) });
      const tiny = Math.abs(event.clientX - drag.sx) < 4 || Math.abs(event.clientY - drag.sy) < 4;
      if (cancelled || tiny || box.x2 - box.x1 < 1 || box.y2 - box.y1 < 1) {
        setDraft(null);
        return;
      }
      setDraft(box);
      openDrawPanel(box);
    }

    viewer.addEventListener('pointerup', (event) => endDrag(event, false));
    viewer.addEventListener('pointercancel', (event) => endDrag(event, true));

    function normalise(b) {
      return {
        x1: Math.round(Math.min(b.x1, b.x2)), y1: Math.round(Math.min(b.y1, b.y2)),
        x2: Math.round(Math.max(b.x1, b.x2)), y2: Math.round(Math.max(b.y1, b.y2)),
      };
    }

    function setDraft(box) {
      st.draft = box;
      if (!box) {
        draftBox.setAttribute('visibility', 'hidden');
        drawPanel.hidden = true;
        return;
      }
      const b = normalise(box);
      draftBox.setAttribute('x', b.x1);
      draftBox.setAttribute('y', b.y1);
      draftBox.setAttribute('width', b.x2 - b.x1);
      draftBox.setAttribute('height', b.y2 - b.y1);
      draftBox.setAttribute('visibility', 'visible');
    }

    function setDrawing(on) {
      st.drawing = on;
      drawToggle.setAttribute('aria-pressed', String(on));
      drawToggle.classList.toggle('active', on);
      viewer.classList.toggle('drawing', on);
      if (!on) setDraft(null);
    }

    drawToggle.addEventListener('click', () => setDrawing(!st.drawing));

    // ------------- the chosen sign
    function select(signId) {
      st.selected = signId === null || signId === undefined ? null : signId;
      for (const rect of boxes.querySelectorAll('rect.sign')) {
        rect.classList.toggle('selected', rect.dataset.id === String(st.selected));
      }
      renderSignPanel();
    }

    function classPicker(inputId, placeholder) {
      return h('input', { id: inputId, type: 'text', list: 'class-list', autocomplete: 'off', placeholder, spellcheck: 'false' });
    }

    function renderSignPanel() {
      const sign = st.selected === null ? null : signById(st.selected);
      signPanel.hidden = !sign;
      signHint.hidden = Boolean(sign) || Boolean(st.draft);
      if (!sign) {
        signPanel.replaceChildren();
        return;
      }
      const { node: topk, tbody } = table('topk-table', [['#', 'num'], 'Glyph', 'Name', ['MZL', 'num'], ['Score', 'num']], 'compact');
      const classInput = classPicker('class-input', 'name, MZL number or glyph');
      const candidates = sign.topk || [];
      tbody.replaceChildren(...(candidates.length ? candidates.map((c, i) => h('tr', {
        class: String(c.label) === String(sign.label) ? 'current clickable' : 'clickable',
        title: 'Use this class',
        onclick: () => {
          classInput.value = classOptionText(c);
          classInput.focus();
        },
      },
      h('td', { class: 'num', text: i + 1 }),
      h('td', { class: 'glyph-cell' }, glyphSpan(c.glyph)),
      h('td', { text: c.name }),
      h('td', { class: 'num', text: fmtMzl(c.mzl) }),
      h('td', { class: 'num', text: fmtScore(c.score) })))
        : [h('tr', {}, h('td', { colspan: 5, class: 'muted', text: sign.source === 'user' ? 'Drawn by hand: no candidates.' : 'No candidates.' }))]));

      const details = [`MZL ${fmtMzl(sign.mzl)}`, `score ${fmtScore(sign.score)}`,
        sign.line ? `line ${sign.line}` : 'line unknown', sign.source === 'user' ? 'drawn by hand' : 'detected'];
      if (sign.edited) details.push('edited');
      const change = h('button', { id: 'change-class', type: 'submit', class: 'small primary', text: 'Change class' });
      const remove = h('button', { id: 'delete-sign', type: 'button', class: 'small danger', text: 'Delete sign', title: 'Delete (key Del)', onclick: () => deleteSign(sign) });

      signPanel.replaceChildren(
        h('div', { class: 'section-head' }, h('h2', { text: 'Sign' }),
          h('button', { type: 'button', class: 'link-button', text: '×', 'aria-label': 'Close', onclick: () => select(null) })),
        h('div', { id: 'sign-summary' },
          h('span', { class: 'glyph big', text: sign.glyph || '' }),
          h('div', {}, h('strong', { text: sign.name }), h('br'), h('span', { class: 'muted small-text', text: details.join(' · ') }))),
        topk,
        h('form', {
          class: 'class-form',
          onsubmit: async (event) => {
            event.preventDefault();
            const cls = resolveClass(classInput.value);
            if (!cls) {
              showMessage(classInput.value.trim() ? `Unknown class “${classInput.value.trim()}”: choose one from the list.` : 'Choose a class first.');
              return;
            }
            change.disabled = true;
            try {
              const updated = await api('PATCH', `/api/signs/${enc(sign.id)}`, { label: cls.label });
              signs = signs.map((sg) => (sg.id === updated.id ? updated : sg));
              clearMessage();
              refreshSigns();
            } catch (err) {
              report(err);
            } finally {
              change.disabled = false;
            }
          },
        }, h('label', { class: 'field' }, h('span', { text: 'Class' }), classInput), change),
        remove);
    }

    async function deleteSign(sign) {
      try {
        await api('DELETE', `/api/signs/${enc(sign.id)}`);
        signs = signs.filter((sg) => sg.id !== sign.id);
        st.selected = null;
        refreshSigns();
      } catch (err) {
        report(err);
      }
    }

    function openDrawPanel(box) {
      const classInput = classPicker('draw-class-input', 'class of the new sign');
      const save = h('button', { id: 'draw-save', type: 'submit', class: 'small primary', text: 'Save box' });
      const cancel = h('button', { id: 'draw-cancel', type: 'button', class: 'small', text: 'Cancel', onclick: () => { setDraft(null); renderSignPanel(); } });
      drawPanel.replaceChildren(
        h('h2', { text: 'New box' }),
        h('p', { id: 'draw-size', class: 'muted small-text', text: `${box.x2 - box.x1} × ${box.y2 - box.y1} px at (${box.x1}, ${box.y1})` }),
        h('form', {
          class: 'class-form',
          onsubmit: async (event) => {
            event.preventDefault();
            const cls = resolveClass(classInput.value);
            if (!cls) {
              showMessage(classInput.value.trim() ? `Unknown class “${classInput.value.trim()}”: choose one from the list.` : 'Choose the class of the new box first.');
              return;
            }
            save.disabled = true;
            try {
              const sign = await api('POST', `${base}/signs`, { ...box, label: cls.label });
              signs.push(sign);
              setDraft(null);
              clearMessage();
              st.selected = sign.id;
              refreshSigns();
            } catch (err) {
              report(err);
            } finally {
              save.disabled = false;
            }
          },
        }, h('label', { class: 'field' }, h('span', { text: 'Class' }), classInput), save, cancel));
      drawPanel.hidden = false;
      signHint.hidden = true;
      classInput.focus();
    }

    // ------------- detection, scale, review
    function showJob(job) {
      const busy = job && !isFinished(job);
      jobProgress.hidden = !busy;
      detectButton.disabled = Boolean(busy);
      if (!job) {
        jobMessage.textContent = '';
        return;
      }
      jobProgress.value = job.progress || 0;
      if (busy) jobMessage.textContent = `${job.status}: ${job.message || ''} (${Math.round((job.progress || 0) * 100)} %)`;
      else if (job.status === 'failed') jobMessage.textContent = `failed: ${job.error || 'no reason given'}`;
      else jobMessage.textContent = job.message || 'done';
      jobMessage.classList.toggle('error-text', job.status === 'failed');
    }

    function showPhoto() {
      const parts = [`${W} × ${H} px`, photo.format, fmtBytes(photo.bytes), `status ${photo.status}`];
      if (typeof photo.scale_used === 'number') parts.push(`detected at scale ${photo.scale_used.toFixed(2)}`);
      info.textContent = parts.filter(Boolean).join(' · ');
      const auto = photo.scale === null || photo.scale === undefined;
      scaleAuto.checked = auto;
      if (document.activeElement !== scaleNumber) { // not while the user types in it
        const value = auto ? photo.scale_auto || photo.scale_used || 1 : photo.scale;
        scaleNumber.value = Number(value).toFixed(2);
        scaleSlider.value = String(value);
      }
      scaleNumber.disabled = auto;
      scaleSlider.disabled = auto;
      scaleAutoValue.textContent = typeof photo.scale_auto === 'number'
        ? `Found automatically: ${photo.scale_auto.toFixed(2)}`
        : 'The automatic scale is measured when detection runs.';
      reviewed.checked = Boolean(photo.reviewed);
      reviewedNote.textContent = photo.reviewed && typeof photo.review_threshold === 'number'
        ? ` at score ≥ ${photo.review_threshold.toFixed(2)}` : '';
    }

    // Changes are sent one after the other (the server sees them in the user's order), and
    // only the answer to the latest one refreshes the fields, so that an older answer arriving
    // late cannot undo what the user typed since.
    let changes = Promise.resolve();
    let latestChange = 0;

    function patchPhoto(body) {
      const number = ++latestChange;
      changes = changes.then(async () => {
        try {
          const answer = await api('PATCH', base, body);
          if (number === latestChange) photo = answer;
        } catch (err) {
          report(err);
        }
        if (number === latestChange) showPhoto();
      });
      return changes;
    }

    function saveScale() {
      if (scaleAuto.checked) return patchPhoto({ scale: null });
      const value = Number(scaleNumber.value);
      if (!Number.isFinite(value) || value <= 0) {
        showMessage('The scale must be a positive number.');
        return null;
      }
      return patchPhoto({ scale: value });
    }

    scaleAuto.addEventListener('change', () => {
      scaleNumber.disabled = scaleAuto.checked;
      scaleSlider.disabled = scaleAuto.checked;
      saveScale();
    });
    scaleSlider.addEventListener('input', () => { scaleNumber.value = Number(scaleSlider.value).toFixed(2); });
    scaleSlider.addEventListener('change', saveScale);
    scaleNumber.addEventListener('input', () => {
      const value = Number(scaleNumber.value);
      if (Number.isFinite(value)) scaleSlider.value = String(Math.min(5, Math.max(0.2, value)));
    });
    scaleNumber.addEventListener('change', saveScale);

    reviewed.addEventListener('change', () => patchPhoto({ reviewed: reviewed.checked, review_threshold: st.threshold }));

    detectButton.addEventListener('click', async () => {
      detectButton.disabled = true;
      try {
        await changes; // a scale just changed is used
        await startDetection(photo);
      } catch (err) {
        report(err);
        if (err.handled) return;
        try {
          photo = await api('GET', base); // e.g. 409: follow the job that is queued already
          showPhoto();
          if (photo.job && !isFinished(photo.job)) jobs.track(photo.job, photo.name);
          else detectButton.disabled = false;
        } catch (again) {
          report(again);
          detectButton.disabled = false;
        }
      }
    });

    // ------------- filters
    threshold.addEventListener('input', () => {
      st.threshold = Number(threshold.value);
      thresholdValue.textContent = fmtScore(st.threshold);
      drawOverlay();
      updateExports();
    });
    classFilter.addEventListener('change', () => {
      st.classFilter = classFilter.value;
      drawOverlay();
    });
    lineFilter.addEventListener('change', () => {
      st.lineFilter = lineFilter.value;
      drawOverlay();
    });
    colourMode.addEventListener('change', () => {
      st.colour = colourMode.value;
      drawOverlay();
    });
    labelsToggle.addEventListener('change', () => {
      st.labels = labelsToggle.checked;
      drawOverlay();
    });

    /** Select the next (delta 1) or previous (-1) shown sign in reading order, in view. */
    function step(delta) {
      const shown = visibleSigns().sort((a, b) => (a.line - b.line) || (a.x1 - b.x1));
      if (!shown.length) return;
      const at = shown.findIndex((sg) => String(sg.id) === String(st.selected));
      const sign = at < 0 ? shown[delta > 0 ? 0 : shown.length - 1] : shown[(at + delta + shown.length) % shown.length];
      select(sign.id);
      const { x, y, w, h: hgt } = st.vb;
      if (w < W && (sign.x1 < x || sign.x2 > x + w || sign.y1 < y || sign.y2 > y + hgt)) {
        setViewBox({ ...st.vb, x: (sign.x1 + sign.x2 - w) / 2, y: (sign.y1 + sign.y2 - hgt) / 2 });
      }
    }

    function onKey(event) {
      const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName);
      if (event.key === 'Escape') {
        if (st.draft) setDraft(null);
        else if (st.drawing) setDrawing(false);
        else select(null);
        renderSignPanel();
      } else if (typing) {
        // keys belong to the field
      } else if (event.key === 'Delete' && st.selected !== null) {
        const sign = signById(st.selected);
        if (sign) deleteSign(sign);
      } else if (event.key === 'n' || event.key === 'p') step(event.key === 'n' ? 1 : -1);
      else if (event.key === '+' || event.key === '=') zoomBy(1 / 1.4);
      else if (event.key === '-') zoomBy(1.4);
      else if (event.key === '0') setViewBox({ x: 0, y: 0, w: W, h: H });
    }
    document.addEventListener('keydown', onKey);
    const resizeObserver = new ResizeObserver(updateLabelSize);
    resizeObserver.observe(viewer);

    // ------------- previous / next photo of the collection
    api('GET', `/api/collections/${enc(photo.collection_id)}`).then((collection) => {
      back.textContent = collection.name;
      const ids = collection.photos.map((p) => p.id);
      const at = ids.indexOf(photo.id);
      if (at > 0) {
        prev.href = `#/photo/${enc(ids[at - 1])}`;
        prev.hidden = false;
      }
      if (at >= 0 && at < ids.length - 1) {
        next.href = `#/photo/${enc(ids[at + 1])}`;
        next.hidden = false;
      }
    }).catch((err) => { if (!err.handled) console.warn(err); });

    refreshSigns();
    updateExports();
    showPhoto();
    showJob(photo.job);
    updateLabelSize();
    if (photo.job && !isFinished(photo.job)) jobs.track(photo.job, photo.name);

    return {
      destroy() {
        document.removeEventListener('keydown', onKey);
        resizeObserver.disconnect();
      },
      async onJob(job) {
        if (job.photo_id !== photo.id) return;
        showJob(job);
        if (!isFinished(job)) {
          photo.status = job.status;
          return;
        }
        try {
          await changes;
          photo = await api('GET', base);
          showPhoto();
          if (job.status === 'done') await reloadSigns();
        } catch (err) {
          report(err);
        }
      },
    };
  }

  // ---------------------------------------------------------------- start

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
    watchModel();
  }

  start();
})();
