// The jobs view: its filters, its pages (a stack of cursors) and one row a job.

import { capitalise, formatTime, n, shortId } from './format.js';
import { $, clearFieldErrors, formMessage, showAlert, showFieldErrors } from './dom.js';
import { api } from './api.js';
import { me, showOwners } from './signin.js';
import { isExpired, isImport, jobName, jobScope, listingOrder, STATUSES, TERMINAL } from './job.js';
import { deleted, evict, jobs, remember } from './jobs.js';
import { numbersText, renderDownload, renderProgress, watchExpiry } from './job-show.js';
import { cancelJob, checkedDownload, retryJob } from './job-actions.js';

for (const status of STATUSES) $('jobs-status').add(new Option(capitalise(status), status));

export const jobsList = $('jobs');
const jobsFilter = $('jobs-filter');
const template = $('job-template');

/** What the jobs view shows: its filters, its page (a stack of cursors) and its jobs. */
export const view = {
  status: '',
  kind: '',
  mine: false,
  q: '',
  limit: 25,
  cursors: [null], // cursors[i] is where page i + 1 starts
  next: null, // where the page after this one starts
  ids: [],
  request: 0,
  unseen: new Set(), // jobs newer than this page, not shown
  refreshTimer: null,
};

function matchesView(job) {
  if (view.status && job.status !== view.status) return false;
  if (view.kind && job.kind !== view.kind) return false;
  if (view.q && !job.id.startsWith(view.q.toLowerCase())) return false;
  if (view.mine && job.created_by !== me.username) return false;
  return true;
}

const filtered = () => Boolean(view.status || view.kind || view.q || view.mine);

// -- loading a page

export function readJobFilters() {
  view.status = $('jobs-status').value;
  view.kind = $('jobs-kind').value;
  view.mine = $('jobs-owner').value === 'true';
  view.q = $('jobs-q').value.trim().toLowerCase();
  view.limit = Number($('jobs-limit').value) || 25;
  view.cursors = [null];
  view.next = null;
  view.unseen.clear();
}

export async function loadJobs() {
  const ticket = ++view.request;
  clearTimeout(view.refreshTimer);
  view.refreshTimer = null;
  const params = new URLSearchParams({ limit: String(view.limit) });
  if (view.status) params.set('status', view.status);
  if (view.kind) params.set('kind', view.kind);
  if (view.q) params.set('q', view.q);
  if (view.mine) params.set('mine', 'true');
  const cursor = view.cursors[view.cursors.length - 1];
  if (cursor) params.set('cursor', cursor);
  jobsList.setAttribute('aria-busy', 'true');
  try {
    const data = await api('GET', `/api/jobs?${params}`);
    if (ticket !== view.request) return;
    clearFieldErrors(jobsFilter);
    showAlert($('jobs-message'), '');
    view.ids = data.items.filter((job) => !deleted.has(job.id)).map((job) => remember(job).job.id);
    view.next = data.next_cursor || null;
    if (view.cursors.length === 1) view.unseen.clear();
    renderJobs();
  } catch (err) {
    if (ticket !== view.request) return;
    const rest = err.status === 422 ? showFieldErrors(jobsFilter, err.fields) : {};
    const message = formMessage(err, rest);
    showAlert($('jobs-message'), message ? `Could not load the jobs: ${message}` : '');
  } finally {
    if (ticket === view.request) jobsList.setAttribute('aria-busy', 'false');
  }
}

/** Reads the page again soon: a job came or went, so its cursor may be stale. */
export function refreshJobsSoon(ms = 1000) {
  if (view.refreshTimer) return;
  view.refreshTimer = setTimeout(() => {
    view.refreshTimer = null;
    loadJobs();
  }, ms);
}

let jobsSearchTimer = null;
const applyJobFilters = () => {
  clearTimeout(jobsSearchTimer);
  readJobFilters();
  loadJobs();
};
jobsFilter.addEventListener('submit', (e) => {
  e.preventDefault();
  applyJobFilters();
});
for (const id of ['jobs-status', 'jobs-kind', 'jobs-owner', 'jobs-limit']) {
  $(id).addEventListener('change', applyJobFilters);
}
$('jobs-q').addEventListener('input', () => {
  clearTimeout(jobsSearchTimer);
  jobsSearchTimer = setTimeout(applyJobFilters, 300);
});
$('jobs-clear').addEventListener('click', () => {
  jobsFilter.reset();
  applyJobFilters();
});
const showNewest = () => {
  view.cursors = [null];
  loadJobs();
};
$('jobs-newest').addEventListener('click', showNewest);
$('jobs-newer').addEventListener('click', () => {
  if (view.cursors.length > 1) view.cursors.pop();
  loadJobs();
});
$('jobs-older').addEventListener('click', () => {
  if (!view.next) return;
  view.cursors.push(view.next);
  loadJobs();
});
$('jobs-new-show').addEventListener('click', () => {
  jobsFilter.reset();
  readJobFilters();
  loadJobs();
  $('jobs-title').focus();
});

/**
 * Puts a job the view does not show yet in its place, if it belongs to this page: it
 * matches the filters and sorts between the page's first and last job. Returns whether
 * the view shows it.
 */
