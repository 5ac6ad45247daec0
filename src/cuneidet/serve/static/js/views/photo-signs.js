/*
 * The photo page's sign panels: the chosen sign (its candidates, changing its class, deleting
 * it) and the panel that gives a newly drawn box its class before it is saved.
 */

import { api, clearMessage, report, showMessage } from '../api.js';
import { classOptionText, classPicker, resolveClass } from '../classes.js';
import { glyphSpan, h, table } from '../dom.js';
import { enc, fmtMzl, fmtScore } from '../format.js';

/**
 * The panels of the photo at `base` with its display state `st` and viewer `view`. The photo
 * page keeps the signs (getSigns / setSigns, signById) and redraws them on refreshSigns().
 */
export function createSignPanels({ st, base, view, getSigns, setSigns, signById, refreshSigns }) {
  const signHint = h('p', { id: 'sign-hint', class: 'muted small-text', text: 'Click a box to see its candidates (keys n / p: next / previous sign, Del: delete it). Drag to move the photo, scroll to zoom.' });
  const signPanel = h('section', { id: 'sign-panel', class: 'card accent', hidden: true });
  const drawPanel = h('section', { id: 'draw-panel', class: 'card accent', hidden: true });

  // ------------- the chosen sign
  function select(signId) {
    st.selected = signId === null || signId === undefined ? null : signId;
    view.markSelected();
    render();
  }

  function render() {
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
            setSigns(getSigns().map((sg) => (sg.id === updated.id ? updated : sg)));
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
      setSigns(getSigns().filter((sg) => sg.id !== sign.id));
      st.selected = null;
      refreshSigns();
    } catch (err) {
      report(err);
    }
  }

  // ------------- a newly drawn box
  function openDrawPanel(box) {
    const classInput = classPicker('draw-class-input', 'class of the new sign');
    const save = h('button', { id: 'draw-save', type: 'submit', class: 'small primary', text: 'Save box' });
    const cancel = h('button', { id: 'draw-cancel', type: 'button', class: 'small', text: 'Cancel', onclick: () => { view.setDraft(null); render(); } });
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
            getSigns().push(sign);
            view.setDraft(null);
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

  return { signHint, signPanel, drawPanel, select, render, deleteSign, openDrawPanel };
}
