// roster: the one page. Students through the REST API; every job live through /ws.
// Plain ES modules with no build step and nothing fetched from elsewhere: this is the
// entry, the rest are imported from it.

import { whoAmI } from './signin.js';
import { loadStudents, readFilters } from './students.js';
import { loadJobs, readJobFilters } from './jobs-list.js';
import { routeHash } from './job-detail.js';
import { loadSchedules, SCHEDULES_REFRESH_MS } from './schedules.js';
import { loadWorkers, WORKERS_REFRESH_MS } from './workers.js';
import { loadStats, STATS_REFRESH_MS } from './activity.js';
import { connect } from './live.js';
import './job-forms.js';

/** The page sizes both lists offer (25 chosen at first). */
const PAGE_SIZES = [10, 25, 50, 100];
for (const select of document.querySelectorAll('select[data-page-sizes]')) {
  for (const size of PAGE_SIZES) select.add(new Option(String(size), String(size), size === 25, size === 25));
}

/** Runs `load` every `ms` while the page is visible, and at once when it shows again. */
function poll(load, ms) {
  load();
  setInterval(() => {
    if (document.visibilityState === 'visible') load();
  }, ms);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') load();
  });
}

whoAmI().then((signedIn) => {
  if (!signedIn) return;
  readFilters();
  loadStudents();
  readJobFilters();
  loadJobs();
  loadSchedules();
  setInterval(loadSchedules, SCHEDULES_REFRESH_MS);
  poll(loadWorkers, WORKERS_REFRESH_MS);
  poll(loadStats, STATS_REFRESH_MS);
  connect();
  routeHash();
});
