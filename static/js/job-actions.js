// Acting on a job: cancel, retry, delete, and a download checked first.

import { shortId } from './format.js';
import { announce } from './dom.js';
import { api, ApiError } from './api.js';
import { showSignIn } from './signin.js';
import { jobName } from './job.js';
import { changed, forgetJob, upsertJob } from './jobs.js';

export async function cancelJob(entry, report) {
  entry.cancelAsked = true;
  changed(entry);
  try {
    const job = await api('POST', `/api/jobs/${encodeURIComponent(entry.job.id)}/cancel`);
    if (job && job.id) upsertJob(job, false);
    announce(`Cancelling ${jobName(entry.job)}.`);
  } catch (err) {
    entry.cancelAsked = false;
    changed(entry);
    // 409: it has already ended, and its status event says how.
    if (err.status !== 409) report(`Could not cancel ${jobName(entry.job)} ${shortId(entry.job.id)}: ${err.message}`);
  }
}

export async function retryJob(entry, report) {
  try {
    const job = await api('POST', `/api/jobs/${encodeURIComponent(entry.job.id)}/retry`);
    entry.goneFile = null;
    upsertJob(job, true);
    announce(`${jobName(job)} is back in the queue.`);
    return true;
  } catch (err) {
    report(`Could not retry ${jobName(entry.job)} ${shortId(entry.job.id)}: ${err.message}`);
    return false;
  }
}

export async function deleteJob(entry, report) {
  const { id } = entry.job;
  try {
    await api('DELETE', `/api/jobs/${encodeURIComponent(id)}`);
  } catch (err) {
    if (err.status !== 404) {
      report(`Could not delete ${jobName(entry.job)} ${shortId(id)}: ${err.message}`);
      return false;
    }
  }
  announce(`${jobName(entry.job)} ${shortId(id)} deleted.`);
  forgetJob(id);
  return true;
}

/**
 * Follows a download link only once the server has said the file is there (a one-byte
 * range): an expired file (410) is a message and an "Expired" mark, not a browser
 * download of an error.
 */
export async function checkedDownload(e, entry, link, report) {
  if (link.dataset.checked === 'yes') {
    delete link.dataset.checked;
    return;
  }
  e.preventDefault();
  const what = `${jobName(entry.job)} ${shortId(entry.job.id)}`;
  let res;
  try {
    res = await fetch(link.href, { headers: { Range: 'bytes=0-0' } });
  } catch (_) {
    report('The server cannot be reached. Try again in a moment.');
    return;
  }
  // 416: the file is there but empty (a rejects report with no rejected row).
  if (res.ok || res.status === 416) {
    if (res.body) res.body.cancel().catch(() => {});
    report('');
    link.dataset.checked = 'yes';
    link.click();
    return;
  }
  let body = null;
  try {
    body = await res.json();
  } catch (_) {
    body = null;
  }
  const err = new ApiError(res.status, body);
  if (res.status === 401) showSignIn();
  if (res.status === 410) {
    entry.goneFile = entry.job.result && entry.job.result.file;
    changed(entry);
    report(`The file of ${what} has expired (${err.message}). Start the export again for a fresh one.`);
    return;
  }
  report(`Could not download ${what}: ${err.message}`);
}
