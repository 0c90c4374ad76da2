// What the jobs view and a job's detail both show: progress, download, expiry, numbers.

import { formatBytes, formatDuration, n, seconds } from './format.js';
import { attemptsText, isExpired, isImport, rate, timedOut } from './job.js';
import { changed } from './jobs.js';
import { workers } from './workers.js';

/** Fills a progress bar from the job; returns the percentage. */
export function renderProgress(bar, job, label) {
  const { done, total } = job.progress || { done: 0, total: 0 };
  let pct = total > 0 ? (done / total) * 100 : 0;
  if (job.status === 'succeeded') pct = 100;
  pct = Math.min(100, Math.max(0, pct));
  bar.setAttribute('aria-valuenow', String(Math.floor(pct)));
  bar.setAttribute(
    'aria-valuetext',
    total > 0 ? `${n(done)} of ${n(total)} rows, ${Math.floor(pct)}%` : `${Math.floor(pct)}%`,
  );
  bar.setAttribute('aria-label', label);
  bar.dataset.status = job.status;
  bar.querySelector('.progress-fill').style.width = `${pct}%`;
  return pct;
}

/** A download link, shown only while there is a file to get. */
export function renderDownload(link, entry, what) {
  const { job } = entry;
  const result = job.result;
  // An import's download is its rejects report (also when it failed because of them).
  const has = Boolean(result && result.file) && (job.status === 'succeeded' || isImport(job));
  link.hidden = !has || isExpired(entry);
  if (link.hidden) {
    link.removeAttribute('href');
    return;
  }
  link.href = `/api/jobs/${encodeURIComponent(job.id)}/download`;
  // The server names the download (Content-Disposition); result.file is internal.
  link.setAttribute('download', '');
  link.textContent = isImport(job) ? 'Rejected rows' : 'Download';
  link.setAttribute('aria-label', `Download ${isImport(job) ? 'the rejected rows of ' : ''}${what}`);
}

/** Shows the job as expired the moment its file expires. */
export function watchExpiry(entry) {
  const result = entry.job.result;
  const at = result && result.file && result.expires_at ? Date.parse(result.expires_at) : NaN;
  if (entry.expiryAt === at) return;
  clearTimeout(entry.expiryTimer);
  entry.expiryAt = at;
  const wait = at - Date.now();
  if (!(wait > 0) || wait > 2 ** 31 - 1) return;
  entry.expiryTimer = setTimeout(() => changed(entry), wait + 50);
}

export function numbersText(entry, pct) {
  const { job } = entry;
  const { done, total } = job.progress || { done: 0, total: 0 };
  switch (job.status) {
    case 'queued': {
      const next = job.attempts > 0 ? ` · attempt ${job.attempts + 1} of ${job.max_attempts}` : '';
      if (workers.known && workers.list.length === 0) return `Queued · no worker is running${next}`;
      const due = Date.parse(job.run_after) - Date.now();
      if (job.attempts > 0 && due > 1000) return `Retrying in ${formatDuration(due / 1000)}${next}`;
      return `Waiting for a worker${next}`;
    }
    case 'running': {
      const parts = [total > 0 ? `${n(done)} / ${n(total)} rows · ${Math.floor(pct)}%` : 'Starting…'];
      const r = rate(entry);
      if (Number.isFinite(r) && r > 0) {
        parts.push(`${n(Math.round(r))} rows/s`);
        if (total > done) parts.push(`${formatDuration((total - done) / r)} left`);
      }
      if (job.attempts > 1) parts.push(`attempt ${job.attempts} of ${job.max_attempts}`);
      return parts.join(' · ');
    }
    case 'succeeded': {
      const result = job.result || {};
      if (isImport(job)) {
        const parts = [`${n(result.inserted || 0)} added`];
        if (result.rejected > 0) parts.push(`${n(result.rejected)} rejected`);
        if (result.resumed_rows > 0) parts.push(`resumed after ${n(result.resumed_rows)}`);
        const took = seconds(job.started_at, job.finished_at);
        if (Number.isFinite(took)) parts.push(`in ${formatDuration(took)}`);
        return parts.join(' · ');
      }
      const rows = result.rows != null ? result.rows : done;
      const parts = [`${n(rows)} rows`];
      if (result.bytes != null) parts.push(formatBytes(result.bytes));
      if (result.resumed_rows > 0) parts.push(`resumed after ${n(result.resumed_rows)}`);
      const took = seconds(job.started_at, job.finished_at);
      if (Number.isFinite(took)) {
        parts.push(`in ${formatDuration(took)}`);
        if (took > 0 && rows > 0) parts.push(`${n(Math.round(rows / took))} rows/s`);
      }
      return parts.join(' · ');
    }
    case 'cancelled':
      return total > 0 ? `Stopped at ${n(done)} / ${n(total)} rows` : 'Cancelled before it started';
    case 'failed':
      // A time limit and a refusal are final; only other errors use up the attempts.
      if (timedOut(job)) return `Timed out · ${attemptsText(job)}, not retried`;
      if (job.attempts < job.max_attempts) return `Failed · ${attemptsText(job)}, not retried`;
      return `Failed · ${attemptsText(job)}, all used`;
    default:
      return '';
  }
}
