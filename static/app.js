// roster: the one page. Students through the REST API; every job live through /ws.
// Plain browser JavaScript, no build step and nothing fetched from elsewhere.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const numbers = new Intl.NumberFormat('en-US');
  const n = (v) => numbers.format(v);

  /** The page sizes both lists offer (25 chosen at first). */
  const PAGE_SIZES = [10, 25, 50, 100];
  for (const select of document.querySelectorAll('select[data-page-sizes]')) {
    for (const size of PAGE_SIZES) select.add(new Option(String(size), String(size), size === 25, size === 25));
  }

  // ---------------------------------------------------------------- HTTP

  /** An API error: `status` 0 when the server could not be reached. */
  class ApiError extends Error {
    constructor(status, body, fallback) {
      const detail = body && body.error ? body.error : null;
      super((detail && detail.message) || fallback || `the server answered ${status}`);
      this.status = status;
      this.code = detail ? detail.code : null;
      this.fields = (detail && detail.fields) || {};
    }
  }

  async function api(method, path, body, contentType) {
    const init = { method, headers: { Accept: 'application/json' } };
    if (contentType !== undefined) {
      init.headers['Content-Type'] = contentType;
      init.body = body;
    } else if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, null, 'The server cannot be reached. Try again in a moment.');
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = null;
      }
    }
    if (res.status === 401 && path !== '/api/session') showSignIn();
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  // ------------------------------------------------------------- sign-in

  /** Shows the sign-in form instead of the page (no session, or it ended). */
  function showSignIn() {
    $('main').hidden = true;
    $('connection').hidden = true;
    $('sign-in').hidden = false;
    $('who').hidden = true;
    $('sign-in-username').focus();
  }

  $('sign-in-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const submit = $('sign-in-submit');
    submit.disabled = true;
    try {
      await api('POST', '/api/session', {
        username: $('sign-in-username').value,
        password: $('sign-in-password').value,
      });
      // Everything starts afresh with the session's cookie.
      window.location.reload();
    } catch (err) {
      const text = err.status === 401 ? 'The user name or the password is wrong.' : formMessage(err, {});
      showAlert($('sign-in-error'), text);
      submit.disabled = false;
    }
  });

  $('sign-out').addEventListener('click', async () => {
    try {
      await api('DELETE', '/api/session');
    } finally {
      window.location.reload();
    }
  });

  /** Who is signed in; false when nobody is and signing in is required. */
  async function whoAmI() {
    try {
      me = await api('GET', '/api/session');
      if (me.auth === 'required') {
        $('who-name').textContent = `${me.username} (${me.role})`;
        $('who').hidden = false;
      }
      // An admin sees everyone's jobs and may narrow them to their own.
      $('jobs-owner-field').hidden = !showOwners();
      return true;
    } catch (err) {
      if (err.status === 401) {
        showSignIn();
        return false;
      }
      return true; // the server is away: the page says so and reconnects
    }
  }

  // ------------------------------------------------------------- helpers

  const announcer = $('announcer');
  /** Says something to screen readers (the region is polite). */
  function announce(text) {
    announcer.textContent = '';
    // A fresh text node makes repeated messages heard again.
    setTimeout(() => {
      announcer.textContent = text;
    }, 30);
  }

  /**
   * Shows the API's per-field messages next to the fields of `form`; returns the messages
   * that no field of the form shows.
   */
  function showFieldErrors(form, fields) {
    const rest = { ...fields };
    let first = null;
    for (const slot of form.querySelectorAll('.field-error[data-field]')) {
      const name = slot.dataset.field;
      const message = fields[name] || '';
      delete rest[name];
      slot.textContent = message ? capitalise(message) : '';
      const input = form.querySelector(`[aria-describedby~="${slot.id}"]`);
      if (input) {
        if (message) {
          input.setAttribute('aria-invalid', 'true');
          first = first || input;
        } else {
          input.removeAttribute('aria-invalid');
        }
      }
    }
    if (first) first.focus();
    return rest;
  }

  function clearFieldErrors(form) {
    showFieldErrors(form, {});
  }

  function capitalise(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function showAlert(el, text) {
    el.textContent = text || '';
    el.hidden = !text;
  }

  /** The message for an error that no field shows. */
  function formMessage(err, rest) {
    const extra = Object.entries(rest || {}).map(([k, v]) => `${k}: ${v}`);
    if (err.status === 422) return extra.length ? extra.join('; ') : '';
    return err.message;
  }

  /** A number input: undefined when blank, the number, or the raw text when not a number. */
  function intValue(input) {
    if (input.validity && input.validity.badInput) return 'not a number';
    const raw = input.value.trim();
    if (raw === '') return undefined;
    const value = Number(raw);
    return Number.isFinite(value) ? value : raw;
  }

  function formatBytes(bytes) {
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

  function formatDuration(seconds) {
    if (!Number.isFinite(seconds) || seconds < 0) return '';
    if (seconds < 10) return `${seconds.toFixed(1)} s`;
    if (seconds < 60) return `${Math.round(seconds)} s`;
    const minutes = Math.floor(seconds / 60);
    const rest = Math.round(seconds % 60);
    if (minutes < 60) return `${minutes} min ${rest} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  function formatTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return '';
    const sameDay = date.toDateString() === new Date().toDateString();
    const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    return sameDay ? time : `${date.toLocaleDateString()} ${time}`;
  }

  /** "12 s ago", "in 3 min"; with `bare`, only the span ("5 min"). */
  function relativeTime(iso, bare) {
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

  function seconds(from, to) {
    const a = Date.parse(from);
    const b = Date.parse(to);
    return Number.isFinite(a) && Number.isFinite(b) ? (b - a) / 1000 : NaN;
  }

  function button(text, className, label) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = `button button-small ${className || ''}`.trim();
    b.textContent = text;
    if (label) b.setAttribute('aria-label', label);
    return b;
  }

  // ------------------------------------------------------------ students

  const list = {
    page: 1,
    perPage: 25,
    q: '',
    minAge: undefined,
    maxAge: undefined,
    total: 0,
    request: 0,
    items: [],
  };
  let editing = null; // the student being edited, or null
  let confirmingDelete = null; // the id whose delete waits for a confirmation

  const filterForm = $('filter-form');
  const studentsBody = $('students-body');

  function totalPages() {
    return Math.max(1, Math.ceil(list.total / list.perPage));
  }

  async function loadStudents() {
    const ticket = ++list.request;
    const params = new URLSearchParams({ page: String(list.page), per_page: String(list.perPage) });
    if (list.q) params.set('q', list.q);
    if (list.minAge !== undefined) params.set('min_age', String(list.minAge));
    if (list.maxAge !== undefined) params.set('max_age', String(list.maxAge));
    studentsBody.setAttribute('aria-busy', 'true');
    studentsBody.classList.add('students-body-busy');
    try {
      const data = await api('GET', `/api/students?${params}`);
      if (ticket !== list.request) return;
      clearFieldErrors(filterForm);
      showAlert($('list-error'), '');
      list.total = data.total;
      list.items = data.items;
      if (list.page > totalPages() && data.total > 0) {
        list.page = totalPages();
        loadStudents();
        return;
      }
      renderStudents();
    } catch (err) {
      if (ticket !== list.request) return;
      const rest = err.status === 422 ? showFieldErrors(filterForm, err.fields) : {};
      const message = formMessage(err, rest);
      showAlert($('list-error'), message ? `Could not load students: ${message}` : '');
    } finally {
      if (ticket === list.request) {
        studentsBody.setAttribute('aria-busy', 'false');
        studentsBody.classList.remove('students-body-busy');
      }
    }
  }

  function renderStudents() {
    const rows = document.createDocumentFragment();
    for (const student of list.items) rows.appendChild(studentRow(student));
    studentsBody.replaceChildren(rows);
    $('students-empty').hidden = list.items.length > 0;
    const first = (list.page - 1) * list.perPage + 1;
    const last = first + list.items.length - 1;
    $('students-summary').textContent =
      list.items.length > 0
        ? `Showing ${n(first)}–${n(last)} of ${n(list.total)}`
        : `${n(list.total)} students`;
    $('page-info').textContent = `Page ${n(list.page)} of ${n(totalPages())}`;
    $('page-first').disabled = list.page <= 1;
    $('page-prev').disabled = list.page <= 1;
    $('page-next').disabled = list.page >= totalPages();
    $('page-last').disabled = list.page >= totalPages();
  }

  function studentRow(student) {
    const tr = document.createElement('tr');
    tr.dataset.id = String(student.id);
    if (editing && editing.id === student.id) tr.classList.add('editing');
    const id = document.createElement('td');
    id.className = 'col-id';
    id.textContent = String(student.id);
    const name = document.createElement('td');
    name.className = 'student-name';
    name.textContent = student.name;
    const age = document.createElement('td');
    age.className = 'col-age';
    age.textContent = String(student.age);
    const actions = document.createElement('td');
    actions.className = 'col-actions';
    actions.appendChild(rowActions(student));
    tr.append(id, name, age, actions);
    return tr;
  }

  function rowActions(student) {
    const box = document.createElement('div');
    box.className = 'row-actions';
    if (confirmingDelete === student.id) {
      const ask = document.createElement('span');
      ask.className = 'row-confirm';
      ask.textContent = 'Delete?';
      const yes = button('Delete', 'button-danger-solid', `Confirm: delete ${student.name}`);
      const no = button('Keep', '', `Keep ${student.name}`);
      yes.addEventListener('click', () => deleteStudent(student));
      no.addEventListener('click', () => {
        confirmingDelete = null;
        renderStudents();
        focusRowButton(student.id, 'delete');
      });
      box.append(ask, yes, no);
      return box;
    }
    const edit = button('Edit', '', `Edit ${student.name}`);
    edit.dataset.action = 'edit';
    edit.addEventListener('click', () => startEdit(student));
    const del = button('Delete', 'button-danger', `Delete ${student.name}`);
    del.dataset.action = 'delete';
    del.addEventListener('click', () => {
      confirmingDelete = student.id;
      renderStudents();
      const row = studentsBody.querySelector(`tr[data-id="${student.id}"]`);
      const keep = row && row.querySelector('.row-actions button:last-child');
      if (keep) keep.focus();
    });
    box.append(edit, del);
    return box;
  }

  function focusRowButton(id, action) {
    const row = studentsBody.querySelector(`tr[data-id="${id}"]`);
    const target = row && row.querySelector(`button[data-action="${action}"]`);
    if (target) target.focus();
  }

  async function deleteStudent(student) {
    try {
      await api('DELETE', `/api/students/${student.id}`);
      confirmingDelete = null;
      if (editing && editing.id === student.id) stopEdit();
      announce(`Deleted ${student.name}.`);
      setNote(`Deleted ${student.name} (ID ${student.id}).`);
      await loadStudents();
      $('students-title').focus();
    } catch (err) {
      confirmingDelete = null;
      renderStudents();
      showAlert($('list-error'), `Could not delete ${student.name}: ${err.message}`);
    }
  }

  function readFilters() {
    list.q = $('filter-q').value.trim();
    list.minAge = intValue($('filter-min-age'));
    list.maxAge = intValue($('filter-max-age'));
    list.perPage = Number($('filter-per-page').value) || 25;
    list.page = 1;
  }

  let searchTimer = null;
  filterForm.addEventListener('submit', (e) => {
    e.preventDefault();
    clearTimeout(searchTimer);
    readFilters();
    loadStudents();
  });
  $('filter-q').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      readFilters();
      loadStudents();
    }, 300);
  });
  $('filter-per-page').addEventListener('change', () => {
    readFilters();
    loadStudents();
  });
  $('filter-clear').addEventListener('click', () => {
    filterForm.reset();
    clearFieldErrors(filterForm);
    readFilters();
    loadStudents();
  });
  const goTo = (page) => {
    list.page = Math.min(Math.max(1, page), totalPages());
    loadStudents();
  };
  $('page-first').addEventListener('click', () => goTo(1));
  $('page-prev').addEventListener('click', () => goTo(list.page - 1));
  $('page-next').addEventListener('click', () => goTo(list.page + 1));
  $('page-last').addEventListener('click', () => goTo(totalPages()));
  $('students-title').tabIndex = -1;

  // -------------------------------------------------------- student form

  const studentForm = $('student-form');

  function setNote(text, show) {
    let note = $('student-note');
    if (!note) {
      note = document.createElement('p');
      note.id = 'student-note';
      note.className = 'muted form-note';
      note.setAttribute('role', 'status');
      studentForm.appendChild(note);
    }
    note.replaceChildren(document.createTextNode(text));
    if (show) {
      note.append(' ');
      const link = document.createElement('button');
      link.type = 'button';
      link.className = 'link-button';
      link.textContent = 'Show in list';
      link.addEventListener('click', () => {
        filterForm.reset();
        $('filter-q').value = show;
        readFilters();
        loadStudents();
      });
      note.appendChild(link);
    }
  }

  function startEdit(student) {
    editing = student;
    confirmingDelete = null;
    $('student-form-title').textContent = `Edit student ${student.id}`;
    $('student-submit').textContent = 'Save changes';
    $('student-cancel-edit').hidden = false;
    $('student-name').value = student.name;
    $('student-age').value = String(student.age);
    clearFieldErrors(studentForm);
    showAlert($('student-form-error'), '');
    renderStudents();
    $('student-name').focus();
  }

  function stopEdit() {
    const was = editing;
    editing = null;
    $('student-form-title').textContent = 'Add a student';
    $('student-submit').textContent = 'Add student';
    $('student-cancel-edit').hidden = true;
    studentForm.reset();
    clearFieldErrors(studentForm);
    showAlert($('student-form-error'), '');
    renderStudents();
    return was;
  }

  $('student-cancel-edit').addEventListener('click', () => {
    const was = stopEdit();
    if (was) focusRowButton(was.id, 'edit');
  });

  studentForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const submit = $('student-submit');
    const body = { name: $('student-name').value };
    const age = intValue($('student-age'));
    if (age !== undefined) body.age = age;
    submit.disabled = true;
    try {
      if (editing) {
        const saved = await api('PUT', `/api/students/${editing.id}`, body);
        stopEdit();
        announce(`Saved ${saved.name}.`);
        setNote(`Saved ${saved.name}, age ${saved.age} (ID ${saved.id}).`);
      } else {
        const created = await api('POST', '/api/students', body);
        studentForm.reset();
        clearFieldErrors(studentForm);
        announce(`Added ${created.name}.`);
        setNote(`Added ${created.name}, age ${created.age} (ID ${created.id}).`, created.name);
        $('student-name').focus();
      }
      showAlert($('student-form-error'), '');
      await loadStudents();
    } catch (err) {
      const rest = err.status === 422 ? showFieldErrors(studentForm, err.fields) : {};
      const message = formMessage(err, rest);
      showAlert($('student-form-error'), message);
      if (err.status === 404 && editing) {
        showAlert($('student-form-error'), 'This student no longer exists.');
      }
    } finally {
      submit.disabled = false;
    }
  });

  // --------------------------------------------------------------- export

  const exportForm = $('export-form');
  exportForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const submit = $('export-submit');
    const checked = exportForm.querySelector('input[name="format"]:checked');
    const body = { format: checked ? checked.value : 'csv' };
    const min = intValue($('export-min-age'));
    const max = intValue($('export-max-age'));
    if (min !== undefined) body.min_age = min;
    if (max !== undefined) body.max_age = max;
    submit.disabled = true;
    try {
      const job = await api('POST', '/api/exports', body);
      clearFieldErrors(exportForm);
      showAlert($('export-form-error'), '');
      upsertJob(job, false);
      showStarted(job);
      announce(`${jobName(job)} started.`);
    } catch (err) {
      const rest = err.status === 422 ? showFieldErrors(exportForm, err.fields) : {};
      showAlert($('export-form-error'), formMessage(err, rest));
    } finally {
      submit.disabled = false;
    }
  });

  // --------------------------------------------------------------- import

  const importForm = $('import-form');
  importForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const submit = $('import-submit');
    const file = $('import-file').files[0];
    clearFieldErrors(importForm);
    if (!file) {
      showFieldErrors(importForm, { file: 'choose a file to import' });
      return;
    }
    const jsonLines = /\.(jsonl|ndjson)$/i.test(file.name);
    const checked = importForm.querySelector('input[name="mode"]:checked');
    const mode = checked ? checked.value : 'all_or_nothing';
    submit.disabled = true;
    try {
      const job = await api('POST', `/api/imports?mode=${encodeURIComponent(mode)}`, file,
        jsonLines ? 'application/x-ndjson' : 'text/csv');
      showAlert($('import-form-error'), '');
      upsertJob(job, false);
      showStarted(job);
      announce(`${jobName(job)} started.`);
    } catch (err) {
      const rest = err.status === 422 ? showFieldErrors(importForm, err.fields) : {};
      showAlert($('import-form-error'), formMessage(err, rest));
    } finally {
      submit.disabled = false;
    }
  });

  // ----------------------------------------------------------------- jobs

  /** A job's statuses, in the order of its life; the last three end it. */
  const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
  const TERMINAL = new Set(STATUSES.slice(2));
  for (const status of STATUSES) $('jobs-status').add(new Option(capitalise(status), status));
  /** id → { job, el, samples: [{t, done}], cancelAsked, goneFile, expiryTimer } */
  const jobs = new Map();
  /** How many jobs the page remembers besides those it shows. */
  const MAX_KNOWN_JOBS = 500;
  const jobsList = $('jobs');
  const jobsFilter = $('jobs-filter');
  const template = $('job-template');
  /** Jobs deleted from this page: a page read or an event from before is not to bring one back. */
  const deleted = new Set();
  const MAX_DELETED = 1000;
  /** Who is signed in, as `GET /api/session` says. */
  let me = { username: null, role: 'admin', auth: 'off' };

  /** What the jobs view shows: its filters, its page (a stack of cursors) and its jobs. */
  const view = {
    status: '',
    kind: '',
    mine: false,
    q: '',
    limit: 25,
    cursors: [null], // cursors[i] is where page i + 1 starts
    next: null, // where the page after this one starts
    ids: [],
    request: 0,
    unseen: new Set(), // jobs newer than this page, not shown
    refreshTimer: null,
  };

  function isImport(job) {
    return job.kind === 'students_import';
  }

  function jobName(job) {
    const format = job.params && job.params.format === 'jsonl' ? 'JSON Lines' : 'CSV';
    return `${format} ${isImport(job) ? 'import' : 'export'}`;
  }

  function jobScope(job) {
    if (!isImport(job)) return jobRange(job.params);
    const mode = job.params && job.params.mode === 'skip_invalid' ? 'invalid rows skipped' : 'all or nothing';
    return `${formatBytes(job.params ? job.params.bytes : 0)} · ${mode}`;
  }

  function jobRange(params) {
    const lo = params ? params.min_age : null;
    const hi = params ? params.max_age : null;
    if (lo == null && hi == null) return 'all ages';
    if (lo != null && hi != null) return lo === hi ? `age ${lo}` : `ages ${lo}–${hi}`;
    return lo != null ? `ages ${lo}+` : `ages up to ${hi}`;
  }

  const shortId = (id) => id.slice(0, 8);

  /** A sortable key of an RFC 3339 time to the nanosecond (Date.parse stops at the ms). */
  function timeKey(iso) {
    const m = /^(.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(iso || '');
    if (!m) return '';
    const ms = Date.parse(`${m[1]}${m[3]}`);
    return `${String(ms).padStart(15, '0')}.${(m[2] || '').padEnd(9, '0')}`;
  }

  /** The listing's order: newest first, then by id (descending). */
  function listingOrder(a, b) {
    const ka = timeKey(a.created_at);
    const kb = timeKey(b.created_at);
    if (ka !== kb) return ka < kb ? 1 : -1;
    if (a.id === b.id) return 0;
    return a.id < b.id ? 1 : -1;
  }

  function matchesView(job) {
    if (view.status && job.status !== view.status) return false;
    if (view.kind && job.kind !== view.kind) return false;
    if (view.q && !job.id.startsWith(view.q.toLowerCase())) return false;
    if (view.mine && job.created_by !== me.username) return false;
    return true;
  }

  const filtered = () => Boolean(view.status || view.kind || view.q || view.mine);

  /** Whether the job's file is past its expiry (or the server said it is gone). */
  function isExpired(entry) {
    const result = entry.job.result;
    if (!result || !result.file) return false;
    if (entry.goneFile === result.file) return true;
    return Boolean(result.expires_at) && Date.parse(result.expires_at) <= Date.now();
  }

  /** Whether a timed-out ending: a time limit is final, never retried. */
  const timedOut = (job) => job.status === 'failed' && /^timed out\b/.test(job.error || '');

  // -- loading a page

  function readJobFilters() {
    view.status = $('jobs-status').value;
    view.kind = $('jobs-kind').value;
    view.mine = $('jobs-owner').value === 'true';
    view.q = $('jobs-q').value.trim().toLowerCase();
    view.limit = Number($('jobs-limit').value) || 25;
    view.cursors = [null];
    view.next = null;
    view.unseen.clear();
  }

  async function loadJobs() {
    const ticket = ++view.request;
    clearTimeout(view.refreshTimer);
    view.refreshTimer = null;
    const params = new URLSearchParams({ limit: String(view.limit) });
    if (view.status) params.set('status', view.status);
    if (view.kind) params.set('kind', view.kind);
    if (view.q) params.set('q', view.q);
    if (view.mine) params.set('mine', 'true');
    const cursor = view.cursors[view.cursors.length - 1];
    if (cursor) params.set('cursor', cursor);
    jobsList.setAttribute('aria-busy', 'true');
    try {
      const data = await api('GET', `/api/jobs?${params}`);
      if (ticket !== view.request) return;
      clearFieldErrors(jobsFilter);
      showAlert($('jobs-message'), '');
      view.ids = data.items.filter((job) => !deleted.has(job.id)).map((job) => remember(job).job.id);
      view.next = data.next_cursor || null;
      if (view.cursors.length === 1) view.unseen.clear();
      renderJobs();
    } catch (err) {
      if (ticket !== view.request) return;
      const rest = err.status === 422 ? showFieldErrors(jobsFilter, err.fields) : {};
      const message = formMessage(err, rest);
      showAlert($('jobs-message'), message ? `Could not load the jobs: ${message}` : '');
    } finally {
      if (ticket === view.request) jobsList.setAttribute('aria-busy', 'false');
    }
  }

  /** Reads the page again soon: a job came or went, so its cursor may be stale. */
  function refreshJobsSoon(ms = 1000) {
    if (view.refreshTimer) return;
    view.refreshTimer = setTimeout(() => {
      view.refreshTimer = null;
      loadJobs();
    }, ms);
  }

  let jobsSearchTimer = null;
  const applyJobFilters = () => {
    clearTimeout(jobsSearchTimer);
    readJobFilters();
    loadJobs();
  };
  jobsFilter.addEventListener('submit', (e) => {
    e.preventDefault();
    applyJobFilters();
  });
  for (const id of ['jobs-status', 'jobs-kind', 'jobs-owner', 'jobs-limit']) {
    $(id).addEventListener('change', applyJobFilters);
  }
  $('jobs-q').addEventListener('input', () => {
    clearTimeout(jobsSearchTimer);
    jobsSearchTimer = setTimeout(applyJobFilters, 300);
  });
  $('jobs-clear').addEventListener('click', () => {
    jobsFilter.reset();
    applyJobFilters();
  });
  const showNewest = () => {
    view.cursors = [null];
    loadJobs();
  };
  $('jobs-newest').addEventListener('click', showNewest);
  $('jobs-newer').addEventListener('click', () => {
    if (view.cursors.length > 1) view.cursors.pop();
    loadJobs();
  });
  $('jobs-older').addEventListener('click', () => {
    if (!view.next) return;
    view.cursors.push(view.next);
    loadJobs();
  });
  $('jobs-new-show').addEventListener('click', () => {
    jobsFilter.reset();
    readJobFilters();
    loadJobs();
    $('jobs-title').focus();
  });

  // -- taking in what the server says

  /** Keeps `job` unless the page already has a newer version of it (by seq). */
  function remember(job) {
    if (deleted.has(job.id)) return { job, el: null, samples: [] };
    const known = jobs.get(job.id);
    if (known && job.seq <= known.job.seq) return known;
    const entry = known || { job, el: null, samples: [] };
    entry.job = job;
    jobs.set(job.id, entry);
    sample(entry);
    return entry;
  }

  /** Takes a newer version of a job (a snapshot, a status event or an API answer). */
  function upsertJob(job, quiet) {
    if (deleted.has(job.id)) return;
    const known = jobs.get(job.id);
    if (known && job.seq <= known.job.seq) return;
    const before = known ? known.job.status : null;
    const entry = remember(job);
    changed(entry);
    if (!quiet && before && before !== job.status && TERMINAL.has(job.status)) {
      announce(`${jobName(job)} ${job.status}.`);
    }
  }

  /** Shows a change of `entry` wherever the job is shown. */
  function changed(entry, liveText) {
    if (view.ids.includes(entry.job.id)) renderJob(entry);
    else if (placeInView(entry)) renderJobs();
    if (detail.id === entry.job.id) {
      if (liveText) noteLive(liveText, entry.job.seq);
      renderDetail();
    }
  }

  /**
   * Puts a job the view does not show yet in its place, if it belongs to this page: it
   * matches the filters and sorts between the page's first and last job. Returns whether
   * the view shows it.
   */
  function placeInView(entry) {
    const { job } = entry;
    if (view.ids.includes(job.id)) return true;
    if (!matchesView(job)) return false;
    const shown = view.ids.map((id) => jobs.get(id)).filter(Boolean).map((e) => e.job);
    const last = shown[shown.length - 1];
    if (last && shown.length >= view.limit && listingOrder(job, last) > 0) return false;
    if (view.cursors.length > 1 && (!shown[0] || listingOrder(job, shown[0]) < 0)) {
      // Newer than this page: it is on the first page.
      view.unseen.add(job.id);
      renderNewNote();
      return false;
    }
    let at = shown.findIndex((other) => listingOrder(job, other) < 0);
    if (at < 0) at = shown.length;
    view.ids.splice(at, 0, job.id);
    if (view.ids.length > view.limit) {
      view.ids.length = view.limit;
      refreshJobsSoon(); // the page's cursor moved
    }
    return view.ids.includes(job.id);
  }

  function forgetJob(id) {
    deleted.add(id);
    if (deleted.size > MAX_DELETED) deleted.delete(deleted.values().next().value);
    // A page read already under way may still list it: read again instead.
    view.request += 1;
    jobsList.setAttribute('aria-busy', 'false');
    const entry = jobs.get(id);
    if (entry) {
      clearTimeout(entry.expiryTimer);
      if (entry.el) entry.el.remove();
    }
    jobs.delete(id);
    view.unseen.delete(id);
    const at = view.ids.indexOf(id);
    if (at >= 0) {
      view.ids.splice(at, 1);
      renderJobs();
    }
    refreshJobsSoon(300); // a job from the next page moves up
  }

  function applyProgress(event) {
    const entry = jobs.get(event.job_id);
    if (!entry) {
      // A job this page has not seen: read it whole.
      fetchJob(event.job_id);
      return;
    }
    if (event.seq <= entry.job.seq) return;
    entry.job = {
      ...entry.job,
      seq: event.seq,
      progress: { done: event.done, total: event.total },
    };
    if (entry.job.status === 'queued') entry.job.status = 'running';
    sample(entry);
    changed(entry, { progress: true, text: `Progress: ${n(event.done)} of ${n(event.total)} rows` });
  }

  function applyStatus(event) {
    if (event.job && event.job.schedule_id && !jobs.has(event.job.id)) loadSchedules();
    if (event.job && isImport(event.job) && event.job.status === 'succeeded') {
      const before = jobs.get(event.job.id);
      // New students: show them (once, however many times the ending is heard).
      if (!before || before.job.status !== 'succeeded') loadStudents();
    }
    const status = event.job ? event.job.status : event.status;
    // A job running means a worker is back: say so without waiting for the next poll.
    if (status === 'running' && workers.known && workers.list.length === 0) loadWorkers();
    let job = event.job;
    if (!job) {
      const entry = jobs.get(event.job_id);
      if (!entry) {
        fetchJob(event.job_id);
        return;
      }
      if (event.seq <= entry.job.seq) return;
      job = {
        ...entry.job,
        seq: event.seq,
        status: event.status,
        error: event.error === undefined ? entry.job.error : event.error,
        result: event.result === undefined ? entry.job.result : event.result,
      };
    }
    if (deleted.has(job.id)) return;
    const known = jobs.get(job.id);
    if (known && job.seq <= known.job.seq) return;
    const before = known ? known.job.status : null;
    const entry = remember(job);
    const what = job.error && job.status === 'failed' ? `${job.status}: ${job.error}` : job.status;
    changed(entry, { text: `Status: ${job.cancel_requested && !TERMINAL.has(job.status) ? 'cancel requested' : what}` });
    if (before && before !== job.status && TERMINAL.has(job.status)) {
      announce(`${jobName(job)} ${job.status}.`);
    }
    if (detail.id === job.id) loadAttemptsSoon();
  }

  const fetching = new Set();
  async function fetchJob(id) {
    if (fetching.has(id)) return;
    fetching.add(id);
    try {
      upsertJob(await api('GET', `/api/jobs/${encodeURIComponent(id)}`), true);
    } catch (_) {
      // The next event or snapshot brings it.
    } finally {
      fetching.delete(id);
    }
  }

  /** Keeps recent (time, rows done) samples of a running job to measure its rate. */
  function sample(entry) {
    const { job } = entry;
    if (job.status !== 'running') {
      entry.samples = [];
      return;
    }
    const now = performance.now();
    const samples = entry.samples;
    const last = samples[samples.length - 1];
    if (last && job.progress.done < last.done) samples.length = 0; // a retry started over
    samples.push({ t: now, done: job.progress.done });
    while (samples.length > 2 && now - samples[0].t > 5000) samples.shift();
  }

  function rate(entry) {
    const s = entry.samples;
    if (s.length < 2) return NaN;
    const dt = (s[s.length - 1].t - s[0].t) / 1000;
    if (dt < 0.25) return NaN;
    return (s[s.length - 1].done - s[0].done) / dt;
  }

  /** Forgets jobs neither shown nor running once the page knows too many. */
  function evict() {
    if (jobs.size <= MAX_KNOWN_JOBS) return;
    const keep = new Set(view.ids);
    for (const [id, entry] of jobs) {
      if (jobs.size <= MAX_KNOWN_JOBS) break;
      if (keep.has(id) || id === detail.id || !TERMINAL.has(entry.job.status)) continue;
      clearTimeout(entry.expiryTimer);
      jobs.delete(id);
    }
  }

  // -- showing the view

  function renderJobs() {
    const els = [];
    for (const id of view.ids) {
      const entry = jobs.get(id);
      if (!entry) continue;
      renderJob(entry);
      els.push(entry.el);
    }
    // Rows stay in place (and keep their focus) unless they must move: the rows that go
    // are taken out first, so that those that stay are not moved around them.
    const keep = new Set(els);
    for (const child of [...jobsList.children]) if (!keep.has(child)) child.remove();
    let at = jobsList.firstElementChild;
    for (const el of els) {
      if (el === at) at = at.nextElementSibling;
      else jobsList.insertBefore(el, at);
    }
    while (at) {
      const next = at.nextElementSibling;
      at.remove();
      at = next;
    }
    const page = view.cursors.length;
    $('jobs-empty').hidden = els.length > 0;
    $('jobs-empty').textContent = filtered() || page > 1
      ? 'No jobs match these filters.'
      : 'No jobs yet. Start an export or an import above.';
    $('jobs-summary').textContent = els.length > 0
      ? `${n(els.length)} ${els.length === 1 ? 'job' : 'jobs'} on this page${filtered() ? ' (filtered)' : ''}`
      : '';
    $('jobs-page-info').textContent = `Page ${n(page)}`;
    $('jobs-newest').disabled = page <= 1;
    $('jobs-newer').disabled = page <= 1;
    $('jobs-older').disabled = !view.next;
    renderNewNote();
    evict();
  }

  function renderNewNote() {
    const count = view.unseen.size;
    $('jobs-new').hidden = count === 0;
    $('jobs-new-text').textContent =
      count === 1 ? '1 newer job is not shown.' : `${n(count)} newer jobs are not shown.`;
  }

  function renderJob(entry) {
    const { job } = entry;
    if (!entry.el) {
      const el = template.content.firstElementChild.cloneNode(true);
      el.dataset.jobId = job.id;
      el.querySelector('.job-name').href = `#job/${job.id}`;
      el.querySelector('.job-cancel').addEventListener('click', () => cancelJob(entry, jobsReport));
      el.querySelector('.job-retry').addEventListener('click', () => retryJob(entry, jobsReport));
      const download = el.querySelector('.job-download');
      download.addEventListener('click', (e) => checkedDownload(e, entry, download, jobsReport));
      entry.el = el;
    }
    const el = entry.el;
    const status = job.status;
    const cancelling = (job.cancel_requested || entry.cancelAsked) && !TERMINAL.has(status);
    el.dataset.status = status;
    const name = jobName(job);
    const sid = shortId(job.id);
    const link = el.querySelector('.job-name');
    link.textContent = name;
    link.setAttribute('aria-label', `Details of ${name} ${sid}`);
    const by = showOwners() && job.created_by ? ` · by ${job.created_by}` : '';
    el.querySelector('.job-meta').textContent = `${jobScope(job)} · ${sid} · ${formatTime(job.created_at)}${by}`;

    const badge = el.querySelector('.job-status');
    badge.dataset.status = status;
    badge.textContent = cancelling ? 'cancelling' : status;

    const pct = renderProgress(el.querySelector('.progress'), job, `Progress of ${name} ${sid}`);
    el.querySelector('.job-numbers').textContent = numbersText(entry, pct);

    const cancel = el.querySelector('.job-cancel');
    cancel.hidden = TERMINAL.has(status);
    cancel.disabled = cancelling;
    cancel.textContent = cancelling ? 'Cancelling…' : 'Cancel';
    cancel.setAttribute('aria-label', `Cancel ${name} ${sid}`);

    const retry = el.querySelector('.job-retry');
    retry.hidden = !(status === 'failed' || status === 'cancelled');
    retry.setAttribute('aria-label', `Retry ${name} ${sid}`);

    const expired = isExpired(entry);
    el.querySelector('.job-expired').hidden = !expired;
    el.classList.toggle('job-is-expired', expired);
    renderDownload(el.querySelector('.job-download'), entry, `${name} ${sid}`);
    watchExpiry(entry);

    const error = el.querySelector('.job-error');
    const message = status === 'failed' ? job.error || `The ${isImport(job) ? 'import' : 'export'} failed.` : '';
    error.textContent = message ? `Error: ${message}` : '';
    error.title = message;
    error.hidden = !message;
  }

  /** Fills a progress bar from the job; returns the percentage. */
  function renderProgress(bar, job, label) {
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
  function renderDownload(link, entry, what) {
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
  function watchExpiry(entry) {
    const result = entry.job.result;
    const at = result && result.file && result.expires_at ? Date.parse(result.expires_at) : NaN;
    if (entry.expiryAt === at) return;
    clearTimeout(entry.expiryTimer);
    entry.expiryAt = at;
    const wait = at - Date.now();
    if (!(wait > 0) || wait > 2 ** 31 - 1) return;
    entry.expiryTimer = setTimeout(() => changed(entry), wait + 50);
  }

  const showOwners = () => me.auth === 'required' && me.role === 'admin';

  function attemptsText(job) {
    return job.attempts === 1 ? '1 attempt' : `${n(job.attempts)} attempts`;
  }

  function numbersText(entry, pct) {
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

  /** A job started from a form but outside what the view shows: a note says so. */
  function showStarted(job) {
    if (view.ids.includes(job.id)) return;
    view.unseen.add(job.id);
    renderNewNote();
  }

  // -- acting on a job

  const jobsReport = (text) => showAlert($('jobs-message'), text);

  async function cancelJob(entry, report) {
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

  async function retryJob(entry, report) {
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

  async function deleteJob(entry, report) {
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
  async function checkedDownload(e, entry, link, report) {
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

  // ---------------------------------------------------------- job detail

  const JOB_HASH = /^#job\/([0-9a-fA-F-]{36})$/;
  const dialog = $('job-detail');
  /** The job whose detail is open, its attempts and the live events seen meanwhile. */
  const detail = {
    id: null,
    opener: null,
    attempts: [],
    live: [],
    missing: false,
    request: 0,
    attemptsTimer: null,
  };
  const MAX_LIVE_EVENTS = 50;

  function openDetail(id, opener) {
    const same = detail.id === id.toLowerCase() && dialog.open;
    if (!same) {
      detail.id = id.toLowerCase();
      detail.attempts = [];
      detail.live = [];
      detail.missing = false;
      detail.opener = opener || document.activeElement;
      $('detail-confirm').hidden = true;
      showAlert($('detail-message'), '');
      setDetailNote('');
    }
    if (!dialog.open) dialog.showModal();
    renderDetail();
    loadDetail();
    if (!same) $('detail-close').focus();
  }

  function closeDetail() {
    if (dialog.open) dialog.close();
  }

  dialog.addEventListener('close', () => {
    const closed = detail.id;
    detail.id = null;
    clearTimeout(detail.attemptsTimer);
    if (JOB_HASH.test(location.hash)) {
      history.replaceState(null, '', `${location.pathname}${location.search}`);
    }
    // The focus goes back where it was, else to the job's row, else to the jobs' heading.
    const row = jobsList.querySelector(`li[data-job-id="${closed}"] .job-name`);
    const back = [detail.opener, row].find((el) => el && el.isConnected && el !== document.body);
    detail.opener = null;
    (back || $('jobs-title')).focus();
  });
  // A click on the backdrop (outside the dialog's box) closes it too.
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) {
      const box = dialog.getBoundingClientRect();
      const inside = e.clientX >= box.left && e.clientX <= box.right && e.clientY >= box.top && e.clientY <= box.bottom;
      if (!inside) closeDetail();
    }
  });
  $('detail-close').addEventListener('click', closeDetail);

  /** `#job/<id>` opens that job's detail: links, reloads and shared addresses alike. */
  function routeHash() {
    const m = JOB_HASH.exec(location.hash);
    if (m) openDetail(m[1], document.activeElement);
    else if (dialog.open) closeDetail(); // back from #job/<id>
  }
  window.addEventListener('hashchange', routeHash);

  async function loadDetail() {
    const { id } = detail;
    const ticket = ++detail.request;
    try {
      const [job, attempts] = await Promise.all([
        api('GET', `/api/jobs/${encodeURIComponent(id)}`),
        api('GET', `/api/jobs/${encodeURIComponent(id)}/attempts`),
      ]);
      if (ticket !== detail.request || detail.id !== id) return;
      detail.attempts = attempts.items || [];
      detail.missing = false;
      upsertJob(job, true);
    } catch (err) {
      if (ticket !== detail.request || detail.id !== id) return;
      if (err.status === 404) detail.missing = true;
      else showAlert($('detail-message'), `Could not load the job: ${err.message}`);
    }
    renderDetail();
  }

  /** Reads the attempts again shortly after a status change (one read for a burst). */
  function loadAttemptsSoon() {
    clearTimeout(detail.attemptsTimer);
    const { id } = detail;
    detail.attemptsTimer = setTimeout(async () => {
      try {
        const attempts = await api('GET', `/api/jobs/${encodeURIComponent(id)}/attempts`);
        if (detail.id !== id) return;
        detail.attempts = attempts.items || [];
        renderDetail();
      } catch (_) {
        // The next status change reads them again.
      }
    }, 300);
  }

  /** A live event seen while the detail is open; progress events replace each other. */
  function noteLive(event, seq) {
    const last = detail.live[detail.live.length - 1];
    const item = { t: new Date(), text: event.text, progress: Boolean(event.progress), seq, live: true };
    if (last && last.progress && item.progress) detail.live[detail.live.length - 1] = item;
    else detail.live.push(item);
    if (detail.live.length > MAX_LIVE_EVENTS) detail.live.shift();
  }

  function setDetailNote(text) {
    const note = $('detail-note');
    note.textContent = text;
    note.hidden = !text;
  }

  const detailReport = (text) => showAlert($('detail-message'), text);

  const detailEntry = () => (detail.id ? jobs.get(detail.id) : null);

  $('detail-retry').addEventListener('click', async () => {
    const entry = detailEntry();
    if (!entry) return;
    showAlert($('detail-message'), '');
    if (await retryJob(entry, detailReport)) {
      setDetailNote('Back in the queue with a fresh set of attempts.');
      detail.live.push({ t: new Date(), text: 'Retried from this page', live: true });
      loadAttemptsSoon();
      renderDetail();
    }
  });
  $('detail-cancel').addEventListener('click', () => {
    const entry = detailEntry();
    if (entry) cancelJob(entry, detailReport);
  });
  $('detail-delete').addEventListener('click', () => {
    $('detail-confirm').hidden = false;
    renderDetail();
    $('detail-delete-no').focus();
  });
  $('detail-delete-no').addEventListener('click', () => {
    $('detail-confirm').hidden = true;
    renderDetail();
    $('detail-delete').focus();
  });
  $('detail-delete-yes').addEventListener('click', async () => {
    const entry = detailEntry();
    if (!entry) return;
    if (await deleteJob(entry, detailReport)) {
      closeDetail();
    } else {
      $('detail-confirm').hidden = true;
      renderDetail();
    }
  });
  $('detail-download').addEventListener('click', (e) => {
    const entry = detailEntry();
    if (entry) checkedDownload(e, entry, $('detail-download'), detailReport);
    else e.preventDefault();
  });

  const OUTCOMES = {
    succeeded: 'succeeded',
    failed: 'failed',
    cancelled: 'was cancelled',
    retry: 'failed; to be tried again',
    released: 'was handed back at shutdown (not counted)',
    lost: 'lost its worker (the lease expired)',
  };

  function renderDetail() {
    if (!detail.id) return;
    const entry = detailEntry();
    const missing = $('detail-missing');
    $('detail-body').hidden = detail.missing || !entry;
    missing.hidden = !(detail.missing || !entry);
    $('detail-id').textContent = detail.id;
    if (detail.missing) {
      $('detail-title').textContent = 'No such job';
      missing.textContent = 'There is no job with this id: it was deleted, or it is not yours to see.';
      return;
    }
    if (!entry) {
      $('detail-title').textContent = 'Job';
      missing.textContent = 'Loading…';
      return;
    }
    const { job } = entry;
    const status = job.status;
    const name = jobName(job);
    const cancelling = (job.cancel_requested || entry.cancelAsked) && !TERMINAL.has(status);
    $('detail-title').textContent = name;
    // "Back in the queue" holds until the job runs again.
    if (status !== 'queued') setDetailNote('');
    const badge = $('detail-badge');
    badge.dataset.status = status;
    badge.textContent = cancelling ? 'cancelling' : status;
    const pct = renderProgress($('detail-progress'), job, `Progress of ${name} ${shortId(job.id)}`);
    const expired = isExpired(entry);
    $('detail-numbers').textContent = numbersText(entry, pct) + (expired ? ' · file expired' : '');
    const error = $('detail-error');
    error.textContent = status === 'failed' && job.error ? `Error: ${job.error}` : '';
    error.hidden = !error.textContent;

    const confirming = !$('detail-confirm').hidden;
    $('detail-retry').hidden = !(status === 'failed' || status === 'cancelled');
    $('detail-cancel').hidden = TERMINAL.has(status);
    $('detail-cancel').disabled = cancelling;
    $('detail-cancel').textContent = cancelling ? 'Cancelling…' : 'Cancel job';
    $('detail-delete').hidden = !TERMINAL.has(status) || confirming;
    if (!TERMINAL.has(status)) $('detail-confirm').hidden = true;
    const download = $('detail-download');
    renderDownload(download, entry, `${name} ${shortId(job.id)}`);
    if (!download.hidden && isImport(job)) download.textContent = 'Download rejected rows';

    renderDetailFields(entry, expired);
    renderAttempts();
    renderTimeline(job);
  }

  function field(list, term, value, className) {
    if (value === null || value === undefined || value === '') return;
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    if (className) dd.className = className;
    if (value instanceof Node) dd.appendChild(value);
    else dd.textContent = String(value);
    list.append(dt, dd);
  }

  function when(iso) {
    if (!iso) return null;
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    const time = document.createElement('time');
    time.dateTime = iso;
    time.title = iso;
    time.textContent = `${date.toLocaleString()} (${relativeTime(iso)})`;
    return time;
  }

  function plainValue(value) {
    if (value === null || value === undefined) return '—';
    if (typeof value === 'object') return JSON.stringify(value);
    return typeof value === 'number' ? n(value) : String(value);
  }

  function keyValues(object, format) {
    const entries = Object.entries(object || {});
    if (entries.length === 0) return '—';
    const list = document.createElement('ul');
    list.className = 'key-values';
    for (const [key, value] of entries) {
      const li = document.createElement('li');
      const k = document.createElement('span');
      k.className = 'muted';
      k.textContent = `${key}: `;
      const v = document.createElement('span');
      v.textContent = format(key, value);
      li.append(k, v);
      list.appendChild(li);
    }
    return list;
  }

  function renderDetailFields(entry, expired) {
    const { job } = entry;
    const list = $('detail-fields');
    list.replaceChildren();
    field(list, 'Kind', `${job.kind} (${isImport(job) ? 'import' : 'export'})`);
    field(list, 'Parameters', keyValues(job.params, (key, value) => (key === 'bytes' ? formatBytes(value) : plainValue(value))));
    field(list, 'Status', job.status + (job.cancel_requested && !TERMINAL.has(job.status) ? ' (cancel requested)' : ''));
    const { done, total } = job.progress || { done: 0, total: 0 };
    field(list, 'Progress', `${n(done)} of ${n(total)} rows`);
    field(list, 'Attempts', `${n(job.attempts)} of ${n(job.max_attempts)}`);
    field(list, 'Created by', job.created_by || '—');
    if (job.schedule_id) field(list, 'Schedule', job.schedule_id);
    field(list, 'Created', when(job.created_at));
    if (job.status === 'queued' && Date.parse(job.run_after) > Date.now()) field(list, 'Runs after', when(job.run_after));
    field(list, 'Started', when(job.started_at));
    field(list, 'Finished', when(job.finished_at));
    field(list, 'Sequence', n(job.seq));
    field(list, 'Error', job.error, 'detail-error-text');
    if (job.result) {
      const result = keyValues(job.result, (key, value) => {
        if (key === 'bytes') return `${formatBytes(value)} (${n(value)} bytes)`;
        if (key === 'expires_at') {
          return `${new Date(value).toLocaleString()} (${expired ? 'expired' : 'expires'} ${relativeTime(value)})`;
        }
        return plainValue(value);
      });
      field(list, 'Result', result);
    }
    if (expired) field(list, 'File', 'Expired: it can no longer be downloaded.', 'detail-expired');
  }

  function renderAttempts() {
    const body = $('detail-attempts-body');
    const rows = document.createDocumentFragment();
    for (const attempt of detail.attempts) {
      const tr = document.createElement('tr');
      tr.dataset.outcome = attempt.outcome || 'running';
      const cells = [
        String(attempt.number),
        attempt.worker,
        formatTime(attempt.started_at),
        attempt.ended_at
          ? `${formatTime(attempt.ended_at)} (${formatDuration(seconds(attempt.started_at, attempt.ended_at))})`
          : '—',
        (attempt.outcome || 'running') +
          (attempt.resumed_from != null ? ` · resumed after ${n(attempt.resumed_from)} rows` : ''),
        attempt.error || '',
      ];
      const labels = ['#', 'Worker', 'Started', 'Ended', 'Outcome', 'Error'];
      cells.forEach((text, i) => {
        const td = document.createElement('td');
        td.textContent = text;
        td.dataset.label = labels[i];
        td.className = `attempt-${labels[i].replace('#', 'number').toLowerCase()}`;
        tr.appendChild(td);
      });
      rows.appendChild(tr);
    }
    body.replaceChildren(rows);
    $('detail-attempts').hidden = detail.attempts.length === 0;
    $('detail-attempts-empty').hidden = detail.attempts.length > 0;
  }

  /** The job's story: from its timestamps and attempts, then what was heard live. */
  function renderTimeline(job) {
    const items = [];
    const at = (iso) => (iso ? new Date(iso) : null);
    items.push({ t: at(job.created_at), text: `Created${job.created_by ? ` by ${job.created_by}` : ''}${job.schedule_id ? ' by its schedule' : ''}` });
    for (const attempt of detail.attempts) {
      const resumed = attempt.resumed_from != null ? `, resuming after ${n(attempt.resumed_from)} rows` : '';
      items.push({ t: at(attempt.started_at), text: `Attempt ${attempt.number} started on ${attempt.worker}${resumed}` });
      if (attempt.ended_at) {
        const outcome = OUTCOMES[attempt.outcome] || attempt.outcome || 'ended';
        items.push({
          t: at(attempt.ended_at),
          text: `Attempt ${attempt.number} ${outcome}${attempt.error ? `: ${attempt.error}` : ''}`,
          outcome: attempt.outcome,
        });
      }
    }
    if (job.cancel_requested && !TERMINAL.has(job.status)) items.push({ t: null, text: 'Cancel requested' });
    if (job.status === 'queued' && job.attempts > 0 && Date.parse(job.run_after) > Date.now()) {
      items.push({ t: at(job.run_after), text: `Attempt ${job.attempts + 1} due` });
    }
    if (job.finished_at) {
      items.push({ t: at(job.finished_at), text: `Ended ${job.status}`, outcome: job.status });
    }
    const timeline = items.concat(detail.live);
    // In time order; what has no time (a request not yet acted on) last.
    const key = (item) => (item.t ? item.t.getTime() : Infinity);
    timeline.sort((a, b) => key(a) - key(b));
    const list = $('detail-timeline');
    const rows = document.createDocumentFragment();
    for (const item of timeline) {
      const li = document.createElement('li');
      if (item.live) li.classList.add('timeline-live');
      if (item.outcome) li.dataset.outcome = item.outcome;
      const time = document.createElement('span');
      time.className = 'timeline-time';
      time.textContent = item.t ? formatTime(item.t.toISOString()) : 'now';
      const text = document.createElement('span');
      text.className = 'timeline-text';
      text.textContent = item.text + (item.live ? ' (live)' : '');
      li.append(time, text);
      rows.appendChild(li);
    }
    list.replaceChildren(rows);
  }

  // ------------------------------------------------------------ schedules

  const SCHEDULES_REFRESH_MS = 30_000;

  async function loadSchedules() {
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


  // ------------------------------------------------------------- workers

  const WORKERS_REFRESH_MS = 5000;
  /** The live workers, as `GET /api/workers` last said; `known` once it has answered. */
  const workers = {
    view: 'workers',
    supported: true,
    known: false,
    list: [],
    lastSeen: null,
    liveAfter: 10,
    loading: false,
    bannerShown: false,
  };

  /**
   * Reads a route that an older server does not have (404), or that is not this user's to
   * read (403): while it answers so, its view and its link are hidden, quietly.
   */
  async function loadOptional(feature, path, take) {
    if (!feature.supported || feature.loading) return;
    feature.loading = true;
    let data;
    try {
      data = await api('GET', path);
    } catch (err) {
      if ([403, 404, 405].includes(err.status)) {
        feature.supported = false;
        showFeature(feature, false);
        take(null);
      } else {
        showAlert($(`${feature.view}-error`), `Could not refresh the ${feature.view}: ${err.message}`);
      }
      return;
    } finally {
      feature.loading = false;
    }
    showAlert($(`${feature.view}-error`), '');
    showFeature(feature, true);
    take(data);
  }

  function showFeature(feature, shown) {
    $(feature.view).hidden = !shown;
    document.querySelector(`.views-nav a[href="#${feature.view}-title"]`).hidden = !shown;
  }

  const loadWorkers = () => loadOptional(workers, '/api/workers', takeWorkers);

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

  // ------------------------------------------------------------ activity

  const STATS_REFRESH_MS = 15_000;
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

  const loadStats = () => loadOptional(stats, '/api/stats?minutes=60', (data) => data && renderStats(data));

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

  // ------------------------------------------------------------ WebSocket

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

  function connect() {
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


  // ----------------------------------------------------------------- start

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
})();
