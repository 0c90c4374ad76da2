// The workers view, and the banner while no worker runs.

import { n, relativeTime, shortId } from './format.js';
import { $, announce } from './dom.js';
import { jobName } from './job.js';
import { jobs } from './jobs.js';
import { renderJob, view } from './jobs-list.js';
import { renderDetail } from './job-detail.js';
import { loadOptional } from './feature.js';

export const WORKERS_REFRESH_MS = 5000;
/** The live workers, as `GET /api/workers` last said; `known` once it has answered. */
export const workers = {
  view: 'workers',
  supported: true,
  known: false,
  list: [],
  lastSeen: null,
  liveAfter: 10,
  loading: false,
  bannerShown: false,
};

export const loadWorkers = () => loadOptional(workers, '/api/workers', takeWorkers);

/** What `GET /api/workers` said; `null` when this server has no such route. */
function takeWorkers(data) {
  if (!data) {
    workers.known = false;
    renderBanner();
    return;
  }
  const wasEmpty = workers.known && workers.list.length === 0;
  workers.known = true;
  workers.list = Array.isArray(data.workers) ? data.workers : [];
  workers.lastSeen = data.last_seen || null;
  if (Number.isFinite(data.live_after_secs)) workers.liveAfter = data.live_after_secs;
  renderWorkers();
  renderBanner();
  // Queued jobs say whether anything will take them.
  if (wasEmpty !== (workers.list.length === 0)) {
    for (const id of view.ids) {
      const entry = jobs.get(id);
      if (entry && entry.job.status === 'queued') renderJob(entry);
    }
    renderDetail();
  }
}

function busyCount(worker) {
  if (typeof worker.busy === 'number') return worker.busy;
  return Array.isArray(worker.running) ? worker.running.length : worker.busy ? 1 : 0;
}

function renderWorkers() {
  const list = [...workers.list].sort((a, b) =>
    `${a.node}/${a.pid}/${a.id}`.localeCompare(`${b.node}/${b.pid}/${b.id}`),
  );
  const rows = document.createDocumentFragment();
  let busy = 0;
  let slots = 0;
  for (const worker of list) {
    const running = Array.isArray(worker.running) ? worker.running : [];
    const count = busyCount(worker);
    busy += count;
    slots += worker.concurrency || 0;
    const tr = document.createElement('tr');
    tr.dataset.workerId = worker.id;
    tr.dataset.state = count > 0 ? 'busy' : 'idle';

    const who = document.createElement('td');
    who.className = 'worker-name';
    // The process's name is the one its attempts name as their worker.
    const node = document.createElement('span');
    node.textContent = worker.name || worker.node;
    const meta = document.createElement('span');
    meta.className = 'muted worker-meta';
    const host = worker.name && worker.name !== worker.node ? `${worker.node} · ` : '';
    meta.textContent = `${host}pid ${worker.pid} · queue ${worker.queue} · up ${relativeTime(worker.started_at, true)}`;
    who.append(node, meta);

    const state = document.createElement('td');
    state.className = 'worker-state';
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.dataset.status = count > 0 ? 'running' : 'idle';
    badge.textContent = count > 0 ? 'busy' : 'idle';
    const slotsText = document.createElement('span');
    slotsText.className = 'muted worker-slots';
    slotsText.textContent = ` ${n(count)} of ${n(worker.concurrency || 0)}`;
    state.append(badge, slotsText);

    const jobsCell = document.createElement('td');
    jobsCell.className = 'worker-jobs';
    jobsCell.dataset.label = 'Running';
    if (running.length === 0) {
      jobsCell.textContent = '—';
    } else {
      for (const id of running) {
        const link = document.createElement('a');
        link.href = `#job/${id}`;
        link.className = 'job-link';
        link.textContent = shortId(id);
        const known = jobs.get(id);
        link.setAttribute('aria-label', `Details of ${known ? jobName(known.job) : 'job'} ${shortId(id)}`);
        jobsCell.appendChild(link);
      }
    }

    const seen = document.createElement('td');
    seen.className = 'worker-seen';
    seen.dataset.label = 'Last seen';
    seen.textContent = relativeTime(worker.last_seen);
    seen.title = worker.last_seen || '';

    tr.append(who, state, jobsCell, seen);
    rows.appendChild(tr);
  }
  $('workers-body').replaceChildren(rows);
  $('workers-table').hidden = list.length === 0;
  $('workers-empty').hidden = list.length > 0;
  $('workers-summary').textContent = list.length === 0
    ? 'none running'
    : `${n(list.length)} ${list.length === 1 ? 'process' : 'processes'} · ${n(busy)} of ${n(slots)} slots busy`;
}

/** The banner while no worker is alive: queued jobs will wait. */
function renderBanner() {
  const show = workers.supported && workers.known && workers.list.length === 0;
  $('no-worker-banner').hidden = !show;
  $('no-worker-since').textContent = show && workers.lastSeen
    ? `The last one was seen ${relativeTime(workers.lastSeen)}.`
    : '';
  if (show !== workers.bannerShown) {
    workers.bannerShown = show;
    announce(show ? 'No worker is running: jobs will wait.' : 'A worker is running again.');
  }
}

$('workers-refresh').addEventListener('click', loadWorkers);
