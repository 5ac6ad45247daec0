/*
 * The drawing pad of the Draw page: a square canvas drawn on with Pointer Events (mouse, touch,
 * pen), black ink on white, smooth strokes with round caps and joins. Strokes are kept as point
 * lists, so that undo removes the last one and the canvas is drawn again from them. A pen's
 * pressure modulates the width (a mouse or finger draws the chosen width).
 */

import { h } from './dom.js';

const INK = '#000';
const PAPER = '#fff';
/** Points closer than this (CSS px) to the previous one are dropped. */
const MIN_STEP = 0.75;

/** The width of a stroke at pressure p (pens only; 0.5, a pen's middle pressure, draws `width`). */
const pressed = (width, p) => width * (0.35 + 1.3 * p);

/**
 * A drawing pad of size × size CSS px. width() answers the width (CSS px) of the next stroke;
 * onChange(strokeCount) is called after every change.
 */
export function createSketch({ id, size, width, onChange = () => {} }) {
  const canvas = h('canvas', {
    id, class: 'sketch', role: 'img', 'aria-label': 'Drawing area: draw one sign with the mouse, a finger or a pen',
  });
  canvas.style.width = `${size}px`; // the height follows (square backing store, max-width 100 %)
  const ctx = canvas.getContext('2d');
  const strokes = []; // {width, pressure: bool, points: [{x, y, p}]}
  let current = null;
  let pointerId = null;
  let frame = 0;
  let scale = 0;

  /** The backing store follows devicePixelRatio (checked again on every redraw: page zoom). */
  function fitBacking() {
    const ratio = window.devicePixelRatio || 1;
    if (ratio === scale) return;
    scale = ratio;
    canvas.width = Math.round(size * ratio);
    canvas.height = Math.round(size * ratio);
  }

  function redraw() {
    frame = 0;
    fitBacking();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(canvas.width / size, 0, 0, canvas.height / size, 0, 0);
    ctx.strokeStyle = INK;
    ctx.fillStyle = INK;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    for (const stroke of strokes) drawStroke(stroke);
  }

  function scheduleRedraw() {
    if (!frame) frame = requestAnimationFrame(redraw);
  }

  /**
   * A stroke as quadratic curves through the midpoints of its points (the points are the control
   * points), a dot for a single point; a pen's stroke segment by segment, each with its width.
   */
  function drawStroke({ width: w, pressure, points }) {
    const first = points[0];
    if (points.length === 1) {
      ctx.beginPath();
      ctx.arc(first.x, first.y, (pressure ? pressed(w, first.p) : w) / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    const segments = [];
    let from = first;
    for (let i = 1; i < points.length - 1; i += 1) {
      const to = { x: (points[i].x + points[i + 1].x) / 2, y: (points[i].y + points[i + 1].y) / 2 };
      segments.push({ from, ctrl: points[i], to });
      from = to;
    }
    const last = points[points.length - 1];
    segments.push({ from, ctrl: null, to: last, p: last.p });
    const trace = ({ ctrl, to }) => {
      if (ctrl) ctx.quadraticCurveTo(ctrl.x, ctrl.y, to.x, to.y);
      else ctx.lineTo(to.x, to.y);
    };
    if (!pressure) {
      ctx.lineWidth = w;
      ctx.beginPath();
      ctx.moveTo(first.x, first.y);
      segments.forEach(trace);
      ctx.stroke();
      return;
    }
    for (const segment of segments) {
      ctx.lineWidth = pressed(w, (segment.ctrl || segment).p);
      ctx.beginPath();
      ctx.moveTo(segment.from.x, segment.from.y);
      trace(segment);
      ctx.stroke();
    }
  }

  /** A pointer event's position in the canvas's own CSS px (0…size), whatever its shown size. */
  function pointOf(event) {
    const box = canvas.getBoundingClientRect(); // with the border: clientLeft / clientTop
    return {
      x: ((event.clientX - box.left - canvas.clientLeft) * size) / (canvas.clientWidth || size),
      y: ((event.clientY - box.top - canvas.clientTop) * size) / (canvas.clientHeight || size),
      p: event.pressure > 0 ? event.pressure : 0.5,
    };
  }

  function addPoint(event) {
    const point = pointOf(event);
    const points = current.points;
    const previous = points[points.length - 1];
    if (previous && Math.hypot(point.x - previous.x, point.y - previous.y) < MIN_STEP) return;
    points.push(point);
  }

  canvas.addEventListener('pointerdown', (event) => {
    if (pointerId !== null || (event.pointerType === 'mouse' && event.button !== 0)) return;
    event.preventDefault();
    pointerId = event.pointerId;
    canvas.setPointerCapture(pointerId);
    current = { width: width(), pressure: event.pointerType === 'pen', points: [] };
    strokes.push(current);
    addPoint(event);
    scheduleRedraw();
  });

  canvas.addEventListener('pointermove', (event) => {
    if (event.pointerId !== pointerId) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const each of events.length ? events : [event]) addPoint(each);
    scheduleRedraw();
  });

  function endStroke(event) {
    if (event.pointerId !== pointerId) return;
    if (canvas.hasPointerCapture(pointerId)) canvas.releasePointerCapture(pointerId);
    pointerId = null;
    current = null;
    scheduleRedraw();
    onChange(strokes.length);
  }
  canvas.addEventListener('pointerup', endStroke);
  canvas.addEventListener('pointercancel', endStroke);
  canvas.addEventListener('contextmenu', (event) => event.preventDefault());

  function undo() {
    if (pointerId !== null || !strokes.length) return;
    strokes.pop();
    redraw();
    onChange(strokes.length);
  }

  function clear() {
    if (pointerId !== null) return;
    strokes.length = 0;
    redraw();
    onChange(strokes.length);
  }

  /** The drawing as a PNG blob (white background, the backing store's pixels). */
  function toBlob() {
    if (frame) {
      cancelAnimationFrame(frame);
      redraw();
    }
    return new Promise((resolve, reject) => {
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('the drawing could not be exported'))), 'image/png');
    });
  }

  redraw();
  return {
    node: canvas,
    undo,
    clear,
    toBlob,
    strokeCount: () => strokes.length,
    destroy() {
      if (frame) cancelAnimationFrame(frame);
    },
  };
}
