// How the page writes numbers, sizes, durations, times and ids.

const numbers = new Intl.NumberFormat('en-US');
export const n = (v) => numbers.format(v);

export function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return '';
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${n(value)} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds % 60);
  if (minutes < 60) return `${minutes} min ${rest} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return sameDay ? time : `${date.toLocaleDateString()} ${time}`;
}

/** "12 s ago", "in 3 min"; with `bare`, only the span ("5 min"). */
export function relativeTime(iso, bare) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '';
  const secs = (Date.now() - t) / 1000;
  const a = Math.abs(secs);
  let span;
  if (a < 60) span = `${Math.max(1, Math.round(a))} s`;
  else if (a < 3600) span = `${Math.round(a / 60)} min`;
  else if (a < 2 * 86400) span = `${Math.round(a / 3600)} h`;
  else span = `${Math.round(a / 86400)} days`;
  if (bare) return span;
  if (a < 2) return 'just now';
  return secs >= 0 ? `${span} ago` : `in ${span}`;
}

export function seconds(from, to) {
  const a = Date.parse(from);
  const b = Date.parse(to);
  return Number.isFinite(a) && Number.isFinite(b) ? (b - a) / 1000 : NaN;
}

export const shortId = (id) => id.slice(0, 8);
