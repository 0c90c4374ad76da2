// The API client: JSON over fetch, and the API's error shape as an `ApiError`.

/** What an answer of 401 (the session has ended) does: the sign-in view sets it. */
let signedOut = () => {};

export function onSignedOut(then) {
  signedOut = then;
}

/** An API error: `status` 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    const detail = body && body.error ? body.error : null;
    super((detail && detail.message) || fallback || `the server answered ${status}`);
    this.status = status;
    this.code = detail ? detail.code : null;
    this.fields = (detail && detail.fields) || {};
  }
}

export async function api(method, path, body, contentType) {
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
  if (res.status === 401 && path !== '/api/session') signedOut();
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}
