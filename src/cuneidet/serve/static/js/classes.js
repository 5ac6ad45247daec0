/* The detector's classes: loaded once per login, named in pickers, found again from typed text. */

import { api, report } from './api.js';
import { h } from './dom.js';
import { state } from './state.js';

/** The detector's classes, fetched once per login; [] when none is loaded. */
export async function loadClasses() {
  if (state.classes) return state.classes;
  try {
    state.classes = await api('GET', '/api/classes');
  } catch (err) {
    if (err.handled) throw err;
    state.classes = [];
  }
  return state.classes;
}

export function classOptionText(cls) {
  const mzl = cls.mzl === null || cls.mzl === undefined || cls.mzl < 0 ? '' : ` (MZL ${cls.mzl})`;
  return `${cls.name}${mzl} ${cls.glyph || ''}`.trim();
}

/** The class a typed or chosen text names: the datalist text, the label, name, MZL or glyph. */
export function resolveClass(text) {
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

/** The datalist (id class-list) of all classes, filled once they are loaded. */
export function classDatalist() {
  const list = h('datalist', { id: 'class-list' });
  loadClasses().then((classes) => {
    list.replaceChildren(...classes.map((c) => h('option', { value: classOptionText(c) })));
  }).catch(report);
  return list;
}

/** A text input picking a class from the datalist. */
export function classPicker(inputId, placeholder) {
  return h('input', { id: inputId, type: 'text', list: 'class-list', autocomplete: 'off', placeholder, spellcheck: 'false' });
}
