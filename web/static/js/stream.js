// The event stream: messages, their states and typing from the server, with
// reconnects that resume where they left off; read receipts back.

var stream = { es: null, timer: 0, fails: 0, checking: false, connTimer: 0 };

function openEvents() {
  closeEvents();
  var es = new EventSource('/api/events');
  stream.es = es;
  var on = function (name, fn) {
    es.addEventListener(name, function (e) { if (stream.es === es) fn(parse(e.data) || {}); });
  };
  es.addEventListener('open', function () {
    if (stream.es !== es) return;
    stream.fails = 0;
    setConn(false);
  });
  on('message', onMessage);
  on('status', onStatus);
  on('typing', function (d) { showTyping(!!d.typing); });
  on('closed', function (d) {
    closeEvents();
    sessionGone(d.reason === 'session_expired' || d.reason === 'session_ended' ? 401 : 410, d.reason);
  });
  es.onerror = function () {
    if (stream.es !== es) return;
    setConn(true);
    checkSession(es);
  };
}

function closeEvents() {
  clearTimeout(stream.timer);
  if (stream.es) stream.es.close();
  stream.es = null;
}

// After a stream error, ask whether the session still lives: the answer
// decides between waiting for the reconnect, ended and logged out.
function checkSession(es) {
  if (stream.checking) return;
  stream.checking = true;
  api('GET', '/api/session').then(function (r) { return r.status; }, function () { return 0; }).then(function (status) {
    stream.checking = false;
    if (stream.es !== es) return;
    if (status === 401 || status === 410) return sessionGone(status);
    if (es.readyState === 2) {
      // The browser gave up (the server answered with an error): open a new
      // stream; it replays the history and known messages are skipped.
      stream.fails++;
      stream.timer = setTimeout(openEvents, backoff(stream.fails));
    }
  });
}

function setConn(on) {
  clearTimeout(stream.connTimer);
  if (!on) return setT('conn');
  // A stream that comes back at once is not worth a word.
  stream.connTimer = setTimeout(function () { setT('conn', 'reconnecting'); }, 1500);
}

// ---- messages in ----

function onMessage(d) {
  if (typeof d.seq !== 'number') return;
  var m = talk.byseq.get(d.seq) || (d.direction === 'from_guest' && d.client_id && talk.bycid.get(d.client_id));
  if (m) return update(m, d);
  m = messageFrom(d);
  talk.byseq.set(m.seq, m);
  if (m.cid) talk.bycid.set(m.cid, m);
  var stick = nearBottom();
  buildMsg(m);
  insert(m);
  afterInsert(stick);
  if (m.dir === 'to_guest') {
    if (m.kind !== 'notice') showTyping(false);
    talk.maxToGuest = Math.max(talk.maxToGuest, m.seq);
    scheduleRead();
  }
}

function setSeq(m, seq) {
  if (m.seq != null || typeof seq !== 'number') return;
  m.seq = seq;
  talk.byseq.set(seq, m);
  settle(m);
  reposition(m);
}

// update handles a message seen before: our own echo, or an edit/deletion.
function update(m, d) {
  var echo = m.seq == null;
  setSeq(m, d.seq);
  if (d.ts) m.ts = d.ts;
  if (m.dir === 'from_guest') bump(m, d.status || 'stored');
  var changed = (d.text || '') !== m.text || !!d.edited !== m.edited || !!d.deleted !== m.deleted;
  if (!changed || echo) return renderMeta(m);
  m.text = d.text || '';
  m.edited = !!d.edited;
  m.deleted = !!d.deleted;
  if (d.file) m.file = d.file;
  buildMsg(m);
  // Replies quoting this message show the new text too.
  talk.byseq.forEach(function (o) { if (o.replyTo === m.seq) buildMsg(o); });
}

function onStatus(d) {
  var m = talk.byseq.get(d.seq) || (d.client_id && talk.bycid.get(d.client_id));
  if (!m) return;
  setSeq(m, d.seq);
  if (d.status !== 'read') return bump(m, d.status);
  // Reading a message means the police have read everything before it too.
  talk.own.concat(Array.from(talk.byseq.values())).forEach(function (o) {
    if (o.dir === 'from_guest' && o.seq != null && o.seq <= m.seq) bump(o, 'read');
  });
}

function bump(m, status) {
  if (advance(m, status)) renderMeta(m);
}

// ---- read receipts ----

function scheduleRead() {
  clearTimeout(talk.readTimer);
  talk.readTimer = setTimeout(function () {
    var seq = talk.maxToGuest;
    var before = talk.readSent;
    if (page.view !== 'chat' || seq <= before || document.visibilityState !== 'visible') return;
    talk.readSent = seq;
    post('/api/read', { seq: seq }).then(function (res) {
      if (!res && talk.readSent === seq) talk.readSent = before;
    });
  }, 400);
}
