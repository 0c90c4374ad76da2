// The export and import forms: each starts a job.

import {
  $,
  announce,
  clearFieldErrors,
  formMessage,
  intValue,
  showAlert,
  showFieldErrors,
} from './dom.js';
import { api } from './api.js';
import { jobName } from './job.js';
import { upsertJob } from './jobs.js';
import { showStarted } from './jobs-list.js';

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
