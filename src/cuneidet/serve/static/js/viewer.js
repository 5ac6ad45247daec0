/*
 * The photo viewer: an SVG whose viewBox is in photo pixels, with the photo, the sign boxes
 * and their labels, zoom (wheel, buttons, keys), pan (drag), and drawing a new box (drag in
 * draw mode). The photo page owns the display state `st` (threshold, filters, colour mode,
 * labels, selected sign, drawing, draft) and hears of clicks and drawn boxes through callbacks.
 */

import { svg } from './dom.js';
import { fmtScore, hueOf } from './format.js';

/**
 * The viewer of a W × H photo at `href`. Callbacks: onPick(signId or null) when a box or the
 * photo is clicked, onDrawn(box) when a box was drawn (it is the draft then), onDraftCleared()
 * when the draft is dropped.
 */
export function createViewer({ st, W, H, href, name, onPick, onDrawn, onDraftCleared }) {
  let vb = { x: 0, y: 0, w: W, h: H };
  let drag = null;

  const image = svg('image', { id: 'viewer-image', href, x: 0, y: 0, width: W, height: H, preserveAspectRatio: 'none' });
  const boxes = svg('g', { id: 'boxes' });
  const labels = svg('g', { id: 'labels' });
  const draftBox = svg('rect', { id: 'draft-box', class: 'draft', visibility: 'hidden' });
  const viewer = svg('svg', { id: 'viewer', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'xMidYMid meet', role: 'img', 'aria-label': `Photo ${name} with its signs` },
    image, boxes, labels, draftBox);

  // ------------- boxes and labels

  /** The colour of a sign's box (or, light, of its label on the dark halo). */
  function colourOf(sign, light = false) {
    const hue = st.colour === 'confidence'
      ? Math.round(Math.min(1, Math.max(0, sign.score || 0)) * 120) : Math.round(hueOf(sign.label));
    return light ? `hsl(${hue}, 95%, 72%)` : `hsl(${hue}, 85%, 45%)`;
  }

  /** Draws the boxes (and, when st.labels, the labels) of the signs shown. */
  function drawSigns(shown) {
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
  }

  /** Marks the box of st.selected as the chosen one. */
  function markSelected() {
    for (const rect of boxes.querySelectorAll('rect.sign')) {
      rect.classList.toggle('selected', rect.dataset.id === String(st.selected));
    }
  }

  // ------------- zoom and pan (the viewBox is in photo pixels)
  function setViewBox(next) {
    const w = Math.min(W, Math.max(next.w, Math.min(W, 16)));
    const hgt = w * (H / W);
    let { x, y } = next;
    if (w >= W) {
      x = 0;
      y = 0;
    } else {
      x = Math.min(W - w / 2, Math.max(-w / 2, x));
      y = Math.min(H - hgt / 2, Math.max(-hgt / 2, y));
    }
    vb = { x, y, w, h: hgt };
    viewer.setAttribute('viewBox', `${x} ${y} ${w} ${hgt}`);
    updateLabelSize();
  }

  /** Shows the whole photo. */
  function fit() {
    setViewBox({ x: 0, y: 0, w: W, h: H });
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
    const c = centre || { x: vb.x + vb.w / 2, y: vb.y + vb.h / 2 };
    const w = Math.min(W, Math.max(vb.w * factor, Math.min(W, 16)));
    const f = w / vb.w;
    setViewBox({ x: c.x - (c.x - vb.x) * f, y: c.y - (c.y - vb.y) * f, w, h: vb.h * f });
  }

  /** Moves a zoomed-in view so that the sign is in it. */
  function reveal(sign) {
    const { x, y, w, h: hgt } = vb;
    if (w < W && (sign.x1 < x || sign.x2 > x + w || sign.y1 < y || sign.y2 > y + hgt)) {
      setViewBox({ ...vb, x: (sign.x1 + sign.x2 - w) / 2, y: (sign.y1 + sign.y2 - hgt) / 2 });
    }
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
      drag = { kind: 'draw', x: clampX(p.x), y: clampY(p.y), sx: event.clientX, sy: event.clientY };
      setDraft({ x1: drag.x, y1: drag.y, x2: drag.x, y2: drag.y });
    } else {
      drag = { kind: 'pan', sx: event.clientX, sy: event.clientY, vb: { ...vb }, scale: screenScale(), moved: false, target: event.target };
    }
  });

  viewer.addEventListener('pointermove', (event) => {
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
    const ended = drag;
    if (!ended) return;
    drag = null;
    viewer.classList.remove('panning');
    if (ended.kind === 'pan') {
      if (!ended.moved && !cancelled) {
        const target = ended.target;
        onPick(target && target.classList && target.classList.contains('sign') ? target.dataset.id : null);
      }
      return;
    }
    const p = toPhoto(event);
    const box = normalise({ x1: ended.x, y1: ended.y, x2: clampX(p.x), y2: clampY(p.y) });
    const tiny = Math.abs(event.clientX - ended.sx) < 4 || Math.abs(event.clientY - ended.sy) < 4;
    if (cancelled || tiny || box.x2 - box.x1 < 1 || box.y2 - box.y1 < 1) {
      setDraft(null);
      return;
    }
    setDraft(box);
    onDrawn(box);
  }

  viewer.addEventListener('pointerup', (event) => endDrag(event, false));
  viewer.addEventListener('pointercancel', (event) => endDrag(event, true));

  // ------------- drawing a new box
  function normalise(b) {
    return {
      x1: Math.round(Math.min(b.x1, b.x2)), y1: Math.round(Math.min(b.y1, b.y2)),
      x2: Math.round(Math.max(b.x1, b.x2)), y2: Math.round(Math.max(b.y1, b.y2)),
    };
  }

  /** Shows the draft box (in st.draft), or drops it (null). */
  function setDraft(box) {
    st.draft = box;
    if (!box) {
      draftBox.setAttribute('visibility', 'hidden');
      onDraftCleared();
      return;
    }
    const b = normalise(box);
    draftBox.setAttribute('x', b.x1);
    draftBox.setAttribute('y', b.y1);
    draftBox.setAttribute('width', b.x2 - b.x1);
    draftBox.setAttribute('height', b.y2 - b.y1);
    draftBox.setAttribute('visibility', 'visible');
  }

  /** Draw mode on or off (st.drawing); leaving it drops the draft. */
  function setDrawing(on) {
    st.drawing = on;
    viewer.classList.toggle('drawing', on);
    if (!on) setDraft(null);
  }

  return {
    node: viewer, image, drawSigns, markSelected, setViewBox, fit, zoomBy, reveal, updateLabelSize,
    setDraft, setDrawing,
  };
}
