// Joining: the token from the link's fragment and the code word the guest
// types. A GET never uses the link up; only the POST with the code does.

function tokenFromHash() {
  var h = location.hash.slice(1);
  try { h = decodeURIComponent(h); } catch (e) { /* keep it as it is */ }
  // Messengers sometimes glue a full stop or a bracket to the end of a link.
  return h.trim().replace(/[^A-Za-z0-9_-]+$/, '');
}

function showJoin() {
  joinError();
  $('code').value = '';
  show('join');
}

// A wrong code shows under the field; a dead link replaces the form.
function joinError(key, n, fatal) {
  var code = $('code');
  $('join-err').textContent = '';
  $('join-fatal').textContent = '';
  $('join-form').hidden = !!fatal;
  if (/^errCode/.test(key)) code.setAttribute('aria-invalid', 'true');
  else code.removeAttribute('aria-invalid');
  if (!key) return;
  var p = setT(el('p', 'error'), key, n);
  p.tabIndex = -1;
  $(fatal ? 'join-fatal' : 'join-err').appendChild(p);
  if (fatal) {
    p.focus();
  } else {
    code.focus();
    code.select();
  }
}

function joinBusy(busy) {
  page.joinBusy = busy;
  setT('join-btn', busy ? 'joining' : 'joinBtn');
  if (busy) $('join-btn').setAttribute('aria-disabled', 'true');
  else $('join-btn').removeAttribute('aria-disabled');
}

function onJoin(ev) {
  ev.preventDefault();
  if (page.joinBusy) return;
  var code = $('code').value.trim();
  if (!code) return joinError('errCodeMissing');
  joinBusy(true);
  api('POST', '/api/join', { token: page.token, code: code }).then(function (res) {
    return readJSON(res).then(function (b) {
      joinBusy(false);
      if (!res.ok) return joinFailed(res, b);
      history.replaceState(null, '', location.pathname);
      $('code').value = '';
      joinError();
      startChat(b);
    });
  }, function () {
    joinBusy(false);
    joinError('errNet');
  });
}

function joinFailed(res, b) {
  var code = String(b.errcode || '').replace(E, '');
  var fatal = { BAD_TOKEN: 'errUnknownLink', INVITE_UNKNOWN: 'errUnknownLink', INVITE_USED: 'errUsed', INVITE_EXPIRED: 'errExpired', INVITE_REVOKED: 'errRevoked' }[code];
  if (fatal) return joinError(fatal, null, true);
  if (code === 'CODE_MISSING') return joinError('errCodeMissing');
  if (code === 'CODE_WRONG') {
    var n = b.attempts_left;
    if (typeof n !== 'number') return joinError('errCodeWrongAny');
    if (n <= 0) return joinError('errRevoked', null, true);
    return n === 1 ? joinError('errCodeWrong1') : joinError('errCodeWrong', n);
  }
  if (code === 'RATE_LIMITED') {
    var s = retryAfter(res.headers.get('Retry-After'));
    return s ? joinError('errRateS', s) : joinError('errRate');
  }
  joinError('errOther');
}