export function placeInView(entry) {
  const { job } = entry;
  if (view.ids.includes(job.id)) return true;
  if (!matchesView(job)) return false;
  const shown = view.ids.map((id) => jobs.get(id)).filter(Boolean).map((e) => e.job);
  const last = shown[shown.length - 1];
  if (last && shown.length >= view.limit && listingOrder(job, last) > 0) return false;
  if (view.cursors.length > 1 && (!shown[0] || listingOrder(job, shown[0]) < 0)) {
    // Newer than this page: it is on the first page.
    view.unseen.add(job.id);
    renderNewNote();
    return false;
  }
  let at = shown.findIndex((other) => listingOrder(job, other) < 0);
  if (at < 0) at = shown.length;
  view.ids.splice(at, 0, job.id);
  if (view.ids.length > view.limit) {
    view.ids.length = view.limit;
    refreshJobsSoon(); // the page's cursor moved
  }
  return view.ids.includes(job.id);
}

// -- showing the view

export function renderJobs() {
  const els = [];
  for (const id of view.ids) {
    const entry = jobs.get(id);
    if (!entry) continue;
    renderJob(entry);
    els.push(entry.el);
  }
  // Rows stay in place (and keep their focus) unless they must move: the rows that go
  // are taken out first, so that those that stay are not moved around them.
  const keep = new Set(els);
  for (const child of [...jobsList.children]) if (!keep.has(child)) child.remove();
  let at = jobsList.firstElementChild;
  for (const el of els) {
    if (el === at) at = at.nextElementSibling;
    else jobsList.insertBefore(el, at);
  }
  while (at) {
    const next = at.nextElementSibling;
    at.remove();
    at = next;
  }
  const page = view.cursors.length;
  $('jobs-empty').hidden = els.length > 0;
  $('jobs-empty').textContent = filtered() || page > 1
    ? 'No jobs match these filters.'
    : 'No jobs yet. Start an export or an import above.';
  $('jobs-summary').textContent = els.length > 0
    ? `${n(els.length)} ${els.length === 1 ? 'job' : 'jobs'} on this page${filtered() ? ' (filtered)' : ''}`
    : '';
  $('jobs-page-info').textContent = `Page ${n(page)}`;
  $('jobs-newest').disabled = page <= 1;
  $('jobs-newer').disabled = page <= 1;
  $('jobs-older').disabled = !view.next;
  renderNewNote();
  evict();
}

function renderNewNote() {
  const count = view.unseen.size;
  $('jobs-new').hidden = count === 0;
  $('jobs-new-text').textContent =
    count === 1 ? '1 newer job is not shown.' : `${n(count)} newer jobs are not shown.`;
}

export function renderJob(entry) {
  const { job } = entry;
  if (!entry.el) {
    const el = template.content.firstElementChild.cloneNode(true);
    el.dataset.jobId = job.id;
    el.querySelector('.job-name').href = `#job/${job.id}`;
    el.querySelector('.job-cancel').addEventListener('click', () => cancelJob(entry, jobsReport));
    el.querySelector('.job-retry').addEventListener('click', () => retryJob(entry, jobsReport));
    const download = el.querySelector('.job-download');
    download.addEventListener('click', (e) => checkedDownload(e, entry, download, jobsReport));
    entry.el = el;
  }
  const el = entry.el;
  const status = job.status;
  const cancelling = (job.cancel_requested || entry.cancelAsked) && !TERMINAL.has(status);
  el.dataset.status = status;
  const name = jobName(job);
  const sid = shortId(job.id);
  const link = el.querySelector('.job-name');
  link.textContent = name;
  link.setAttribute('aria-label', `Details of ${name} ${sid}`);
  const by = showOwners() && job.created_by ? ` · by ${job.created_by}` : '';
  el.querySelector('.job-meta').textContent = `${jobScope(job)} · ${sid} · ${formatTime(job.created_at)}${by}`;

  const badge = el.querySelector('.job-status');
  badge.dataset.status = status;
  badge.textContent = cancelling ? 'cancelling' : status;

  const pct = renderProgress(el.querySelector('.progress'), job, `Progress of ${name} ${sid}`);
  el.querySelector('.job-numbers').textContent = numbersText(entry, pct);

  const cancel = el.querySelector('.job-cancel');
  cancel.hidden = TERMINAL.has(status);
  cancel.disabled = cancelling;
  cancel.textContent = cancelling ? 'Cancelling…' : 'Cancel';
  cancel.setAttribute('aria-label', `Cancel ${name} ${sid}`);

  const retry = el.querySelector('.job-retry');
  retry.hidden = !(status === 'failed' || status === 'cancelled');
  retry.setAttribute('aria-label', `Retry ${name} ${sid}`);

  const expired = isExpired(entry);
  el.querySelector('.job-expired').hidden = !expired;
  el.classList.toggle('job-is-expired', expired);
  renderDownload(el.querySelector('.job-download'), entry, `${name} ${sid}`);
  watchExpiry(entry);

  const error = el.querySelector('.job-error');
  const message = status === 'failed' ? job.error || `The ${isImport(job) ? 'import' : 'export'} failed.` : '';
  error.textContent = message ? `Error: ${message}` : '';
  error.title = message;
  error.hidden = !message;
}

/** A job started from a form but outside what the view shows: a note says so. */
export function showStarted(job) {
  if (view.ids.includes(job.id)) return;
  view.unseen.add(job.id);
  renderNewNote();
}

const jobsReport = (text) => showAlert($('jobs-message'), text);
