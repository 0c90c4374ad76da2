// Drives the roster page in headless Chromium against the real binary.
//
// It seeds a fresh SQLite database, starts `roster serve` on a free port, and then does
// what a person would: adds, corrects, edits and deletes students, starts exports and
// watches them live, downloads one, imports a file, cancels one, retries a failed import
// from its detail and reads its attempts, deletes a job, filters, searches and pages the
// jobs, watches a worker run a job, reads the activity charts, sees the banner while no
// worker runs, sees an export expire, sees a schedule, and restarts the server under the
// page to see it reconnect. Screenshots of every view go to tests/artifacts/browser/.
//
// Environment: ROSTER_BIN (default $CARGO_TARGET_DIR/debug/roster, else target/debug/roster), CHROMIUM (default
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
// The binary run.sh built: under CARGO_TARGET_DIR when that is set, as cargo puts it.
const TARGET = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target');
const BIN = path.resolve(process.env.ROSTER_BIN || path.join(TARGET, 'debug', 'roster'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const STUDENTS = Number(process.env.ROSTER_TEST_STUDENTS || 300000);
const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts', 'browser');
/** The whole run, whatever happens. */
const OVERALL_LIMIT_MS = 10 * 60 * 1000;
/** How long an export's file lives once the server restarts under the page (the expiry step). */
const SHORT_TTL_SECS = 25;
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

function serverEnv(port, extra = {}) {
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
    ...extra,
  };
}

const ADMIN_PASSWORD = 'Quillwort amber 63 ravine';
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

/** `roster serve` (with `args`, e.g. `--no-workers`, and settings `env`), once ready. */
async function startServer(port, { args = [], env = {} } = {}) {
  const out = fs.openSync(serverLog, 'a');
  const child = spawn(BIN, ['serve', ...args], { env: serverEnv(port, env), stdio: ['ignore', out, out] });
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
const dialog = () => page.locator('#job-detail');

/** GET as the admin, the answer's JSON. */
async function apiJson(url) {
  const res = await apiFetch(url);
  assert(res.ok, `GET ${url} answered ${res.status}`);
  return res.json();
}

/** Polls the API until the job has ended; its last version. */
async function apiEnded(base, id, ms = EXPORT_MS) {
  return until(
    `job ${id.slice(0, 8)} to end`,
    async () => {
      const found = await apiJson(`${base}/api/jobs/${id}`);
      return ['succeeded', 'failed', 'cancelled'].includes(found.status) ? found : null;
    },
    ms,
  );
}

/** Opens a job's detail from its row, as a person does; waits for its attempts. */
async function openDetail(id) {
  await job(id).getByRole('link', { name: /^Details of/ }).click();
  await dialog().waitFor({ state: 'visible' });
  await until('the detail of the job', async () => (await page.locator('#detail-id').textContent()) === id);
  assert(page.url().endsWith(`#job/${id}`), `the address is ${page.url()}`);
}

async function closeDetail() {
  await page.keyboard.press('Escape');
  await dialog().waitFor({ state: 'hidden' });
}

/** Starts an import from the page's form; its id. */
async function startImportFromPage(name, text, mode) {
  await page.setInputFiles('#import-file', { name, mimeType: 'text/csv', buffer: Buffer.from(text) });
  await page.click(`label[for="import-mode-${mode === 'skip_invalid' ? 'skip' : 'all'}"]`);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().includes('/api/imports'), { timeout: WAIT_MS }),
    page.click('#import-submit'),
  ]);
  assert(response.status() === 202, `the import answered ${response.status()}`);
  return (await response.json()).id;
}

