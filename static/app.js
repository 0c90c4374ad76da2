// roster: the one page. Students through the REST API; every job live through /ws.
// Plain browser JavaScript, no build step and nothing fetched from elsewhere.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const numbers = new Intl.NumberFormat('en-US');
  const n = (v) => numbers.format(v);

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
      const me = await api('GET', '/api/session');
      if (me.auth === 'required') {
        $('who-name').textContent = `${me.username} (${me.role})`;
        $('who').hidden = false;
      }
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
      announce(`${jobName(job)} started.`);
    } catch (err) {
      const rest = err.status === 422 ? showFieldErrors(importForm, err.fields) : {};
      showAlert($('import-form-error'), formMessage(err, rest));
    } finally {
      submit.disabled = false;
    }
  });

  // ----------------------------------------------------------------- jobs

  /** id → { job, el, samples: [{t, done}] } */
  const jobs = new Map();
  const jobsList = $('jobs');
  const template = $('job-template');
  const MAX_JOBS = 200;
  const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

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

  /** Takes a newer version of a job (a snapshot, a status event or an API answer). */
  function upsertJob(job, quiet) {
    const known = jobs.get(job.id);
    if (known && job.seq <= known.job.seq) return;
    const before = known ? known.job.status : null;
    const entry = known || { job, el: null, samples: [] };
    entry.job = job;
    jobs.set(job.id, entry);
    sample(entry);
    render(entry);
    if (!quiet && before && before !== job.status && TERMINAL.has(job.status)) {
      announce(`${jobName(job)} ${job.status}.`);
    }
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
    render(entry);
  }

  function applyStatus(event) {
    if (event.job && event.job.schedule_id && !jobs.has(event.job.id)) loadSchedules();
    if (event.job && isImport(event.job) && event.job.status === 'succeeded') {
      const before = jobs.get(event.job.id);
      // New students: show them (once, however many times the ending is heard).
      if (!before || before.job.status !== 'succeeded') loadStudents();
    }
    if (event.job) {
      upsertJob(event.job, false);
      return;
    }
    const entry = jobs.get(event.job_id);
    if (!entry) {
      fetchJob(event.job_id);
      return;
    }
    if (event.seq <= entry.job.seq) return;
    upsertJob(
      {
        ...entry.job,
        seq: event.seq,
        status: event.status,
        error: event.error === undefined ? entry.job.error : event.error,
        result: event.result === undefined ? entry.job.result : event.result,
      },
      false,
    );
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

  function render(entry) {
    const { job } = entry;
    if (!entry.el) {
      entry.el = template.content.firstElementChild.cloneNode(true);
      entry.el.dataset.jobId = job.id;
      const cancel = entry.el.querySelector('.job-cancel');
      cancel.addEventListener('click', () => cancelJob(entry));
      placeJob(entry);
    }
    const el = entry.el;
    const status = job.status;
    const cancelling = (job.cancel_requested || entry.cancelAsked) && !TERMINAL.has(status);
    el.dataset.status = status;
    const name = jobName(job);
    const shortId = job.id.slice(0, 8);
    el.querySelector('.job-name').textContent = name;
    el.querySelector('.job-meta').textContent =
      `${jobScope(job)} · ${shortId} · ${formatTime(job.created_at)}`;

    const badge = el.querySelector('.job-status');
    badge.dataset.status = status;
    badge.textContent = cancelling ? 'cancelling' : status;

    const { done, total } = job.progress || { done: 0, total: 0 };
    let pct = total > 0 ? (done / total) * 100 : 0;
    if (status === 'succeeded') pct = 100;
    pct = Math.min(100, Math.max(0, pct));
    const bar = el.querySelector('.progress');
    bar.setAttribute('aria-valuenow', String(Math.floor(pct)));
    bar.setAttribute(
      'aria-valuetext',
      total > 0 ? `${n(done)} of ${n(total)} rows, ${Math.floor(pct)}%` : `${Math.floor(pct)}%`,
    );
    bar.setAttribute('aria-label', `Progress of ${name} ${shortId}`);
    el.querySelector('.progress-fill').style.width = `${pct}%`;

    el.querySelector('.job-numbers').textContent = numbersText(entry, pct);

    const cancel = el.querySelector('.job-cancel');
    cancel.hidden = TERMINAL.has(status);
    cancel.disabled = cancelling;
    cancel.textContent = cancelling ? 'Cancelling…' : 'Cancel';
    cancel.setAttribute('aria-label', `Cancel ${name} ${shortId}`);

    const download = el.querySelector('.job-download');
    const result = job.result;
    const expired = result && result.expires_at && Date.parse(result.expires_at) < Date.now();
    // An import's download is its rejects report (also when it failed because of them).
    download.hidden = !(result && result.file && !expired && (status === 'succeeded' || isImport(job)));
    if (!download.hidden) {
      download.href = `/api/jobs/${encodeURIComponent(job.id)}/download`;
      // The server names the download (Content-Disposition); result.file is internal.
      download.setAttribute('download', '');
      download.textContent = isImport(job) ? 'Rejected rows' : 'Download';
      download.setAttribute('aria-label', `Download ${isImport(job) ? 'the rejected rows of ' : ''}${name} ${shortId}`);
    } else {
      download.removeAttribute('href');
    }

    const error = el.querySelector('.job-error');
    const message = status === 'failed' ? job.error || `The ${isImport(job) ? 'import' : 'export'} failed.` : '';
    error.textContent = message ? `Error: ${message}` : '';
    error.hidden = !message;

    $('jobs-empty').hidden = jobs.size > 0;
  }

  function numbersText(entry, pct) {
    const { job } = entry;
    const { done, total } = job.progress || { done: 0, total: 0 };
    switch (job.status) {
      case 'queued': {
        const retry = job.attempts > 0 ? ` · attempt ${job.attempts + 1} of ${job.max_attempts}` : '';
        return `Waiting for a worker${retry}`;
      }
      case 'running': {
        const parts = [total > 0 ? `${n(done)} / ${n(total)} rows · ${Math.floor(pct)}%` : 'Starting…'];
        const r = rate(entry);
        if (Number.isFinite(r) && r > 0) {
          parts.push(`${n(Math.round(r))} rows/s`);
          if (total > done) parts.push(`${formatDuration((total - done) / r)} left`);
        }
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
          if (took > 0) parts.push(`${n(Math.round(rows / took))} rows/s`);
        }
        return parts.join(' · ');
      }
      case 'cancelled':
        return total > 0 ? `Stopped at ${n(done)} / ${n(total)} rows` : 'Cancelled before it started';
      case 'failed':
        return `Failed after ${job.attempts} of ${job.max_attempts} attempts`;
      default:
        return '';
    }
  }

  /** Puts a new job's element in place, newest first, without moving any other one. */
  function placeJob(entry) {
    const created = Date.parse(entry.job.created_at) || 0;
    let before = null;
    for (const li of jobsList.children) {
      const other = jobs.get(li.dataset.jobId);
      if (other && (Date.parse(other.job.created_at) || 0) < created) {
        before = li;
        break;
      }
    }
    jobsList.insertBefore(entry.el, before);
    while (jobsList.children.length > MAX_JOBS) {
      const oldest = jobsList.lastElementChild;
      const gone = jobs.get(oldest.dataset.jobId);
      if (gone && !TERMINAL.has(gone.job.status)) break;
      jobs.delete(oldest.dataset.jobId);
      oldest.remove();
    }
  }

  async function cancelJob(entry) {
    entry.cancelAsked = true;
    render(entry);
    try {
      const job = await api('POST', `/api/jobs/${encodeURIComponent(entry.job.id)}/cancel`);
      if (job && job.id) upsertJob(job, false);
      announce(`Cancelling ${jobName(entry.job)}.`);
    } catch (err) {
      if (err.status !== 409) {
        announce(`Could not cancel: ${err.message}`);
        entry.cancelAsked = false;
        render(entry);
      }
      // 409: it has already ended, and its status event says how.
    }
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

  whoAmI().then((signedIn) => {
    if (!signedIn) return;
    readFilters();
    loadStudents();
    loadSchedules();
    setInterval(loadSchedules, SCHEDULES_REFRESH_MS);
    connect();
  });
})();
