/*
 * View #/collection/<id>: uploading photos (one request each, with progress), the photo table
 * with its detection jobs, the counts per class and the export links.
 */

import { api, errorFrom, report, safeJson, showMessage } from '../api.js';
import { exportLink, field, glyphSpan, h, table } from '../dom.js';
import { enc, fmtBytes, fmtMzl, plural } from '../format.js';
import { isFinished, jobs, startDetection } from '../jobs.js';
import { DEFAULT_THRESHOLD, state } from '../state.js';

function statusBadge(status) {
  return h('span', { class: `badge status-${status}`, text: status });
}

export async function viewCollection(root, id) {
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
