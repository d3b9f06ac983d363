// What the guest sends: text and files, each with its own client_id so that a
// retry (after a network error, a 429 or a 5xx) is safe; typing marks.

var FILE_TYPES = /^(image|video|audio)\/|^application\/pdf$/;
// sends: an own message → what sending it takes { xhr, timer, attempt, waiting, progress, blob }.
var sends = new Map();
var typingOut = { at: 0, on: false };

function sendOf(m) {
  var s = sends.get(m);
  if (!s) sends.set(m, s = { xhr: null, timer: 0, attempt: 0, waiting: false, progress: null, blob: null });
  return s;
}

function addOwn(kind, fill) {
  var m = ownMessage(kind);
  fill(m, sendOf(m));
  talk.bycid.set(m.cid, m);
  talk.own.push(m);
  buildMsg(m);
  insert(m);
  afterInsert(true);
  (kind === 'file' ? sendFile : sendText)(m);
}

function onSend(ev) {
  ev.preventDefault();
  var ta = $('text');
  var text = ta.value.trim();
  if (!text) return;
  composerError();
  ta.value = '';
  autosize();
  stopTyping();
  addOwn('text', function (m) { m.text = text; });
  ta.focus();
}

function sendText(m) {
  m.state = 'sending';
  renderMeta(m);
  api('POST', '/api/messages', { client_id: m.cid, text: m.text }).then(function (res) {
    return readJSON(res).then(function (b) { sent(m, res.status, b, res.headers.get('Retry-After')); });
  }, function () { later(m, 0, true); });
}

// Files go with XMLHttpRequest: fetch cannot report upload progress.
function sendFile(m) {
  var s = sendOf(m);
  m.state = 'sending';
  s.progress = 0;
  renderMeta(m);
  var fd = new FormData();
  fd.append('client_id', m.cid);
  fd.append('file', s.blob, m.file.name);
  var x = s.xhr = new XMLHttpRequest();
  x.open('POST', '/api/files');
  x.setRequestHeader('X-Sikkerchat', '1');
  x.upload.onprogress = function (e) {
    var p = e.lengthComputable && Math.min(99, Math.floor(e.loaded * 100 / e.total));
    if (p === false || p === s.progress) return;
    s.progress = p;
    s.waiting = false;
    renderMeta(m);
  };
  x.onload = function () {
    s.xhr = null;
    sent(m, x.status, parse(x.responseText) || {}, x.getResponseHeader('Retry-After'));
  };
  x.onerror = x.ontimeout = function () {
    s.xhr = null;
    later(m, 0, true);
  };
  x.send(fd);
}

// sent handles the answer to a send. Network trouble, 429 and 5xx are tried
// again with the same client_id (the server makes that safe); a 4xx fails.
function sent(m, status, b, ra) {
  if (talk.own.indexOf(m) < 0) return;
  if (status === 200 || status === 202) {
    setSeq(m, b.seq);
    settle(m);
    // The file is on the server now; only a preview, if any, stays in memory.
    sendOf(m).blob = null;
    return bump(m, RANK[b.status] ? b.status : 'stored');
  }
  if (status === 401 || status === 410) return sessionGone(status);
  if (status === 429) return later(m, retryAfter(ra));
  if (status >= 500 && sendOf(m).attempt < 5) return later(m, 0);
  var key = {
    MESSAGE_TOO_LONG: 'tooLong', FILE_TOO_LARGE: 'fileTooBig', TOO_LARGE: m.kind === 'file' ? 'fileTooBig' : 'tooLong',
    FILE_TYPE_NOT_ALLOWED: 'fileType', FILE_TYPE_MISMATCH: 'fileMismatch', FILE_MISSING: 'fileEmpty'
  }[String(b.errcode || '').replace(E, '')] || 'sendErr';
  settle(m);
  m.state = 'failed';
  m.err = key;
  m.errN = key === 'fileTooBig' ? maxFileText() : null;
  renderMeta(m);
  var a = $('announce');
  a.textContent = '';
  setTimeout(function () { a.textContent = t('stFailed') + '. ' + t(key, m.errN); }, 50);
}

function settle(m) {
  var s = sends.get(m);
  if (!s) return;
  clearTimeout(s.timer);
  s.waiting = false;
  s.progress = null;
  s.attempt = 0;
}

function later(m, secs, offline) {
  if (talk.own.indexOf(m) < 0) return;
  var s = sendOf(m);
  s.attempt++;
  s.waiting = !!offline;
  s.progress = null;
  renderMeta(m);
  clearTimeout(s.timer);
  s.timer = setTimeout(function () { resend(m); }, secs ? secs * 1000 : backoff(s.attempt));
}

function resend(m) {
  clearTimeout(sendOf(m).timer);
  (m.kind === 'file' ? sendFile : sendText)(m);
}

function retry(m) {
  sendOf(m).attempt = 0;
  $('text').focus();
  resend(m);
}

// Back online: resend what waits for the network now, not after the backoff.
function resendWaiting() {
  talk.own.forEach(function (m) {
    var s = sends.get(m);
    if (m.state === 'sending' && s && s.waiting) resend(m);
  });
}

// forgetSends stops and drops everything being sent.
function forgetSends() {
  sends.forEach(function (s) {
    clearTimeout(s.timer);
    if (s.xhr) s.xhr.abort();
    s.blob = null;
  });
  sends = new Map();
  typingOut.on = false;
}

// ---- files out ----

function maxFileText() {
  var max = settings.cfg && settings.cfg.max_file_bytes;
  return max > 0 ? fmtSize(max) : '';
}

function onFile() {
  var input = $('file');
  var f = input.files && input.files[0];
  input.value = '';
  if (!f) return;
  var max = settings.cfg && settings.cfg.max_file_bytes;
  if (!f.size) return composerError('fileEmpty');
  if (max > 0 && f.size > max) return composerError('fileTooBig', maxFileText());
  // An empty type is left to the server's own check of the bytes.
  if (f.type && !FILE_TYPES.test(f.type)) return composerError('fileType');
  composerError();
  addOwn('file', function (m, s) {
    m.file = { name: f.name, size: f.size, mime: f.type };
    s.blob = f;
    if (THUMB.test(f.type)) previews.set(m, URL.createObjectURL(f));
  });
}

function composerError(key, n) {
  var slot = $('composer-err');
  slot.textContent = '';
  if (key) slot.appendChild(setT(el('p', 'error'), key, n));
  if (key) $('text').setAttribute('aria-invalid', 'true');
  else $('text').removeAttribute('aria-invalid');
}

// ---- typing out: at most every 4 s while typing, false on send and blur ----

function typing(on) {
  var now = Date.now();
  if (on ? now - typingOut.at < 4000 : !typingOut.on) return;
  typingOut.at = on ? now : 0;
  typingOut.on = on;
  post('/api/typing', { typing: on });
}

function stopTyping() { typing(false); }

function autosize() {
  var ta = $('text');
  ta.rows = 1;
  // An empty field stays one line, however the placeholder wraps.
  while (ta.value && ta.scrollHeight > ta.clientHeight + 2 && ta.rows < 6) ta.rows++;
}
