/*
 * View #/draw: draw one sign on a canvas (sketch.js), choose the model (an oracle-bone
 * character or a cuneiform sign, GET /api/draw/modes) and rank the classes
 * (POST /api/draw/<mode> with the PNG): the top 10 with their probabilities and the image the
 * model saw. Keys: Ctrl+Z undoes the last stroke.
 */

import { api, clearMessage, report } from '../api.js';
import { glyphSpan, h, table } from '../dom.js';
import { enc, fmtMzl, fmtPercent } from '../format.js';
import { createSketch } from '../sketch.js';

const SIZE = 320;
const TITLES = { oracle: 'Oracle bone', cuneiform: 'Cuneiform sign' };
/** Kept from one visit of the page to the next. */
const remembered = { mode: null, width: 8 };

/** The seed's colour of the best candidate: sure (> 0.5), unsure, or hopeless (< 0.0001). */
export function bestColour(p) {
  if (p > 0.5) return 'green';
  if (p < 0.0001) return 'red';
  return 'yellow';
}

const codePoints = (text) => [...String(text || '')].map((ch) => `U+${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}`).join(' ');

export async function viewDraw(root) {
  let running = false;

  // ------------- the pad and its tools
  const widthInput = h('input', { id: 'draw-width', type: 'range', min: 2, max: 24, step: 1, value: remembered.width });
  const widthValue = h('output', { id: 'draw-width-value', for: 'draw-width', text: `${remembered.width} px` });
  const undoButton = h('button', { id: 'draw-undo', type: 'button', class: 'small', text: 'Undo', title: 'Remove the last stroke (Ctrl+Z)', disabled: true });
  const clearButton = h('button', { id: 'draw-clear', type: 'button', class: 'small', text: 'Clear', title: 'Start again on an empty canvas', disabled: true });
  const runButton = h('button', { id: 'draw-run', type: 'button', class: 'primary', text: 'Recognise', title: 'Rank the classes for the drawing' });
  const sketch = createSketch({
    id: 'draw-canvas',
    size: SIZE,
    width: () => Number(widthInput.value),
    onChange: (count) => {
      undoButton.disabled = count === 0;
      clearButton.disabled = count === 0;
    },
  });
  widthInput.addEventListener('input', () => {
    remembered.width = Number(widthInput.value);
    widthValue.textContent = `${remembered.width} px`;
  });
  undoButton.addEventListener('click', () => sketch.undo());
  clearButton.addEventListener('click', () => sketch.clear());
  runButton.addEventListener('click', run);

  // ------------- the modes
  const legend = h('legend', { text: 'Recognise as' });
  const modeBox = h('fieldset', { id: 'draw-mode', class: 'draw-modes' }, legend,
    h('p', { class: 'muted small-text', text: 'Asking for the models…' }));
  let modeTimer = null;
  let modeTries = 0;
  let destroyed = false;
  /** A mode whose model is still loading (the server says so) is asked again every few seconds. */
  const stillLoading = (m) => !m.ready && (m.loading ?? !m.error);

  function chosenMode() {
    const input = modeBox.querySelector('input[name="draw-mode"]:checked');
    return input ? input.value : null;
  }

  function modeOption(m) {
    const title = TITLES[m.mode] || m.mode;
    const input = h('input', {
      id: `draw-mode-${m.mode}`, type: 'radio', name: 'draw-mode', value: m.mode, disabled: !m.ready,
      onchange: () => {
        remembered.mode = m.mode;
        updateRun();
      },
    });
    const about = [m.description, m.ready && m.classes ? `${m.classes} ${m.classes === 1 ? 'class' : 'classes'}` : null].filter(Boolean).join(' · ');
    const why = stillLoading(m)
      ? h('small', { class: 'muted draw-mode-error', text: 'the model is still loading…' })
      : h('small', { class: 'error-text draw-mode-error', text: m.error });
    return h('label', { class: `draw-mode${m.ready ? '' : ' unavailable'}`, dataset: { mode: m.mode } },
      input,
      h('span', {},
        h('strong', { text: title }),
        about ? h('small', { class: 'muted draw-mode-description', text: about }) : null,
        m.ready ? null : why));
  }

  async function loadModes() {
    modeTimer = null;
    let modes;
    try {
      modes = await api('GET', '/api/draw/modes');
    } catch (err) {
      if (destroyed) return;
      report(err);
      if (err.handled) return;
      modes = [];
    }
    if (destroyed) return;
    const before = chosenMode();
    modeBox.replaceChildren(legend, ...modes.map(modeOption));
    const ready = modes.filter((m) => m.ready);
    const pick = ready.find((m) => m.mode === before) || ready.find((m) => m.mode === remembered.mode) || ready[0];
    if (pick) modeBox.querySelector(`#draw-mode-${CSS.escape(pick.mode)}`).checked = true;
    else if (!modes.some(stillLoading)) {
      modeBox.append(h('p', { class: 'warn small-text', text: modes.length ? 'No model for drawings is available on this server.' : 'The models for drawings could not be listed.' }));
    }
    updateRun();
    if (modes.some(stillLoading) && modeTries < 40) {
      modeTries += 1;
      modeTimer = setTimeout(loadModes, 3000);
    }
  }

  function updateRun() {
    runButton.disabled = running || !chosenMode();
  }

  // ------------- the result
  const resultCard = h('section', { id: 'draw-result', class: 'card', hidden: true });
  const resultHint = h('p', { id: 'draw-hint', class: 'muted', text: 'Draw one sign on the white square, choose what it is, then press Recognise. The ten most probable classes are listed here.' });

  function showResult(answer) {
    const cuneiform = answer.mode === 'cuneiform';
    const headings = cuneiform
      ? [['#', 'num'], 'Glyph', 'Name', ['MZL', 'num'], ['Probability', 'num']]
      : [['#', 'num'], 'Character', 'Code point', ['Probability', 'num']];
    const { node, tbody } = table('draw-results', headings, 'compact');
    tbody.replaceChildren(...(answer.top || []).map((c) => {
      const best = c.rank === 1 ? ` best best-${bestColour(c.probability)}` : '';
      const cells = cuneiform
        ? [h('td', { class: 'draw-sign glyph-cell' }, glyphSpan(c.glyph)),
          h('td', { class: 'draw-name', text: c.name }),
          h('td', { class: 'num draw-mzl', text: fmtMzl(c.mzl) })]
        : [h('td', { class: 'draw-sign hanzi', lang: 'zh', text: c.name }),
          h('td', { class: 'draw-name muted small-text', text: codePoints(c.name) })];
      return h('tr', { class: `draw-result${best}`, dataset: { rank: c.rank, label: c.label } },
        h('td', { class: 'num draw-rank', text: c.rank }),
        cells,
        h('td', { class: 'num draw-probability', text: fmtPercent(c.probability), title: String(c.probability) }));
    }));
    const input = h('img', { id: 'draw-input', src: answer.input || '', alt: 'The drawing as the model saw it', width: 96, height: 96 });
    resultCard.replaceChildren(
      h('div', { class: 'section-head' }, h('h2', { text: `Result: ${TITLES[answer.mode] || answer.mode}` })),
      h('div', { class: 'draw-answer' },
        h('figure', { class: 'draw-input' }, input, h('figcaption', { class: 'muted small-text', text: 'what the model saw' })),
        node));
    resultCard.hidden = false;
    resultHint.hidden = true;
  }

  async function run() {
    const mode = chosenMode();
    if (!mode || running) return;
    running = true;
    updateRun();
    runButton.textContent = 'Recognising…';
    try {
      const form = new FormData();
      form.append('image', await sketch.toBlob(), 'drawing.png');
      const answer = await api('POST', `/api/draw/${enc(mode)}`, form);
      clearMessage();
      showResult(answer);
    } catch (err) {
      resultCard.hidden = true;
      resultHint.hidden = false;
      report(err);
    } finally {
      running = false;
      runButton.textContent = 'Recognise';
      updateRun();
    }
  }

  // ------------- keys
  function onKey(event) {
    if ((event.ctrlKey || event.metaKey) && !event.shiftKey && !event.altKey && event.key.toLowerCase() === 'z') {
      event.preventDefault();
      sketch.undo();
    }
  }
  document.addEventListener('keydown', onKey);

  root.append(
    h('h1', { text: 'Draw a sign' }),
    h('div', { class: 'draw-layout' },
      h('section', { class: 'card draw-pad' },
        sketch.node,
        h('div', { class: 'draw-tools' },
          h('label', { class: 'group', title: 'The width of the next stroke' }, 'width ', widthInput, widthValue),
          h('span', { class: 'spacer' }), undoButton, clearButton),
        modeBox,
        h('div', { class: 'draw-run-row' }, runButton, h('small', { class: 'muted', text: 'Ctrl+Z undoes the last stroke.' }))),
      h('div', { class: 'draw-side' }, resultHint, resultCard)));
  updateRun();
  await loadModes();

  return {
    destroy() {
      destroyed = true;
      clearTimeout(modeTimer);
      document.removeEventListener('keydown', onKey);
      sketch.destroy();
    },
  };
}
