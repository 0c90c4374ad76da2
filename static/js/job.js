// One job: its statuses, its name and scope, its place in the listing's order, whether
// its file expired or it timed out, and its rate.

import { formatBytes, n } from './format.js';

/** A job's statuses, in the order of its life; the last three end it. */
export const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
export const TERMINAL = new Set(STATUSES.slice(2));

export function isImport(job) {
  return job.kind === 'students_import';
}

export function jobName(job) {
  const format = job.params && job.params.format === 'jsonl' ? 'JSON Lines' : 'CSV';
  return `${format} ${isImport(job) ? 'import' : 'export'}`;
}

export function jobScope(job) {
  if (!isImport(job)) return jobRange(job.params);
  const mode = job.params && job.params.mode === 'skip_invalid' ? 'invalid rows skipped' : 'all or nothing';
  return `${formatBytes(job.params ? job.params.bytes : 0)} · ${mode}`;
}

function jobRange(params) {
  const lo = params ? params.min_age : null;
  const hi = params ? params.max_age : null;
  if (lo == null && hi == null) return 'all ages';
  if (lo != null && hi != null) return lo === hi ? `age ${lo}` : `ages ${lo}–${hi}`;
  return lo != null ? `ages ${lo}+` : `ages up to ${hi}`;
}

/** A sortable key of an RFC 3339 time to the nanosecond (Date.parse stops at the ms). */
function timeKey(iso) {
  const m = /^(.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(iso || '');
  if (!m) return '';
  const ms = Date.parse(`${m[1]}${m[3]}`);
  return `${String(ms).padStart(15, '0')}.${(m[2] || '').padEnd(9, '0')}`;
}

/** The listing's order: newest first, then by id (descending). */
export function listingOrder(a, b) {
  const ka = timeKey(a.created_at);
  const kb = timeKey(b.created_at);
  if (ka !== kb) return ka < kb ? 1 : -1;
  if (a.id === b.id) return 0;
  return a.id < b.id ? 1 : -1;
}

/** Whether the job's file is past its expiry (or the server said it is gone). */
export function isExpired(entry) {
  const result = entry.job.result;
  if (!result || !result.file) return false;
  if (entry.goneFile === result.file) return true;
  return Boolean(result.expires_at) && Date.parse(result.expires_at) <= Date.now();
}

/** Whether a timed-out ending: a time limit is final, never retried. */
export const timedOut = (job) => job.status === 'failed' && /^timed out\b/.test(job.error || '');

/** Keeps recent (time, rows done) samples of a running job to measure its rate. */
export function sample(entry) {
  const { job } = entry;
  if (job.status !== 'running') {
    entry.samples = [];
    return;
  }
  const now = performance.now();
  const samples = entry.samples;
  const last = samples[samples.length - 1];
  if (last && job.progress.done < last.done) samples.length = 0; // a retry started over
  samples.push({ t: now, done: job.progress.done });
  while (samples.length > 2 && now - samples[0].t > 5000) samples.shift();
}

export function rate(entry) {
  const s = entry.samples;
  if (s.length < 2) return NaN;
  const dt = (s[s.length - 1].t - s[0].t) / 1000;
  if (dt < 0.25) return NaN;
  return (s[s.length - 1].done - s[0].done) / dt;
}

export function attemptsText(job) {
  return job.attempts === 1 ? '1 attempt' : `${n(job.attempts)} attempts`;
}
