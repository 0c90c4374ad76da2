// A view of a route that an older server lacks, or that this user may not read.

import { $, showAlert } from './dom.js';
import { api } from './api.js';

/**
 * Reads a route that an older server does not have (404), or that is not this user's to
 * read (403): while it answers so, its view and its link are hidden, quietly.
 */
export async function loadOptional(feature, path, take) {
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
