// The schedules view.

import { formatTime } from './format.js';
import { $ } from './dom.js';
import { api } from './api.js';

export const SCHEDULES_REFRESH_MS = 30_000;

export async function loadSchedules() {
  let items;
  try {
    items = (await api('GET', '/api/schedules')).items;
  } catch (_) {
    return; // shown again on the next refresh
  }
  const body = $('schedules-body');
  const rows = document.createDocumentFragment();
  for (const schedule of items) {
    const tr = document.createElement('tr');
    const name = document.createElement('td');
    name.textContent = schedule.name;
    const kind = document.createElement('span');
    kind.className = 'muted';
    kind.textContent = ` · ${schedule.kind === 'students_by_age' ? 'export' : schedule.kind}`;
    name.appendChild(kind);
    const when = document.createElement('td');
    when.textContent = `${schedule.cron} (${schedule.timezone})`;
    const next = document.createElement('td');
    next.textContent = schedule.enabled ? formatTime(schedule.next_fire_at) : 'paused';
    tr.append(name, when, next);
    rows.appendChild(tr);
  }
  body.replaceChildren(rows);
  $('schedules-table').hidden = items.length === 0;
  $('schedules-empty').hidden = items.length > 0;
}
