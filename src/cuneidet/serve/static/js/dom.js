/*
 * DOM helpers: every string that comes from the server or the user goes into the page through
 * textContent or createElement (h() and svg() here), never through innerHTML.
 */

export const $ = (id) => document.getElementById(id);
const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'multiple', 'selected']);

function appendChildren(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element; props: text, class, dataset, on<event> handlers, properties, attributes. */
export function h(tag, props = {}, ...children) {
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
export function svg(tag, attrs = {}, ...children) {
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
export function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', { text: label }), input,
    hint ? h('small', { class: 'muted', text: hint }) : null);
}

/** A data table; a heading is a text or [text, class] (e.g. 'num' for right-aligned). */
export function table(id, headings, extraClass = '') {
  const tbody = h('tbody');
  const th = (heading) => {
    const [text, cls] = Array.isArray(heading) ? heading : [heading, null];
    return h('th', { scope: 'col', class: cls, text });
  };
  const node = h('table', { id, class: `data ${extraClass}`.trim() },
    h('thead', {}, h('tr', {}, headings.map(th))), tbody);
  return { node, tbody };
}

export function glyphSpan(glyph) {
  return h('span', { class: 'glyph', text: glyph || '' });
}

/** A download link of an export (the collection and the photo page). */
export function exportLink(id, text, href) {
  return h('a', { id, class: 'export', href, download: '', text });
}
