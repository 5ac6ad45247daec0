/* Formatting of numbers, percentages, sizes, dates and counts for the page, and the colour hue of a class. */

export const enc = encodeURIComponent;
export const fmtScore = (x) => (typeof x === 'number' ? x.toFixed(2) : '–');
export const fmtMzl = (m) => (m === null || m === undefined || m < 0 ? '–' : String(m));

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function fmtDate(text) {
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? String(text || '') : date.toLocaleDateString();
}

/**
 * A probability as a percentage with sensible precision: 99.8 %, 3.4 %, 0.012 %, 2.0e-5 %
 * (never "100.0 %" for a probability below 1).
 */
export function fmtPercent(p) {
  if (typeof p !== 'number' || !Number.isFinite(p)) return '–';
  const pct = p * 100;
  if (pct <= 0) return '0 %';
  if (pct >= 1) {
    const text = pct.toFixed(1);
    return text === '100.0' && p < 1 ? '> 99.9 %' : `${text} %`;
  }
  return pct >= 0.001 ? `${pct.toPrecision(2)} %` : `${pct.toExponential(1)} %`;
}

export const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** A stable hue for a class label: golden-angle steps for numbers, else a mixed FNV-1a hash. */
export function hueOf(key) {
  const text = String(key);
  if (/^\d+$/.test(text)) return (Number(text) * 137.508) % 360;
  let hash = 0x811c9dc5;
  for (const ch of text) hash = Math.imul(hash ^ ch.codePointAt(0), 16777619);
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return ((hash ^ (hash >>> 16)) >>> 0) % 360;
}
