// Small DOM helpers: lookups, announcements, alerts, the API's field errors, inputs, buttons.

import { capitalise } from './format.js';

export const $ = (id) => document.getElementById(id);

const announcer = $('announcer');
/** Says something to screen readers (the region is polite). */
export function announce(text) {
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
export function showFieldErrors(form, fields) {
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

export function clearFieldErrors(form) {
  showFieldErrors(form, {});
}

export function showAlert(el, text) {
  el.textContent = text || '';
  el.hidden = !text;
}

/** The message for an error that no field shows. */
export function formMessage(err, rest) {
  const extra = Object.entries(rest || {}).map(([k, v]) => `${k}: ${v}`);
  if (err.status === 422) return extra.length ? extra.join('; ') : '';
  return err.message;
}

/** A number input: undefined when blank, the number, or the raw text when not a number. */
export function intValue(input) {
  if (input.validity && input.validity.badInput) return 'not a number';
  const raw = input.value.trim();
  if (raw === '') return undefined;
  const value = Number(raw);
  return Number.isFinite(value) ? value : raw;
}

export function button(text, className, label) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = `button button-small ${className || ''}`.trim();
  b.textContent = text;
  if (label) b.setAttribute('aria-label', label);
  return b;
}
