// Drives the roster page in headless Chromium against the real binary.
//
// It seeds a fresh SQLite database, starts `roster serve` on a free port, and then does
// what a person would: adds, corrects, edits and deletes students, starts exports and
// watches them live, downloads one, imports a file, cancels one, sees a schedule, and restarts the server under the page
// to see it reconnect. Screenshots of every step go to tests/artifacts/browser/.
//
// Environment: ROSTER_BIN (default target/debug/roster), CHROMIUM (default
// /usr/bin/chromium), ROSTER_TEST_STUDENTS (default 300000).
// Prints `N passed, N failed` at the end and exits non-zero on any failure.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.resolve(process.env.ROSTER_BIN || path.join(ROOT, 'target', 'debug', 'roster'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const STUDENTS = Number(process.env.ROSTER_TEST_STUDENTS || 300000);
const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts', 'browser');
/** The whole run, whatever happens. */
const OVERALL_LIMIT_MS = 5 * 60 * 1000;
/** One wait for something on the page. */
const WAIT_MS = 20_000;
/** One export of every student. */
const EXPORT_MS = 90_000;

const started = Date.now();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roster-browser-'));
const serverLog = path.join(tmp, 'server.log');
let server = null;
let context = null;
let page = null;
let shotNumber = 0;
const results = [];
const pageErrors = [];

function log(line) {
  const secs = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  console.log(`[${secs}s] ${line}`);
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns something truthy, for at most `ms`. */
async function until(what, check, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

// ------------------------------------------------------------------ the server

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function serverEnv(port) {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name.startsWith('ROSTER_') || name === 'BROKER_URL' || name === 'DATABASE_URL') {
      delete env[name];
    }
  }
  return {
    ...env,
    DATABASE_URL: `sqlite://${path.join(tmp, 'roster.db')}`,
    ROSTER_EXPORT_DIR: path.join(tmp, 'exports'),
    ROSTER_BIND: `127.0.0.1:${port}`,
    // Signing in is required, as on an exposed server: the page signs in first.
    ROSTER_AUTH: 'required',
    ROSTER_EXPORT_BATCH_ROWS: '50',
    ROSTER_SHUTDOWN_GRACE_SECS: '5',
    RUST_LOG: process.env.RUST_LOG || 'info',
  };
}

const ADMIN_PASSWORD = 'browser test password';
/** An API token of the admin, for the test's own requests (the page uses its cookie). */
let token = '';

/** fetch() as the admin. */
function apiFetch(url, init = {}) {
  return fetch(url, { ...init, headers: { ...(init.headers || {}), Authorization: `Bearer ${token}` } });
}

