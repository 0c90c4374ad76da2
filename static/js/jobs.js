// The jobs the page knows, and taking in what the server says of them (snapshots,
// events and answers): a version older than the page's (by `seq`) is dropped.

import { n } from './format.js';
import { announce } from './dom.js';
import { api } from './api.js';
import { loadStudents } from './students.js';
import { isImport, jobName, sample, TERMINAL } from './job.js';
import {
  jobsList,
  placeInView,
  refreshJobsSoon,
  renderJob,
  renderJobs,
  view,
} from './jobs-list.js';
import { detail, loadAttemptsSoon, noteLive, renderDetail } from './job-detail.js';
import { loadSchedules } from './schedules.js';
import { loadWorkers, workers } from './workers.js';

/** id → { job, el, samples: [{t, done}], cancelAsked, goneFile, expiryTimer } */
export const jobs = new Map();
/** How many jobs the page remembers besides those it shows. */
const MAX_KNOWN_JOBS = 500;

/** Jobs deleted from this page: a page read or an event from before is not to bring one back. */
export const deleted = new Set();
const MAX_DELETED = 1000;

/** Keeps `job` unless the page already has a newer version of it (by seq). */
export function remember(job) {
  if (deleted.has(job.id)) return { job, el: null, samples: [] };
  const known = jobs.get(job.id);
  if (known && job.seq <= known.job.seq) return known;
  const entry = known || { job, el: null, samples: [] };
  entry.job = job;
  jobs.set(job.id, entry);
  sample(entry);
  return entry;
}

/** Takes a newer version of a job (a snapshot, a status event or an API answer). */
export function upsertJob(job, quiet) {
  if (deleted.has(job.id)) return;
  const known = jobs.get(job.id);
  if (known && job.seq <= known.job.seq) return;
  const before = known ? known.job.status : null;
  const entry = remember(job);
  changed(entry);
  if (!quiet && before && before !== job.status && TERMINAL.has(job.status)) {
    announce(`${jobName(job)} ${job.status}.`);
  }
}

/** Shows a change of `entry` wherever the job is shown. */
export function changed(entry, liveText) {
  if (view.ids.includes(entry.job.id)) renderJob(entry);
  else if (placeInView(entry)) renderJobs();
  if (detail.id === entry.job.id) {
    if (liveText) noteLive(liveText, entry.job.seq);
    renderDetail();
  }
}

export function forgetJob(id) {
  deleted.add(id);
  if (deleted.size > MAX_DELETED) deleted.delete(deleted.values().next().value);
  // A page read already under way may still list it: read again instead.
  view.request += 1;
  jobsList.setAttribute('aria-busy', 'false');
  const entry = jobs.get(id);
  if (entry) {
    clearTimeout(entry.expiryTimer);
    if (entry.el) entry.el.remove();
  }
  jobs.delete(id);
  view.unseen.delete(id);
  const at = view.ids.indexOf(id);
  if (at >= 0) {
    view.ids.splice(at, 1);
    renderJobs();
  }
  refreshJobsSoon(300); // a job from the next page moves up
}

export function applyProgress(event) {
  const entry = jobs.get(event.job_id);
  if (!entry) {
    // A job this page has not seen: read it whole.
    fetchJob(event.job_id);
    return;
  }
  if (event.seq <= entry.job.seq) return;
  entry.job = {
    ...entry.job,
    seq: event.seq,
    progress: { done: event.done, total: event.total },
  };
  if (entry.job.status === 'queued') entry.job.status = 'running';
  sample(entry);
  changed(entry, { progress: true, text: `Progress: ${n(event.done)} of ${n(event.total)} rows` });
}

export function applyStatus(event) {
  if (event.job && event.job.schedule_id && !jobs.has(event.job.id)) loadSchedules();
  if (event.job && isImport(event.job) && event.job.status === 'succeeded') {
    const before = jobs.get(event.job.id);
    // New students: show them (once, however many times the ending is heard).
    if (!before || before.job.status !== 'succeeded') loadStudents();
  }
  const status = event.job ? event.job.status : event.status;
  // A job running means a worker is back: say so without waiting for the next poll.
  if (status === 'running' && workers.known && workers.list.length === 0) loadWorkers();
  let job = event.job;
  if (!job) {
    const entry = jobs.get(event.job_id);
    if (!entry) {
      fetchJob(event.job_id);
      return;
    }
    if (event.seq <= entry.job.seq) return;
    job = {
      ...entry.job,
      seq: event.seq,
      status: event.status,
      error: event.error === undefined ? entry.job.error : event.error,
      result: event.result === undefined ? entry.job.result : event.result,
    };
  }
  if (deleted.has(job.id)) return;
  const known = jobs.get(job.id);
  if (known && job.seq <= known.job.seq) return;
  const before = known ? known.job.status : null;
  const entry = remember(job);
  const what = job.error && job.status === 'failed' ? `${job.status}: ${job.error}` : job.status;
  changed(entry, { text: `Status: ${job.cancel_requested && !TERMINAL.has(job.status) ? 'cancel requested' : what}` });
  if (before && before !== job.status && TERMINAL.has(job.status)) {
    announce(`${jobName(job)} ${job.status}.`);
  }
  if (detail.id === job.id) loadAttemptsSoon();
}

const fetching = new Set();
async function fetchJob(id) {
  if (fetching.has(id)) return;
  fetching.add(id);
  try {
    upsertJob(await api('GET', `/api/jobs/${encodeURIComponent(id)}`), true);
  } catch (_) {
    // The next event or snapshot brings it.
  } finally {
    fetching.delete(id);
  }
}

/** Forgets jobs neither shown nor running once the page knows too many. */
export function evict() {
  if (jobs.size <= MAX_KNOWN_JOBS) return;
  const keep = new Set(view.ids);
  for (const [id, entry] of jobs) {
    if (jobs.size <= MAX_KNOWN_JOBS) break;
    if (keep.has(id) || id === detail.id || !TERMINAL.has(entry.job.status)) continue;
    clearTimeout(entry.expiryTimer);
    jobs.delete(id);
  }
}
