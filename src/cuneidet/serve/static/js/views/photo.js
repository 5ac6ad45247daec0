/*
 * View #/photo/<id>: the toolbar (zoom, filters, draw mode) over the viewer (viewer.js), the
 * sign panels (photo-signs.js), the side panels for detection, scale, review and exports, the
 * previous / next links, and the keys n / p / Del / Esc / + / - / 0.
 */

import { api, report, showMessage } from '../api.js';
import { classDatalist, loadClasses } from '../classes.js';
import { exportLink, h } from '../dom.js';
import { enc, fmtBytes, fmtScore, plural } from '../format.js';
import { isFinished, jobs, startDetection } from '../jobs.js';
import { DEFAULT_THRESHOLD } from '../state.js';
import { createViewer } from '../viewer.js';
import { createSignPanels } from './photo-signs.js';

export async function viewPhoto(root, id) {
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
      button('zoom-out', '−', 'Zoom out', () => view.zoomBy(1.4)),
      button('zoom-fit', 'Fit', 'Show the whole photo', () => view.fit()),
      button('zoom-in', '+', 'Zoom in', () => view.zoomBy(1 / 1.4))),
    h('label', { class: 'group' }, labelsToggle, ' labels'),
    h('label', { class: 'group' }, 'colour ', colourMode),
    h('label', { class: 'group' }, 'class ', classFilter),
    h('label', { class: 'group' }, 'score ≥ ', threshold, thresholdValue),
    h('label', { class: 'group' }, 'line ', lineFilter),
    h('span', { class: 'group' }, drawToggle),
    shownCount);

  // ------------- viewer
  const view = createViewer({
    st, W, H, href: `${base}/image`, name: photo.name,
    onPick: (signId) => panels.select(signId),
    onDrawn: (box) => panels.openDrawPanel(box),
    onDraftCleared: () => { panels.drawPanel.hidden = true; },
  });
  view.image.addEventListener('error', () => showMessage(`The image of ${photo.name} could not be loaded; reload the page to try again.`));

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

  const panels = createSignPanels({
    st, base, view, signById, refreshSigns,
    getSigns: () => signs,
    setSigns: (list) => { signs = list; },
  });

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
      h('div', { class: 'viewer-wrap' }, view.node),
      h('aside', { class: 'photo-side' },
        panels.signHint, panels.signPanel, panels.drawPanel,
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

  // ------------- filters
  function signById(signId) {
    return signs.find((sg) => String(sg.id) === String(signId)) || null;
  }

  function visibleSigns() {
    return signs.filter((sg) => sg.score >= st.threshold - 1e-9
      && (st.classFilter === 'all' || String(sg.label) === st.classFilter)
      && (st.lineFilter === 'all' || String(sg.line) === st.lineFilter));
  }

  function drawOverlay() {
    const shown = visibleSigns();
    view.drawSigns(shown);
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
    panels.render();
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

  // ------------- draw mode
  function setDrawing(on) {
    drawToggle.setAttribute('aria-pressed', String(on));
    drawToggle.classList.toggle('active', on);
    view.setDrawing(on);
  }

  drawToggle.addEventListener('click', () => setDrawing(!st.drawing));

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
    panels.select(sign.id);
    view.reveal(sign);
  }

  function onKey(event) {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName);
    if (event.key === 'Escape') {
      if (st.draft) view.setDraft(null);
      else if (st.drawing) setDrawing(false);
      else panels.select(null);
      panels.render();
    } else if (typing) {
      // keys belong to the field
    } else if (event.key === 'Delete' && st.selected !== null) {
      const sign = signById(st.selected);
      if (sign) panels.deleteSign(sign);
    } else if (event.key === 'n' || event.key === 'p') step(event.key === 'n' ? 1 : -1);
    else if (event.key === '+' || event.key === '=') view.zoomBy(1 / 1.4);
    else if (event.key === '-') view.zoomBy(1.4);
    else if (event.key === '0') view.fit();
  }
  document.addEventListener('keydown', onKey);
  const resizeObserver = new ResizeObserver(view.updateLabelSize);
  resizeObserver.observe(view.node);

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
  view.updateLabelSize();
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