/** The ids the jobs view shows, in order. */
const shownJobs = () => page.locator('#jobs li[data-job-id]').evaluateAll((lis) => lis.map((li) => li.dataset.jobId));

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
      (await page.locator('#students-summary').textContent()).includes(STUDENTS.toLocaleString('en-US')),
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

  let cancelledId = null;
  let waitingId = null;
  let behindId = null;
  await step('cancel a running export', async () => {
    const id = await startExportFromPage({ format: 'jsonl' });
    cancelledId = id;
    await job(id).getByRole('button', { name: /^Cancel/ }).click({ timeout: 5000 });
    await waitStatus(id, 'cancelled');
    const badge = await job(id).locator('.job-status').textContent();
    assert(badge === 'cancelled', `badge says ${badge}`);
    assert(await job(id).getByRole('button', { name: /^Cancel/ }).isHidden(), 'cancel button still shown');
    assert(await job(id).getByRole('link', { name: /Download/ }).isHidden(), 'download link shown');
    await screenshot('export-cancelled');
  });

  let failedId = null;
  await step('a failed import is retried from its detail, fails again, and its attempts say why', async () => {
    const id = await startImportFromPage('bad.csv', 'name,age\r\nFine Person,30\r\nToo Old,999\r\n', 'all_or_nothing');
    failedId = id;
    await waitStatus(id, 'failed');
    const error = await job(id).locator('.job-error').textContent();
    assert(/1 invalid row; nothing was imported/.test(error), `the row says "${error}"`);
    const numbers = await job(id).locator('.job-numbers').textContent();
    assert(/not retried/.test(numbers) && !/of 3 attempts/.test(numbers), `the row says "${numbers}"`);
    await openDetail(id);
    const attempts = page.locator('#detail-attempts-body tr');
    await until('one attempt listed', async () => (await attempts.count()) === 1);
    assert(/invalid row/.test(await attempts.nth(0).locator('.attempt-error').textContent()), 'the attempt has no error');
    await dialog().getByRole('button', { name: 'Retry' }).click();
    // Back in the queue, then failed again: two attempts, each with its error.
    await until('a second attempt, failed', async () =>
      (await attempts.count()) === 2 &&
      (await page.locator('#detail-badge').textContent()) === 'failed' &&
      (await attempts.nth(1).getAttribute('data-outcome')) === 'failed',
    EXPORT_MS);
    const second = await attempts.nth(1).locator('.attempt-error').textContent();
    assert(/1 invalid row; nothing was imported/.test(second), `the second attempt's error is "${second}"`);
    const worker = await attempts.nth(1).locator('.attempt-worker').textContent();
    assert(worker.length > 0, 'the attempt names no worker');
    const timeline = await page.locator('#detail-timeline').textContent();
    assert(/Attempt 1 failed/.test(timeline) && /Attempt 2 failed/.test(timeline), `the timeline says "${timeline}"`);
    assert(/Retried from this page/.test(timeline) && /Status: failed/.test(timeline), `no live events in the timeline: "${timeline}"`);
    const fields = await page.locator('#detail-fields').textContent();
    assert(/Attempts2of/.test(fields.replace(/\s+/g, '')), `the fields say "${fields}"`);
    assert(await dialog().getByRole('link', { name: /rejected rows/ }).isVisible(), 'no rejects report in the detail');
    await screenshot('job-detail-retried');
    // Escape closes it and gives the focus back to the row's link.
    await closeDetail();
    await until('the address without the job', async () => !page.url().includes('#job/'));
    await until('the focus back on the row\'s link', async () =>
      /^Details of/.test((await page.evaluate(() => document.activeElement && document.activeElement.getAttribute('aria-label'))) || ''),
    );
    // The address of a detail opens it.
    await page.goto(`${base}/#job/${id}`);
    await dialog().waitFor({ state: 'visible' });
    await until('the deep-linked detail', async () => (await page.locator('#detail-attempts-body tr').count()) === 2);
    await closeDetail();
    await page.locator('#connection[data-state="connected"]').waitFor();
  });

  await step('delete an ended job from its detail', async () => {
    assert(cancelledId, 'no cancelled job to delete');
    await page.getByLabel('Search by ID').fill(cancelledId.slice(0, 8));
    await until('the search to apply', async () => JSON.stringify(await shownJobs()) === JSON.stringify([cancelledId]));
    await openDetail(cancelledId);
    await dialog().getByRole('button', { name: 'Delete' }).click();
    await screenshot('job-delete-confirm');
    await dialog().getByRole('button', { name: 'Delete job' }).click();
    await dialog().waitFor({ state: 'hidden' });
    await job(cancelledId).waitFor({ state: 'detached' });
    const res = await apiFetch(`${base}/api/jobs/${cancelledId}`);
    assert(res.status === 404, `the job is still there: ${res.status}`);
    await page.locator('#jobs-filter').getByRole('button', { name: 'Clear' }).click();
  });

  await step('filter the jobs by status and search by id prefix', async () => {
    await page.getByLabel('Status').selectOption('failed');
    await until('only failed jobs', async () => {
      const statuses = await page.locator('#jobs li[data-job-id]').evaluateAll((lis) => lis.map((li) => li.dataset.status));
      return statuses.length > 0 && statuses.every((st) => st === 'failed');
    });
    assert((await shownJobs()).includes(failedId), 'the failed import is not listed');
    await screenshot('jobs-failed-only');
    await page.getByLabel('Status').selectOption('');
    await page.getByLabel('Search by ID').fill(exportId.slice(0, 6));
    await until('the one job with that prefix', async () => {
      const ids = await shownJobs();
      return ids.length >= 1 && ids.includes(exportId) && ids.every((i) => i.startsWith(exportId.slice(0, 6)));
    });
    await screenshot('jobs-search');
    await page.getByLabel('Search by ID').fill('zzzz');
    await page.locator('#jobs-empty').waitFor({ state: 'visible' });
    await page.locator('#jobs-filter').getByRole('button', { name: 'Clear' }).click();
    await until('every job again', async () => (await shownJobs()).length >= 3);
  });

  await step('page beyond the first page of jobs', async () => {
    // Enough small exports for two pages of ten, at once (they end in a moment).
    const made = await Promise.all(
      Array.from({ length: 9 }, (_, i) =>
        apiFetch(`${base}/api/exports`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ format: 'csv', min_age: 140 + i, max_age: 140 + i }),
        }).then(async (r) => {
          assert(r.status === 202, `POST /api/exports answered ${r.status}`);
          return (await r.json()).id;
        }),
      ),
    );
    for (const id of made) await apiEnded(base, id);
    await page.locator('#jobs-filter').getByLabel('Per page').selectOption('10');
    const first = await apiJson(`${base}/api/jobs?limit=10`);
    assert(first.next_cursor, 'the API has no second page');
    const second = await apiJson(`${base}/api/jobs?limit=10&cursor=${encodeURIComponent(first.next_cursor)}`);
    await until('the first page', async () =>
      JSON.stringify(await shownJobs()) === JSON.stringify(first.items.map((j) => j.id)),
    );
    await page.getByRole('button', { name: 'Older ›' }).click();
    await until('the second page', async () =>
      JSON.stringify(await shownJobs()) === JSON.stringify(second.items.map((j) => j.id)),
    );
    assert((await page.locator('#jobs-page-info').textContent()) === 'Page 2', 'not page 2');
    const height = await page.locator('#jobs-scroll').evaluate((el) => el.getBoundingClientRect().height);
    assert(height <= 34 * 16 + 2, `the list is ${height} px tall`);
    await screenshot('jobs-page-2');
    await page.getByRole('button', { name: '« Newest' }).click();
    await until('the first page again', async () => (await page.locator('#jobs-page-info').textContent()) === 'Page 1');
    await page.locator('#jobs-filter').getByLabel('Per page').selectOption('25');
  });

  await step('the workers view shows a worker busy with a running job', async () => {
    await page.locator('#workers').waitFor({ state: 'visible' });
    // Six whole exports at once on two cores: each runs for seconds, longer than a beat.
    const started = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        apiFetch(`${base}/api/exports`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ format: 'jsonl', min_age: i, max_age: 150 }),
        }).then(async (r) => {
          assert(r.status === 202, `POST /api/exports answered ${r.status}`);
          return (await r.json()).id;
        }),
      ),
    );
    try {
      // What the view shows, read at once: a worker row with a link to one of them.
      const seen = await until('a worker to show a running export', async () => {
        await Promise.all([
          page.waitForResponse((r) => r.url().endsWith('/api/workers'), { timeout: 5000 }),
          page.locator('#workers-refresh').click(),
        ]);
        return page.locator('#workers-body').evaluate((body, ids) => {
          for (const tr of body.querySelectorAll('tr')) {
            for (const a of tr.querySelectorAll('a.job-link')) {
              const id = a.getAttribute('href').replace('#job/', '');
              if (ids.includes(id)) {
                return { id, state: tr.dataset.state, text: tr.querySelector('.worker-state').textContent, name: a.getAttribute('aria-label') };
              }
            }
          }
          return null;
        }, started);
      }, EXPORT_MS);
      await screenshot('workers-busy');
      const { id } = seen;
      log(`  ${seen.name}: "${seen.text}"`);
      assert(seen.state === 'busy', `the worker running it is ${seen.state}`);
      assert(/busy/i.test(seen.text) && /\d+ of \d+/.test(seen.text), `the worker's state says "${seen.text}"`);
      assert(/^Details of .*export/.test(seen.name), `the job's link is named "${seen.name}"`);
      const link = page.locator(`#workers-body a[href="#job/${id}"]`);
      // Its running job is a link to its detail, where it can be cancelled.
      // (It may have ended and left the worker since: then its address serves as well.)
      await link.click({ timeout: 2000 }).catch(() => page.goto(`${base}/#job/${id}`));
      await until('its detail', async () => (await page.locator('#detail-id').textContent()) === id);
      const cancel = dialog().getByRole('button', { name: 'Cancel job' });
      if (await cancel.isVisible()) await cancel.click();
      await until('ended', async () => ['cancelled', 'succeeded'].includes(await page.locator('#detail-badge').textContent()), EXPORT_MS);
      await closeDetail();
    } finally {
      for (const id of started) {
        await apiFetch(`${base}/api/jobs/${id}/cancel`, { method: 'POST' });
      }
    }
  });

  await step('the activity charts draw the last hour', async () => {
    await page.locator('#activity').waitFor({ state: 'visible' });
    // Read afresh (the charts refresh every 15 s); the progress record starts again.
    await page.reload();
    await page.locator('#connection[data-state="connected"]').waitFor();
    await recordProgress();
    await until('the succeeded count', async () => Number((await page.locator('#stat-succeeded').textContent()).replace(/,/g, '')) > 0);
    const canvas = page.locator('#chart-throughput canvas');
    await canvas.waitFor();
    // Bars in the colour of succeeded jobs are drawn.
    const painted = await canvas.evaluate((el) => {
      const ctx = el.getContext('2d');
      const { data } = ctx.getImageData(0, 0, el.width, el.height);
      let count = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (Math.abs(data[i] - 0x1d) < 12 && Math.abs(data[i + 1] - 0x7a) < 12 && Math.abs(data[i + 2] - 0x46) < 12 && data[i + 3] > 200) count += 1;
      }
      return count;
    });
    log(`  ${painted} pixels of succeeded bars`);
    assert(painted > 20, `the throughput chart drew ${painted} pixels of bars`);
    await page.locator('#chart-wait canvas').waitFor();
    await page.locator('#activity').scrollIntoViewIfNeeded();
    await screenshot('activity-charts');
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

  await step('with no worker running, a banner says jobs will wait', async () => {
    // A process that dies without a word (kill -9) leaves its last beat behind; then
    // the web process alone, on the same database: nothing runs jobs.
    await startServer(port);
    await sleep(1000);
    server.kill('SIGKILL');
    await server.exited;
    await startServer(port, { args: ['--no-workers'] });
    try {
      await page.locator('#connection[data-state="connected"]').waitFor({ timeout: 15_000 });
      const banner = page.locator('#no-worker-banner');
      await banner.waitFor({ state: 'visible', timeout: 30_000 });
      const text = await banner.textContent();
      assert(/No worker is running — jobs will wait/.test(text), `the banner says "${text}"`);
      assert(/last one was seen .* ago/.test(text), `the banner does not say when: "${text}"`);
      const id = await startExportFromPage({ format: 'jsonl', minAge: '5', maxAge: '6' });
      waitingId = id;
      await until('the queued job to say so', async () =>
        /no worker is running/.test(await job(id).locator('.job-numbers').textContent()),
      );
      await screenshot('no-worker-banner');
    } finally {
      await stopServer('SIGTERM');
    }
    await page.locator('#connection[data-state="disconnected"]').waitFor();
  });

  await step('after a restart the page reconnects and catches up', async () => {
    const port2 = port;
    // From now on files expire soon: the expiry step watches one go.
    await startServer(port2, { env: { ROSTER_EXPORT_TTL_SECS: String(SHORT_TTL_SECS) } });
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
    behindId = behind;
    // A worker runs again: the banner goes, and the job that waited runs.
    await page.locator('#no-worker-banner').waitFor({ state: 'hidden', timeout: 15_000 });
    if (waitingId) await waitStatus(waitingId, 'succeeded', EXPORT_MS);
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

  await step('an expired export says so, with no download, also after a reload', async () => {
    assert(behindId, 'no export made after the restart');
    const row = job(behindId);
    assert(await row.getByRole('link', { name: /Download/ }).isVisible(), 'a fresh export has no download link');
    await until('the export to expire', async () => row.locator('.job-expired').isVisible(), (SHORT_TTL_SECS + 10) * 1000);
    assert(await row.getByRole('link', { name: /Download/ }).isHidden(), 'an expired export offers a download');
    await page.reload();
    await page.locator('#connection[data-state="connected"]').waitFor();
    await job(behindId).waitFor();
    assert(await job(behindId).locator('.job-expired').isVisible(), 'after a reload it is not shown expired');
    assert(await job(behindId).getByRole('link', { name: /Download/ }).isHidden(), 'after a reload it offers a download');
    await job(behindId).scrollIntoViewIfNeeded();
    await screenshot('export-expired');
    await openDetail(behindId);
    assert(/Expired/.test(await page.locator('#detail-fields').textContent()), 'the detail does not say expired');
    assert(await dialog().getByRole('link', { name: /Download/ }).isHidden(), 'the detail offers a download');
    await closeDetail();
    // A file gone before the page knows (410): a message, not a cancelled browser download.
    const res = await apiFetch(`${base}/api/exports`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ format: 'csv', min_age: 7, max_age: 7 }),
    });
    const fresh = (await res.json()).id;
    await waitStatus(fresh, 'succeeded', EXPORT_MS);
    const { result } = await apiJson(`${base}/api/jobs/${fresh}`);
    fs.rmSync(path.join(tmp, 'exports', result.file));
    let downloads = 0;
    page.on('download', () => (downloads += 1));
    await job(fresh).getByRole('link', { name: /Download/ }).click();
    await until('the message', async () => /expired/.test(await page.locator('#jobs-message').textContent()));
    assert(await job(fresh).locator('.job-expired').isVisible(), 'the gone file is not shown expired');
    await sleep(500);
    assert(downloads === 0, 'the browser started a download of an error');
    await screenshot('download-gone');
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

  await step("a job's detail opens, holds the focus and gives it back, by keyboard", async () => {
    assert(failedId, 'no failed import to open');
    await page.getByLabel('Search by ID').fill(failedId.slice(0, 8));
    await until('the search to apply', async () => JSON.stringify(await shownJobs()) === JSON.stringify([failedId]));
    await job(failedId).getByRole('link', { name: /^Details of/ }).focus();
    await page.keyboard.press('Enter');
    await dialog().waitFor({ state: 'visible' });
    const where = () =>
      page.evaluate(() => {
        const el = document.activeElement;
        const css = el ? getComputedStyle(el) : null;
        return {
          inside: Boolean(el && document.getElementById('job-detail').contains(el)),
          body: el === document.body,
          what: el ? `${el.tagName} ${el.textContent.trim().slice(0, 30)}` : 'nothing',
          outline: css ? css.outlineStyle !== 'none' && css.outlineWidth !== '0px' : false,
        };
      });
    let at = await where();
    assert(at.inside, `the focus is on ${at.what}, not in the detail`);
    for (let i = 0; i < 10; i += 1) {
      await page.keyboard.press('Tab');
      at = await where();
      // A modal dialog keeps the focus (the browser's own controls aside).
      assert(at.inside || at.body, `Tab ${i + 1} moved the focus out of the detail, to ${at.what}`);
      if (at.inside) assert(at.outline, `${at.what} has the focus and no outline`);
    }
    await screenshot('job-detail-keyboard');
    await page.keyboard.press('Escape');
    await dialog().waitFor({ state: 'hidden' });
    // (The dialog's close event, which gives the focus back, comes a moment after it hides.)
    await until('the focus back on the link', async () =>
      /^Details of/.test((await page.evaluate(() => document.activeElement && document.activeElement.getAttribute('aria-label'))) || ''),
    );
    await page.locator('#jobs-filter').getByRole('button', { name: 'Clear' }).click();
  });

  await step('the layout holds on a narrow window (360 px)', async () => {
    await page.setViewportSize({ width: 360, height: 780 });
    await sleep(200);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(width <= 360, `the page is ${width} px wide`);
    await screenshot('narrow');
    await page.locator('#jobs').scrollIntoViewIfNeeded();
    await screenshot('narrow-jobs');
    for (const view of ['workers', 'activity']) {
      // (Their own steps fail when they are missing.)
      if (await page.locator(`#${view}`).isHidden()) continue;
      await page.locator(`#${view}`).scrollIntoViewIfNeeded();
      await screenshot(`narrow-${view}`);
    }
    if (failedId) {
      await page.goto(`${base}/#job/${failedId}`);
      await dialog().waitFor({ state: 'visible' });
      await until('its attempts', async () => (await page.locator('#detail-attempts-body tr').count()) === 2);
      const box = await dialog().boundingBox();
      assert(box.x >= 0 && box.x + box.width <= 360, `the detail spans ${box.x}–${box.x + box.width}`);
      const inner = await page.evaluate(() => document.documentElement.scrollWidth);
      assert(inner <= 360, `the page is ${inner} px wide with the detail open`);
      await screenshot('narrow-job-detail');
      await closeDetail();
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step('the page is ES modules from the binary, and only those listed', async () => {
    const entry = await page.evaluate(() => {
      const script = document.querySelector('script[src="/static/js/main.js"]');
      return script ? script.type : null;
    });
    assert(entry === 'module', `the entry script's type is ${entry}`);
    const main = await fetch(`${base}/static/js/main.js`);
    assert(main.status === 200, `main.js answered ${main.status}`);
    const type = main.headers.get('content-type');
    assert(type === 'text/javascript; charset=utf-8', `main.js served as ${type}`);
    for (const other of ['/static/js/x.js', '/static/app.js']) {
      const res = await fetch(`${base}${other}`);
      const body = await res.json().catch(() => null);
      assert(res.status === 404 && body && body.error && body.error.code === 'not_found',
        `${other} answered ${res.status} ${JSON.stringify(body)}`);
    }
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
