// HTTP to the guest API: same origin, no cache, the custom header on every
// change (docs/guest-api.md).

function noop() {}
function parse(s) { try { return JSON.parse(s); } catch (e) { return null; } }

function api(method, path, body) {
  var opt = { method: method, credentials: 'same-origin', cache: 'no-store', headers: {} };
  if (method !== 'GET') opt.headers['X-Sikkerchat'] = '1';
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  return fetch(path, opt);
}

function readJSON(res) {
  return res.text().then(function (s) { return parse(s) || {}; }, function () { return {}; });
}

function retryAfter(v) {
  var n = parseInt(v, 10);
  return n > 0 && n < 3600 ? n : 0;
}

// post sends a small state change and forgets it; it resolves to nothing on
// a network error.
function post(path, body) {
  return api('POST', path, body).then(function (res) {
    if (res.status === 401 || res.status === 410) sessionGone(res.status);
    return res;
  }).catch(noop);
}

function backoff(n) {
  return Math.round(Math.min(30000, 1000 * Math.pow(2, Math.max(0, n - 1))) * (0.75 + Math.random() * 0.5));
}
