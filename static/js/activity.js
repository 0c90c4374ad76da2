// The activity view: the last hour's numbers and charts (uPlot, a classic script
// loaded before the modules, as `window.uPlot`).

import { formatDuration, formatTime, n } from './format.js';
import { $ } from './dom.js';
import { loadOptional } from './feature.js';

export const STATS_REFRESH_MS = 15_000;
const CHART_HEIGHT = 190;
const COLOURS = {
  succeeded: '#1d7a46',
  failed: '#b42318',
  cancelled: '#c9a24a',
  p50: '#2450c8',
  p95: '#7a3cc8',
  depth: '#5b6675',
};
const stats = { view: 'activity', supported: true, charts: {}, own: [], loading: false };

export const loadStats = () => loadOptional(stats, '/api/stats?minutes=60', (data) => data && renderStats(data));

const sum = (series, key) => series.reduce((total, minute) => total + (minute[key] || 0), 0);

function formatWait(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  return ms < 1000 ? `${Math.round(ms)} ms` : formatDuration(ms / 1000);
}

function renderStats(data) {
  const series = Array.isArray(data.series) ? data.series : [];
  $('stat-queue').textContent = n(data.queue_depth || 0);
  $('stat-running').textContent = n(data.running || 0);
  $('stat-succeeded').textContent = n(sum(series, 'succeeded'));
  $('stat-failed').textContent = n(sum(series, 'failed'));
  const waits = series.map((m) => m.wait_p95_ms).filter((v) => v !== null && v !== undefined);
  $('stat-wait').textContent = formatWait(waits.length ? waits[waits.length - 1] : null);
  $('activity-updated').textContent = `updated ${formatTime(data.now || new Date().toISOString())}`;

  const x = series.map((m) => Math.round(Date.parse(m.minute) / 1000));
  const ok = series.map((m) => m.succeeded || 0);
  const failed = series.map((m) => m.failed || 0);
  const cancelled = series.map((m) => m.cancelled || 0);
  const p50 = series.map((m) => (m.wait_p50_ms == null ? null : m.wait_p50_ms / 1000));
  const p95 = series.map((m) => (m.wait_p95_ms == null ? null : m.wait_p95_ms / 1000));
  const depth = series.map((m) => m.queue_depth || 0);

  const ended = sum(series, 'succeeded') + sum(series, 'failed') + sum(series, 'cancelled');
  $('chart-throughput-text').textContent =
    `In the last ${n(data.minutes || series.length)} minutes: ${n(sum(series, 'succeeded'))} succeeded, ` +
    `${n(sum(series, 'failed'))} failed, ${n(sum(series, 'cancelled'))} cancelled.`;
  $('chart-wait-text').textContent =
    `Queue wait p95 now ${formatWait(waits.length ? waits[waits.length - 1] : null)}; ` +
    `queue depth ${n(data.queue_depth || 0)}.`;

  if (typeof window.uPlot !== 'function') {
    // The charting library did not load: the numbers above still say it.
    for (const box of document.querySelectorAll('.chart')) box.hidden = true;
    return;
  }
  // Stacked bars: each series is drawn over the one before, so the top of each bar is
  // the sum so far; the legend shows each series' own number.
  const stacked = [
    ok.map((v, i) => v + failed[i] + cancelled[i]),
    ok.map((v, i) => v + failed[i]),
    ok,
  ];
  stats.own = [cancelled, failed, ok];
  drawChart('throughput', [x, ...stacked], () => ({
    scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    axes: [{}, { label: 'jobs', size: 44 }],
    series: [
      {},
      ...['cancelled', 'failed', 'succeeded'].map((name, s) => ({
        label: name[0].toUpperCase() + name.slice(1),
        stroke: COLOURS[name],
        fill: COLOURS[name],
        width: 0,
        paths: window.uPlot.paths.bars({ size: [0.7, 24] }),
        points: { show: false },
        value: (u, v, si, i) => (i == null ? '–' : n(stats.own[s][i])),
      })),
    ],
  }));
  $('chart-throughput').dataset.ended = String(ended);
  drawChart('wait', [x, p50, p95, depth], () => ({
    // Waits of milliseconds still show: the scale follows the largest one.
    scales: { s: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] }, n: { range: (u, min, max) => [0, Math.max(1, max)] } },
    axes: [
      {},
      { scale: 's', label: 'wait, s', size: 50 },
      { scale: 'n', side: 1, label: 'queued', size: 44, grid: { show: false } },
    ],
    series: [
      {},
      // Points as well as lines: a minute alone between gaps is still seen.
      { label: 'Wait p50', scale: 's', stroke: COLOURS.p50, width: 2, points: { show: true, size: 5 }, value: (u, v) => (v == null ? '–' : formatWait(v * 1000)) },
      { label: 'Wait p95', scale: 's', stroke: COLOURS.p95, width: 2, points: { show: true, size: 5 }, value: (u, v) => (v == null ? '–' : formatWait(v * 1000)) },
      { label: 'Queued', scale: 'n', stroke: COLOURS.depth, width: 1.5, dash: [4, 3], value: (u, v) => (v == null ? '–' : n(v)) },
    ],
  }));
  $('chart-wait').dataset.waits = String(waits.length);
}

/** Draws (or updates) one chart; it follows its box's width. */
function drawChart(name, data, options) {
  const box = $(`chart-${name}`);
  const existing = stats.charts[name];
  if (existing) {
    existing.setData(data);
    return;
  }
  const width = Math.max(200, box.clientWidth);
  const chart = new window.uPlot({ width, height: CHART_HEIGHT, legend: { live: true }, ...options() }, data, box);
  stats.charts[name] = chart;
  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(() => {
      const w = Math.max(200, box.clientWidth);
      if (w !== chart.width) chart.setSize({ width: w, height: CHART_HEIGHT });
    }).observe(box);
  }
}