/** `roster user add admin` and `roster token create`, before the server starts. */
function makeAdmin(port) {
  const add = spawnSync(BIN, ['user', 'add', 'admin', '--role', 'admin', '--password-stdin'], {
    env: serverEnv(port),
    input: `${ADMIN_PASSWORD}\n`,
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert(add.status === 0, `roster user add exited ${add.status}: ${add.stderr}`);
  const made = spawnSync(BIN, ['token', 'create', '--user', 'admin', '--name', 'browser test'], {
    env: serverEnv(port),
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert(made.status === 0, `roster token create exited ${made.status}: ${made.stderr}`);
  token = made.stdout.trim();
}

function seed(port) {
  const run = spawnSync(BIN, ['seed', '--students', String(STUDENTS)], {
    env: serverEnv(port),
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (run.error) throw run.error;
  assert(run.status === 0, `roster seed exited ${run.status}: ${run.stderr}`);
  log(`seeded: ${(run.stdout || run.stderr).trim().split('\n').pop()}`);
}

async function startServer(port) {
  const out = fs.openSync(serverLog, 'a');
  const child = spawn(BIN, ['serve'], { env: serverEnv(port), stdio: ['ignore', out, out] });
  fs.closeSync(out);
  child.exited = once(child, 'exit');
  server = child;
  const base = `http://127.0.0.1:${port}`;
  await until(
    'the server to be ready',
    async () => {
      if (child.exitCode !== null) throw new Error(`roster serve exited ${child.exitCode}`);
      const res = await fetch(`${base}/readyz`).catch(() => null);
      return res && res.ok;
    },
    30_000,
  );
  return child;
}

/** SIGTERM, and wait (bounded) for a graceful exit. */
async function stopServer(signal = 'SIGTERM', ms = 30_000) {
  const child = server;
  if (!child || child.exitCode !== null || child.signalCode !== null) return null;
  child.kill(signal);
  const timer = sleep(ms).then(() => 'timeout');
  const outcome = await Promise.race([child.exited, timer]);
  if (outcome === 'timeout') {
    child.kill('SIGKILL');
    await child.exited;
    throw new Error(`roster did not stop within ${ms} ms of ${signal}`);
  }
  return outcome;
}

// --------------------------------------------------------------------- the page

async function screenshot(name, options = {}) {
  if (!page) return;
  shotNumber += 1;
  const file = path.join(ARTIFACTS, `${String(shotNumber).padStart(2, '0')}-${name}.png`);
  try {
    await page.screenshot({ path: file, timeout: 10_000, ...options });
  } catch (e) {
    log(`  (no screenshot ${name}: ${e.message})`);
  }
}

async function step(name, fn) {
  const t0 = Date.now();
  log(`step: ${name}`);
  try {
    await fn();
    results.push({ name, ok: true });
    log(`  ok (${Date.now() - t0} ms)`);
    return true;
  } catch (e) {
    results.push({ name, ok: false });
    log(`  FAILED: ${e.stack || e.message}`);
    await screenshot(`FAILED-${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`, { fullPage: true });
    return false;
  }
}

const job = (id) => page.locator(`#jobs li[data-job-id="${id}"]`);

async function jobStatus(id) {
  return job(id).getAttribute('data-status', { timeout: 1000 });
}

async function waitStatus(id, status, ms = WAIT_MS) {
  await until(`job ${id.slice(0, 8)} to show ${status}`, async () => (await jobStatus(id)) === status, ms);
}

/** Records every progress value and numbers line the page shows, per job. */
async function recordProgress() {
  await page.evaluate(() => {
    window.__seen = {};
    const note = (li) => {
      const id = li.dataset.jobId;
      const bar = li.querySelector('[role="progressbar"]');
      const seen = (window.__seen[id] = window.__seen[id] || { values: [], texts: [] });
      seen.values.push(Number(bar.getAttribute('aria-valuenow')));
      seen.texts.push(li.querySelector('.job-numbers').textContent);
    };
    const observer = new MutationObserver((mutations) => {
      for (const m of mutations) {
        const li = m.target.closest ? m.target.closest('li[data-job-id]') : null;
        if (li) note(li);
        for (const added of m.addedNodes) if (added.dataset && added.dataset.jobId) note(added);
      }
    });
    observer.observe(document.getElementById('jobs'), {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
      attributeFilter: ['aria-valuenow', 'data-status'],
    });
  });
}

async function startExportFromPage({ format = 'csv', minAge = '', maxAge = '' } = {}) {
  const form = page.locator('#export-form');
  await form.getByLabel('Min age').fill(minAge);
  await form.getByLabel('Max age').fill(maxAge);
  // The radio itself is visually hidden behind its label, as a person sees it.
  await form.locator(`label[for="export-format-${format}"]`).click();
  assert(await form.getByLabel(format === 'csv' ? 'CSV' : 'JSON Lines').isChecked(), 'format not chosen');
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/exports') && r.request().method() === 'POST', {
      timeout: WAIT_MS,
    }),
    form.getByRole('button', { name: 'Start export' }).click(),
  ]);
  assert(response.status() === 202, `POST /api/exports answered ${response.status()}`);
  const created = await response.json();
  await job(created.id).waitFor({ timeout: WAIT_MS });
  return created.id;
}

async function searchStudents(text) {
  await page.getByLabel('Search by name').fill(text);
  await page.locator('#filter-form').getByRole('button', { name: 'Apply' }).click();
}

const studentRow = (name) =>
  page.locator('#students-body tr').filter({ has: page.locator('td.student-name', { hasText: name }) });

// ---------------------------------------------------------------------- the run

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const old of fs.readdirSync(ARTIFACTS)) {
    if (old.endsWith('.png')) fs.rmSync(path.join(ARTIFACTS, old));
  }
  assert(fs.existsSync(BIN), `no roster binary at ${BIN} (cargo build, or set ROSTER_BIN)`);
  assert(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}`);

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let ready = await step(`seed ${STUDENTS} students and start roster on port ${port}`, async () => {
    seed(port);
    makeAdmin(port);
    await startServer(port);
  });
  if (!ready) return;

  ready = await step('open the page in headless Chromium', async () => {
    context = await chromium.launchPersistentContext(path.join(tmp, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      acceptDownloads: true,
      viewport: { width: 1280, height: 900 },
      timeout: 60_000,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    context.setDefaultTimeout(WAIT_MS);
    page = context.pages()[0] || (await context.newPage());
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) pageErrors.push(m.text());
    });
    await page.goto(base, { timeout: WAIT_MS });
    // Signing in is required: the page asks first.
    await page.locator('#sign-in-form').waitFor();
    await page.getByLabel('User name').fill('admin');
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await until('a wrong password refused', async () =>
      /wrong/.test((await page.locator('#sign-in-error').textContent()) || ''),
    );
    await screenshot('sign-in-refused');
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#connection[data-state="connected"]').waitFor();
    const who = await page.locator('#who-name').textContent();
    assert(who === 'admin (admin)', `signed in as "${who}"`);
    await until('the first page of students', async () =>
      /of 300,000|students/.test(await page.locator('#students-summary').textContent()),
    );
    const summary = await page.locator('#students-summary').textContent();
    assert(summary.includes(STUDENTS.toLocaleString('en-US')), `summary says "${summary}"`);
    assert((await page.locator('#students-body tr').count()) === 25, 'expected 25 rows on a page');
    await screenshot('loaded');
  });
  if (!ready) return;

  await step('browse: next page and an age range', async () => {
    await page.getByRole('button', { name: 'Next ›' }).click();
    await until('page 2', async () => (await page.locator('#page-info').textContent()).startsWith('Page 2 of'));
    const firstId = await page.locator('#students-body tr td.col-id').first().textContent();
    assert(firstId === '26', `page 2 starts at id ${firstId}`);
    await page.locator('#filter-form').getByLabel('Min age').fill('30');
    await page.locator('#filter-form').getByLabel('Max age').fill('31');
    await page.locator('#filter-form').getByRole('button', { name: 'Apply' }).click();
    await until('page 1 of the range', async () =>
      (await page.locator('#page-info').textContent()).startsWith('Page 1 of'),
    );
    const ages = await page.locator('#students-body td.col-age').allTextContents();
    assert(ages.length > 0 && ages.every((a) => a === '30' || a === '31'), `ages ${ages}`);
    // A range the API refuses: its message shows next to the field.
    await page.locator('#filter-form').getByLabel('Min age').fill('40');
    await page.locator('#filter-form').getByRole('button', { name: 'Apply' }).click();
    await until('the range error', async () =>
      /greater than max_age/.test(await page.locator('#filter-min-age-error').textContent()),
    );
    await screenshot('filter-error');
    await page.locator('#filter-form').getByRole('button', { name: 'Clear' }).click();
    await until('the filters to clear', async () =>
      (await page.locator('#filter-min-age-error').textContent()) === '' &&
      (await page.locator('#students-summary').textContent()).includes(STUDENTS.toLocaleString('en-US')),
    );
  });

  const form = page.locator('#student-form');
  await step('add a student', async () => {
    await form.getByLabel('Name').fill('Grace Playwright');
    await form.getByLabel('Age').fill('36');
    await form.getByRole('button', { name: 'Add student' }).click();
    await until('the added note', async () =>
      /Added Grace Playwright, age 36/.test(await page.locator('#student-note').textContent()),
    );
    await searchStudents('Grace Playwright');
    await studentRow('Grace Playwright').waitFor();
    assert((await studentRow('Grace Playwright').locator('td.col-age').textContent()) === '36', 'age 36');
    await screenshot('student-added');
  });

  await step('an invalid student shows the errors next to the fields, then saves once fixed', async () => {
    await form.getByLabel('Name').fill('   ');
    await form.getByLabel('Age').fill('200');
    await form.getByRole('button', { name: 'Add student' }).click();
    const nameError = page.locator('#student-name-error');
    const ageError = page.locator('#student-age-error');
    await until('the field errors', async () =>
      /blank/i.test(await nameError.textContent()) && /0 to 150/.test(await ageError.textContent()),
    );
    assert((await form.getByLabel('Name').getAttribute('aria-invalid')) === 'true', 'name aria-invalid');
    assert((await form.getByLabel('Age').getAttribute('aria-invalid')) === 'true', 'age aria-invalid');
    await screenshot('student-invalid');
    await form.getByLabel('Name').fill('Katherine Johnson');
    await form.getByRole('button', { name: 'Add student' }).click();
    await until('the age error alone', async () =>
      (await nameError.textContent()) === '' && /0 to 150/.test(await ageError.textContent()),
    );
    await form.getByLabel('Age').fill('41');
    await form.getByRole('button', { name: 'Add student' }).click();
    await until('the added note', async () =>
      /Added Katherine Johnson, age 41/.test(await page.locator('#student-note').textContent()),
    );
    assert((await ageError.textContent()) === '', 'the age error is gone');
    await searchStudents('Katherine Johnson');
    await studentRow('Katherine Johnson').waitFor();
    await screenshot('student-fixed-and-saved');
  });

  await step('edit a student', async () => {
    await studentRow('Katherine Johnson').getByRole('button', { name: 'Edit Katherine Johnson' }).click();
    assert((await form.getByLabel('Name').inputValue()) === 'Katherine Johnson', 'form filled in');
    await form.getByLabel('Age').fill('151');
    await form.getByRole('button', { name: 'Save changes' }).click();
    await until('the age error', async () => /0 to 150/.test(await page.locator('#student-age-error').textContent()));
    await form.getByLabel('Age').fill('42');
    await form.getByRole('button', { name: 'Save changes' }).click();
    await until('the row to show 42', async () =>
      (await studentRow('Katherine Johnson').locator('td.col-age').textContent()) === '42',
    );
    await screenshot('student-edited');
  });

  await step('delete a student', async () => {
    await searchStudents('Grace Playwright');
    const row = studentRow('Grace Playwright');
    await row.getByRole('button', { name: 'Delete Grace Playwright' }).click();
    await row.getByRole('button', { name: 'Confirm: delete Grace Playwright' }).click();
    await page.locator('#students-empty').waitFor({ state: 'visible' });
    const res = await apiFetch(`${base}/api/students?q=Grace%20Playwright`);
    assert((await res.json()).total === 0, 'the API still has her');
    await screenshot('student-deleted');
    await page.locator('#filter-form').getByRole('button', { name: 'Clear' }).click();
  });

  let exportId = null;
  await step('an export shows its progress live and reaches 100%', async () => {
    await recordProgress();
    exportId = await startExportFromPage({ format: 'csv' });
    log(`  export ${exportId}`);
    // A screenshot while the bar is part way, if the export is still running by then.
    const midway = await page.waitForFunction(
      (id) => {
        const li = document.querySelector(`#jobs li[data-job-id="${id}"]`);
        const value = Number(li.querySelector('[role="progressbar"]').getAttribute('aria-valuenow'));
        if (value > 0 && value < 100 && li.dataset.status === 'running') return 'midway';
        return ['succeeded', 'failed', 'cancelled'].includes(li.dataset.status) ? 'ended' : null;
      },
      exportId,
      { polling: 'raf', timeout: EXPORT_MS },
    );
    if ((await midway.jsonValue()) === 'midway') await screenshot('export-running');
    await waitStatus(exportId, 'succeeded', EXPORT_MS);
    const bar = job(exportId).locator('[role="progressbar"]');
    assert((await bar.getAttribute('aria-valuenow')) === '100', 'the bar ends at 100');
    const seen = await page.evaluate((id) => window.__seen[id], exportId);
    const between = seen.values.filter((v) => v > 0 && v < 100);
    log(`  progress values seen: ${seen.values.length} (${between.length} between 0 and 100)`);
    assert(between.length > 0, `no intermediate progress seen: ${seen.values}`);
    assert(
      seen.texts.some((t) => /rows\/s/.test(t) && /left/.test(t)),
      `no rate and time left seen: ${seen.texts.slice(0, 5)}`,
    );
    const { total } = await (await apiFetch(`${base}/api/students?per_page=1`)).json();
    const numbers = await job(exportId).locator('.job-numbers').textContent();
    assert(numbers.startsWith(`${total.toLocaleString('en-US')} rows`), `numbers say "${numbers}"`);
    await screenshot('export-succeeded');
  });

  await step('download the export', async () => {
    assert(exportId, 'no export to download');
    const link = job(exportId).getByRole('link', { name: /Download/ });
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: WAIT_MS }), link.click()]);
    const file = await download.path();
    const size = fs.statSync(file).size;
    const head = fs.readFileSync(file, 'utf8').slice(0, 200).split(/\r?\n/)[0];
    log(`  downloaded ${download.suggestedFilename()}: ${size} bytes, header "${head}"`);
    assert(size > 0, 'the download is empty');
    assert(head === 'id,name,age', `the header line is "${head}"`);
    assert(download.suggestedFilename().endsWith('.csv'), `file name ${download.suggestedFilename()}`);
  });

  await step('import a file: valid rows are added, rejected ones can be downloaded', async () => {
    await page.setInputFiles('#import-file', {
      name: 'new-students.csv',
      mimeType: 'text/csv',
      buffer: Buffer.from('name,age\r\nImported Person,33\r\nNobody Valid,999\r\n'),
    });
    await page.click('label[for="import-mode-skip"]');
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().includes('/api/imports'), { timeout: WAIT_MS }),
      page.click('#import-submit'),
    ]);
    assert(response.status() === 202, `the import answered ${response.status()}`);
    const id = (await response.json()).id;
    await waitStatus(id, 'succeeded');
    const numbers = await job(id).locator('.job-numbers').textContent();
    assert(/^1 added · 1 rejected/.test(numbers), `numbers say "${numbers}"`);
    const link = job(id).getByRole('link', { name: /rejected rows/ });
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: WAIT_MS }), link.click()]);
    const report = fs.readFileSync(await download.path(), 'utf8').split(/\r?\n/);
    assert(report[0] === 'line,field,message', `the report starts "${report[0]}"`);
    assert(report[1].startsWith('3,age,'), `the report says "${report[1]}"`);
    await until('the new student is listed', async () => {
      const found = await (await apiFetch(`${base}/api/students?q=Imported%20Person`)).json();
      return found.total === 1;
    });
    await screenshot('import-succeeded');
  });

  await step('cancel a running export', async () => {
    const id = await startExportFromPage({ format: 'jsonl' });
    await job(id).getByRole('button', { name: /^Cancel/ }).click({ timeout: 5000 });
    await waitStatus(id, 'cancelled');
    const badge = await job(id).locator('.job-status').textContent();
    assert(badge === 'cancelled', `badge says ${badge}`);
    assert(await job(id).getByRole('button', { name: /^Cancel/ }).isHidden(), 'cancel button still shown');
    assert(await job(id).getByRole('link', { name: /Download/ }).isHidden(), 'download link shown');
    await screenshot('export-cancelled');
  });

  await step('the page shows the server going away', async () => {
    const t0 = Date.now();
    await stopServer('SIGTERM');
    log(`  roster stopped ${Date.now() - t0} ms after SIGTERM`);
    await page.locator('#connection[data-state="disconnected"]').waitFor();
    assert(await page.locator('#jobs-stale').isVisible(), 'no "live updates paused" note');
    // Starting an export now fails with a message, not silently.
    await page.locator('#export-form').getByRole('button', { name: 'Start export' }).click();
    await until('the export error', async () =>
      /cannot be reached/.test(await page.locator('#export-form-error').textContent()),
    );
    await screenshot('disconnected');
  });

  await step('after a restart the page reconnects and catches up', async () => {
    const port2 = port;
    await startServer(port2);
    // A job that starts and ends while the page is (probably) still waiting to retry:
    // it learns of it from the snapshots when it resubscribes.
    const res = await apiFetch(`${base}/api/exports`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ format: 'jsonl', min_age: 20, max_age: 21 }),
    });
    assert(res.status === 202, `POST /api/exports answered ${res.status}`);
    const behind = (await res.json()).id;
    await page.locator('#connection[data-state="connected"]').waitFor({ timeout: 15_000 });
    await waitStatus(behind, 'succeeded', EXPORT_MS);
    assert(await page.locator('#jobs-stale').isHidden(), 'still says updates are paused');
    await page.locator('#export-form').getByRole('button', { name: 'Start export' }).waitFor();
    await screenshot('reconnected');
    // And a new export started from the page is followed live again.
    const id = await startExportFromPage({ format: 'csv', minAge: '10', maxAge: '60' });
    assert(
      (await page.locator('#export-form-error').isHidden()),
      'the old "cannot be reached" error is still shown',
    );
    await waitStatus(id, 'succeeded', EXPORT_MS);
    const seen = await page.evaluate((jobId) => window.__seen[jobId], id);
    assert(seen && seen.values.length > 1, 'the new export was not seen live');
    await screenshot('export-after-reconnect');
  });

  await step('schedules are listed with their next fire time', async () => {
    const created = await apiFetch(`${base}/api/schedules`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'nightly export', cron: '0 2 * * *', timezone: 'America/Manaus', kind: 'students_by_age', params: { format: 'csv' } }),
    });
    assert(created.status === 201, `creating a schedule answered ${created.status}`);
    await page.reload();
    await page.locator('#connection[data-state="connected"]').waitFor();
    const row = page.locator('#schedules-body tr', { hasText: 'nightly export' });
    await row.waitFor();
    const text = await row.textContent();
    assert(text.includes('0 2 * * * (America/Manaus)'), `the row says "${text}"`);
    assert(await page.locator('#schedules-empty').isHidden(), 'the empty note is still shown');
    await row.scrollIntoViewIfNeeded();
    await screenshot('schedules');
  });

  await step('keyboard focus is visible', async () => {
    await page.locator('body').click({ position: { x: 5, y: 5 } });
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    const style = await page.evaluate(() => {
      const el = document.activeElement;
      const css = getComputedStyle(el);
      return { tag: el.tagName, outline: css.outlineStyle, width: css.outlineWidth };
    });
    assert(style.outline !== 'none' && style.width !== '0px', `focused ${style.tag} has no outline`);
    await screenshot('keyboard-focus');
  });

  await step('the layout holds on a narrow window (360 px)', async () => {
    await page.setViewportSize({ width: 360, height: 780 });
    await sleep(200);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(width <= 360, `the page is ${width} px wide`);
    await screenshot('narrow');
    await page.locator('#jobs').scrollIntoViewIfNeeded();
    await screenshot('narrow-jobs');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step('no script errors on the page', async () => {
    assert(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
  });
}

async function cleanup() {
  if (context) await context.close().catch(() => {});
  if (server && server.exitCode === null && server.signalCode === null) {
    await stopServer('SIGTERM', 15_000).catch(() => {});
  }
}

const watchdog = setTimeout(() => {
  console.log(`the browser test ran past ${OVERALL_LIMIT_MS / 1000} s; giving up`);
  if (server) server.kill('SIGKILL');
  console.log(`${results.filter((r) => r.ok).length} passed, ${results.filter((r) => !r.ok).length + 1} failed`);
  process.exit(1);
}, OVERALL_LIMIT_MS);

try {
  await main();
} catch (e) {
  results.push({ name: 'setup', ok: false });
  log(`FAILED: ${e.stack || e.message}`);
} finally {
  await cleanup();
  clearTimeout(watchdog);
}

const failed = results.filter((r) => !r.ok);
if (failed.length > 0) {
  log(`server log (${serverLog}), last lines:`);
  const lines = fs.existsSync(serverLog) ? fs.readFileSync(serverLog, 'utf8').trim().split('\n') : [];
  for (const line of lines.slice(-40)) console.log(`  | ${line}`);
  for (const r of failed) log(`failed: ${r.name}`);
} else {
  fs.rmSync(tmp, { recursive: true, force: true });
}
log(`screenshots in ${path.relative(process.cwd(), ARTIFACTS) || ARTIFACTS}`);
console.log(`${results.length - failed.length} passed, ${failed.length} failed`);
process.exit(failed.length > 0 ? 1 : 0);
