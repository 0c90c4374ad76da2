// The live connection: one WebSocket to /ws (`{"subscribe":"*"}`), its state on the page,
// reconnecting by itself with a growing delay and catching up when it is back.

import { $, announce } from './dom.js';
import { loadStudents } from './students.js';
import { applyProgress, applyStatus, upsertJob } from './jobs.js';
import { jobsList, loadJobs } from './jobs-list.js';
import { detail, loadDetail } from './job-detail.js';
import { loadWorkers } from './workers.js';
import { loadStats } from './activity.js';

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10000;
let socket = null;
let delay = RECONNECT_MIN_MS;
let retryTimer = null;
let countdownTimer = null;
let everConnected = false;
let lostSince = null;

function setConnection(state, text) {
  const box = $('connection');
  box.dataset.state = state;
  $('connection-text').textContent = text;
  $('reconnect-now').hidden = state !== 'disconnected';
  const stale = state !== 'connected';
  jobsList.classList.toggle('stale', stale && everConnected);
  $('jobs-stale').hidden = !(stale && everConnected);
}

export function connect() {
  clearTimeout(retryTimer);
  clearInterval(countdownTimer);
  retryTimer = null;
  setConnection('connecting', everConnected ? 'Reconnecting…' : 'Connecting…');
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  let ws;
  try {
    ws = new WebSocket(`${scheme}//${location.host}/ws`);
  } catch (_) {
    scheduleReconnect();
    return;
  }
  socket = ws;
  ws.addEventListener('open', () => {
    if (socket !== ws) return;
    delay = RECONNECT_MIN_MS;
    ws.send(JSON.stringify({ subscribe: '*' }));
    const wasLost = lostSince !== null;
    everConnected = true;
    lostSince = null;
    setConnection('connected', 'Connected · live');
    if (wasLost) {
      announce('Connection restored.');
      loadStudents();
      loadJobs();
      loadWorkers();
      loadStats();
      if (detail.id) loadDetail();
    }
  });
  ws.addEventListener('message', (e) => {
    if (socket !== ws) return;
    let event;
    try {
      event = JSON.parse(e.data);
    } catch (_) {
      return;
    }
    handleEvent(event);
  });
  ws.addEventListener('close', () => {
    if (socket !== ws) return;
    socket = null;
    if (everConnected && lostSince === null) {
      lostSince = Date.now();
      announce('Connection lost. Reconnecting.');
    }
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  const wait = delay;
  delay = Math.min(delay * 2, RECONNECT_MAX_MS);
  const due = Date.now() + wait;
  const tick = () => {
    const left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
    setConnection('disconnected', `Disconnected · retrying in ${left} s`);
  };
  tick();
  countdownTimer = setInterval(tick, 250);
  retryTimer = setTimeout(connect, wait);
}

function handleEvent(event) {
  switch (event.type) {
    case 'snapshot':
      if (event.job) upsertJob(event.job, true);
      break;
    case 'progress':
      applyProgress(event);
      break;
    case 'status':
      applyStatus(event);
      break;
    case 'error':
      console.warn('roster websocket:', event.code, event.message);
      break;
    default:
      break;
  }
}

$('reconnect-now').addEventListener('click', () => {
  delay = RECONNECT_MIN_MS;
  connect();
});
window.addEventListener('online', () => {
  if (!socket) {
    delay = RECONNECT_MIN_MS;
    connect();
  }
});
