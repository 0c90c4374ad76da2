// A job's detail: the dialog at `#job/<id>`, its fields, attempts and timeline.

import {
  formatBytes,
  formatDuration,
  formatTime,
  n,
  relativeTime,
  seconds,
  shortId,
} from './format.js';
import { $, showAlert } from './dom.js';
import { api } from './api.js';
import { isExpired, isImport, jobName, TERMINAL } from './job.js';
import { jobs, upsertJob } from './jobs.js';
import { jobsList } from './jobs-list.js';
import { numbersText, renderDownload, renderProgress } from './job-show.js';
import { cancelJob, checkedDownload, deleteJob, retryJob } from './job-actions.js';

const JOB_HASH = /^#job\/([0-9a-fA-F-]{36})$/;
const dialog = $('job-detail');
/** The job whose detail is open, its attempts and the live events seen meanwhile. */
export const detail = {
  id: null,
  opener: null,
  attempts: [],
  live: [],
  missing: false,
  request: 0,
  attemptsTimer: null,
};
const MAX_LIVE_EVENTS = 50;

function openDetail(id, opener) {
  const same = detail.id === id.toLowerCase() && dialog.open;
  if (!same) {
    detail.id = id.toLowerCase();
    detail.attempts = [];
    detail.live = [];
    detail.missing = false;
    detail.opener = opener || document.activeElement;
    $('detail-confirm').hidden = true;
    showAlert($('detail-message'), '');
    setDetailNote('');
  }
  if (!dialog.open) dialog.showModal();
  renderDetail();
  loadDetail();
  if (!same) $('detail-close').focus();
}

function closeDetail() {
  if (dialog.open) dialog.close();
}

dialog.addEventListener('close', () => {
  const closed = detail.id;
  detail.id = null;
  clearTimeout(detail.attemptsTimer);
  if (JOB_HASH.test(location.hash)) {
    history.replaceState(null, '', `${location.pathname}${location.search}`);
  }
  // The focus goes back where it was, else to the job's row, else to the jobs' heading.
  const row = jobsList.querySelector(`li[data-job-id="${closed}"] .job-name`);
  const back = [detail.opener, row].find((el) => el && el.isConnected && el !== document.body);
  detail.opener = null;
  (back || $('jobs-title')).focus();
});
// A click on the backdrop (outside the dialog's box) closes it too.
dialog.addEventListener('click', (e) => {
  if (e.target === dialog) {
    const box = dialog.getBoundingClientRect();
    const inside = e.clientX >= box.left && e.clientX <= box.right && e.clientY >= box.top && e.clientY <= box.bottom;
    if (!inside) closeDetail();
  }
});
$('detail-close').addEventListener('click', closeDetail);

/** `#job/<id>` opens that job's detail: links, reloads and shared addresses alike. */
export function routeHash() {
  const m = JOB_HASH.exec(location.hash);
  if (m) openDetail(m[1], document.activeElement);
  else if (dialog.open) closeDetail(); // back from #job/<id>
}
window.addEventListener('hashchange', routeHash);

export async function loadDetail() {
  const { id } = detail;
  const ticket = ++detail.request;
  try {
    const [job, attempts] = await Promise.all([
      api('GET', `/api/jobs/${encodeURIComponent(id)}`),
      api('GET', `/api/jobs/${encodeURIComponent(id)}/attempts`),
    ]);
    if (ticket !== detail.request || detail.id !== id) return;
    detail.attempts = attempts.items || [];
    detail.missing = false;
    upsertJob(job, true);
  } catch (err) {
    if (ticket !== detail.request || detail.id !== id) return;
    if (err.status === 404) detail.missing = true;
    else showAlert($('detail-message'), `Could not load the job: ${err.message}`);
  }
  renderDetail();
}

/** Reads the attempts again shortly after a status change (one read for a burst). */
export function loadAttemptsSoon() {
  clearTimeout(detail.attemptsTimer);
  const { id } = detail;
  detail.attemptsTimer = setTimeout(async () => {
    try {
      const attempts = await api('GET', `/api/jobs/${encodeURIComponent(id)}/attempts`);
      if (detail.id !== id) return;
      detail.attempts = attempts.items || [];
      renderDetail();
    } catch (_) {
      // The next status change reads them again.
    }
  }, 300);
}

/** A live event seen while the detail is open; progress events replace each other. */
export function noteLive(event, seq) {
  const last = detail.live[detail.live.length - 1];
  const item = { t: new Date(), text: event.text, progress: Boolean(event.progress), seq, live: true };
  if (last && last.progress && item.progress) detail.live[detail.live.length - 1] = item;
  else detail.live.push(item);
  if (detail.live.length > MAX_LIVE_EVENTS) detail.live.shift();
}

function setDetailNote(text) {
  const note = $('detail-note');
  note.textContent = text;
  note.hidden = !text;
}

const detailReport = (text) => showAlert($('detail-message'), text);

const detailEntry = () => (detail.id ? jobs.get(detail.id) : null);

