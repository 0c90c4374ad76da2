// The students view: the list (search, age range, pages) and the add/edit form.

import { n } from './format.js';
import {
  $,
  announce,
  button,
  clearFieldErrors,
  formMessage,
  intValue,
  showAlert,
  showFieldErrors,
} from './dom.js';
import { api } from './api.js';

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

export async function loadStudents() {
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

export function readFilters() {
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
