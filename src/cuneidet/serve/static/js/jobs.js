/*
 * Detection jobs: the poller that follows every running job, whatever the page shows, and the
 * header's jobs indicator.
 */

import { api, report, showMessage } from './api.js';
import { $ } from './dom.js';
import { enc, plural } from './format.js';
import { POLL_MS, state } from './state.js';

export const isFinished = (job) => job.status === 'done' || job.status === 'failed';

/**
 * Polls every running job once a second, whatever the page shows; the current view hears of
 * every update through its onJob hook. A failed job's error is shown as a message.
 */
export const jobs = {
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
export async function startDetection(photo) {
  const job = await api('POST', `/api/photos/${enc(photo.id)}/detect`, {});
  jobs.track(job, photo.name);
  return job;
}