$('detail-retry').addEventListener('click', async () => {
  const entry = detailEntry();
  if (!entry) return;
  showAlert($('detail-message'), '');
  if (await retryJob(entry, detailReport)) {
    setDetailNote('Back in the queue with a fresh set of attempts.');
    detail.live.push({ t: new Date(), text: 'Retried from this page', live: true });
    loadAttemptsSoon();
    renderDetail();
  }
});
$('detail-cancel').addEventListener('click', () => {
  const entry = detailEntry();
  if (entry) cancelJob(entry, detailReport);
});
$('detail-delete').addEventListener('click', () => {
  $('detail-confirm').hidden = false;
  renderDetail();
  $('detail-delete-no').focus();
});
$('detail-delete-no').addEventListener('click', () => {
  $('detail-confirm').hidden = true;
  renderDetail();
  $('detail-delete').focus();
});
$('detail-delete-yes').addEventListener('click', async () => {
  const entry = detailEntry();
  if (!entry) return;
  if (await deleteJob(entry, detailReport)) {
    closeDetail();
  } else {
    $('detail-confirm').hidden = true;
    renderDetail();
  }
});
$('detail-download').addEventListener('click', (e) => {
  const entry = detailEntry();
  if (entry) checkedDownload(e, entry, $('detail-download'), detailReport);
  else e.preventDefault();
});

const OUTCOMES = {
  succeeded: 'succeeded',
  failed: 'failed',
  cancelled: 'was cancelled',
  retry: 'failed; to be tried again',
  released: 'was handed back at shutdown (not counted)',
  lost: 'lost its worker (the lease expired)',
};

export function renderDetail() {
  if (!detail.id) return;
  const entry = detailEntry();
  const missing = $('detail-missing');
  $('detail-body').hidden = detail.missing || !entry;
  missing.hidden = !(detail.missing || !entry);
  $('detail-id').textContent = detail.id;
  if (detail.missing) {
    $('detail-title').textContent = 'No such job';
    missing.textContent = 'There is no job with this id: it was deleted, or it is not yours to see.';
    return;
  }
  if (!entry) {
    $('detail-title').textContent = 'Job';
    missing.textContent = 'Loading…';
    return;
  }
  const { job } = entry;
  const status = job.status;
  const name = jobName(job);
  const cancelling = (job.cancel_requested || entry.cancelAsked) && !TERMINAL.has(status);
  $('detail-title').textContent = name;
  // "Back in the queue" holds until the job runs again.
  if (status !== 'queued') setDetailNote('');
  const badge = $('detail-badge');
  badge.dataset.status = status;
  badge.textContent = cancelling ? 'cancelling' : status;
  const pct = renderProgress($('detail-progress'), job, `Progress of ${name} ${shortId(job.id)}`);
  const expired = isExpired(entry);
  $('detail-numbers').textContent = numbersText(entry, pct) + (expired ? ' · file expired' : '');
  const error = $('detail-error');
  error.textContent = status === 'failed' && job.error ? `Error: ${job.error}` : '';
  error.hidden = !error.textContent;

  const confirming = !$('detail-confirm').hidden;
  $('detail-retry').hidden = !(status === 'failed' || status === 'cancelled');
  $('detail-cancel').hidden = TERMINAL.has(status);
  $('detail-cancel').disabled = cancelling;
  $('detail-cancel').textContent = cancelling ? 'Cancelling…' : 'Cancel job';
  $('detail-delete').hidden = !TERMINAL.has(status) || confirming;
  if (!TERMINAL.has(status)) $('detail-confirm').hidden = true;
  const download = $('detail-download');
  renderDownload(download, entry, `${name} ${shortId(job.id)}`);
  if (!download.hidden && isImport(job)) download.textContent = 'Download rejected rows';

  renderDetailFields(entry, expired);
  renderAttempts();
  renderTimeline(job);
}

function field(list, term, value, className) {
  if (value === null || value === undefined || value === '') return;
  const dt = document.createElement('dt');
  dt.textContent = term;
  const dd = document.createElement('dd');
  if (className) dd.className = className;
  if (value instanceof Node) dd.appendChild(value);
  else dd.textContent = String(value);
  list.append(dt, dd);
}

function when(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const time = document.createElement('time');
  time.dateTime = iso;
  time.title = iso;
  time.textContent = `${date.toLocaleString()} (${relativeTime(iso)})`;
  return time;
}

function plainValue(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'object') return JSON.stringify(value);
  return typeof value === 'number' ? n(value) : String(value);
}

function keyValues(object, format) {
  const entries = Object.entries(object || {});
  if (entries.length === 0) return '—';
  const list = document.createElement('ul');
  list.className = 'key-values';
  for (const [key, value] of entries) {
    const li = document.createElement('li');
    const k = document.createElement('span');
    k.className = 'muted';
    k.textContent = `${key}: `;
    const v = document.createElement('span');
    v.textContent = format(key, value);
    li.append(k, v);
    list.appendChild(li);
  }
  return list;
}

function renderDetailFields(entry, expired) {
  const { job } = entry;
  const list = $('detail-fields');
  list.replaceChildren();
  field(list, 'Kind', `${job.kind} (${isImport(job) ? 'import' : 'export'})`);
  field(list, 'Parameters', keyValues(job.params, (key, value) => (key === 'bytes' ? formatBytes(value) : plainValue(value))));
  field(list, 'Status', job.status + (job.cancel_requested && !TERMINAL.has(job.status) ? ' (cancel requested)' : ''));
  const { done, total } = job.progress || { done: 0, total: 0 };
  field(list, 'Progress', `${n(done)} of ${n(total)} rows`);
  field(list, 'Attempts', `${n(job.attempts)} of ${n(job.max_attempts)}`);
  field(list, 'Created by', job.created_by || '—');
  if (job.schedule_id) field(list, 'Schedule', job.schedule_id);
  field(list, 'Created', when(job.created_at));
  if (job.status === 'queued' && Date.parse(job.run_after) > Date.now()) field(list, 'Runs after', when(job.run_after));
  field(list, 'Started', when(job.started_at));
  field(list, 'Finished', when(job.finished_at));
  field(list, 'Sequence', n(job.seq));
  field(list, 'Error', job.error, 'detail-error-text');
  if (job.result) {
    const result = keyValues(job.result, (key, value) => {
      if (key === 'bytes') return `${formatBytes(value)} (${n(value)} bytes)`;
      if (key === 'expires_at') {
        return `${new Date(value).toLocaleString()} (${expired ? 'expired' : 'expires'} ${relativeTime(value)})`;
      }
      return plainValue(value);
    });
    field(list, 'Result', result);
  }
  if (expired) field(list, 'File', 'Expired: it can no longer be downloaded.', 'detail-expired');
}

function renderAttempts() {
  const body = $('detail-attempts-body');
  const rows = document.createDocumentFragment();
  for (const attempt of detail.attempts) {
    const tr = document.createElement('tr');
    tr.dataset.outcome = attempt.outcome || 'running';
    const cells = [
      String(attempt.number),
      attempt.worker,
      formatTime(attempt.started_at),
      attempt.ended_at
        ? `${formatTime(attempt.ended_at)} (${formatDuration(seconds(attempt.started_at, attempt.ended_at))})`
        : '—',
      (attempt.outcome || 'running') +
        (attempt.resumed_from != null ? ` · resumed after ${n(attempt.resumed_from)} rows` : ''),
      attempt.error || '',
    ];
    const labels = ['#', 'Worker', 'Started', 'Ended', 'Outcome', 'Error'];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      td.dataset.label = labels[i];
      td.className = `attempt-${labels[i].replace('#', 'number').toLowerCase()}`;
      tr.appendChild(td);
    });
    rows.appendChild(tr);
  }
  body.replaceChildren(rows);
  $('detail-attempts').hidden = detail.attempts.length === 0;
  $('detail-attempts-empty').hidden = detail.attempts.length > 0;
}

/** The job's story: from its timestamps and attempts, then what was heard live. */
function renderTimeline(job) {
  const items = [];
  const at = (iso) => (iso ? new Date(iso) : null);
  items.push({ t: at(job.created_at), text: `Created${job.created_by ? ` by ${job.created_by}` : ''}${job.schedule_id ? ' by its schedule' : ''}` });
  for (const attempt of detail.attempts) {
    const resumed = attempt.resumed_from != null ? `, resuming after ${n(attempt.resumed_from)} rows` : '';
    items.push({ t: at(attempt.started_at), text: `Attempt ${attempt.number} started on ${attempt.worker}${resumed}` });
    if (attempt.ended_at) {
      const outcome = OUTCOMES[attempt.outcome] || attempt.outcome || 'ended';
      items.push({
        t: at(attempt.ended_at),
        text: `Attempt ${attempt.number} ${outcome}${attempt.error ? `: ${attempt.error}` : ''}`,
        outcome: attempt.outcome,
      });
    }
  }
  if (job.cancel_requested && !TERMINAL.has(job.status)) items.push({ t: null, text: 'Cancel requested' });
  if (job.status === 'queued' && job.attempts > 0 && Date.parse(job.run_after) > Date.now()) {
    items.push({ t: at(job.run_after), text: `Attempt ${job.attempts + 1} due` });
  }
  if (job.finished_at) {
    items.push({ t: at(job.finished_at), text: `Ended ${job.status}`, outcome: job.status });
  }
  const timeline = items.concat(detail.live);
  // In time order; what has no time (a request not yet acted on) last.
  const key = (item) => (item.t ? item.t.getTime() : Infinity);
  timeline.sort((a, b) => key(a) - key(b));
  const list = $('detail-timeline');
  const rows = document.createDocumentFragment();
  for (const item of timeline) {
    const li = document.createElement('li');
    if (item.live) li.classList.add('timeline-live');
    if (item.outcome) li.dataset.outcome = item.outcome;
    const time = document.createElement('span');
    time.className = 'timeline-time';
    time.textContent = item.t ? formatTime(item.t.toISOString()) : 'now';
    const text = document.createElement('span');
    text.className = 'timeline-text';
    text.textContent = item.text + (item.live ? ' (live)' : '');
    li.append(time, text);
    rows.appendChild(li);
  }
  list.replaceChildren(rows);
}
