// The guest page of sikkerchat: join with the code word, chat with the police,
// leave fast. Everything lives in this page's memory only: no storage, no
// service worker, no cache. Text from the server goes in with textContent only.
(function () {
  'use strict';

  var I18N = window.SC_I18N || {};
  var LANGS = ['nb', 'nn', 'en'];
  var FALLBACK_EXIT = 'https://www.yr.no/';
  var RANK = { sending: 0, stored: 1, delivered: 2, read: 3 };
  var STATE_TEXT = { sending: 'stSending', stored: 'stSent', delivered: 'stDelivered', read: 'stRead' };
  var THUMB = /^image\/(png|jpeg|gif|webp)$/;
  var FILE_TYPES = /^(image|video|audio)\/|^application\/pdf$/;
  var E = 'NO.SIKKERCHAT.';

  var S = {
    lang: 'nb', langChosen: false, cfg: null, view: '', token: '', unit: '',
    es: null, esTimer: 0, esFails: 0, checking: false, connTimer: 0,
    byseq: new Map(), bycid: new Map(), own: [], stick: true,
    maxToGuest: 0, readSent: 0, readTimer: 0,
    typingAt: 0, typingOn: false, typingTimer: 0,
    joinFatal: false, joinBusy: false, exiting: false, esc: []
  };

  function $(id) { return document.getElementById(id); }
  function noop() {}
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function each(sel, fn) { Array.prototype.forEach.call(document.querySelectorAll(sel), fn); }
  function parse(s) { try { return JSON.parse(s); } catch (e) { return null; } }

  // ---- language ----

  function t(key, n) {
    var d = I18N[S.lang] || I18N.nb || {};
    var s = d[key] != null ? d[key] : (I18N.nb && I18N.nb[key]) || '';
    return n == null || n === '' ? s : s.split('{n}').join(String(n));
  }

  // setT gives an element a text key (and number), so a language switch
  // re-renders it like the static texts; no key empties it.
  function setT(e, key, n) {
    if (typeof e === 'string') e = $(e);
    if (!key) {
      e.removeAttribute('data-t');
      e.textContent = '';
      return e;
    }
    e.setAttribute('data-t', key);
    if (n != null) e.setAttribute('data-tn', n);
    else e.removeAttribute('data-tn');
    e.textContent = t(key, n);
    return e;
  }

  function pickLang(avail, fallback) {
    var list = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ''];
    for (var i = 0; i < list.length; i++) {
      var base = String(list[i]).toLowerCase().split(/[-_]/)[0];
      if (base === 'no') base = 'nb';
      if (avail.indexOf(base) >= 0) return base;
    }
    return fallback;
  }

  function emergency(which) {
    var e = S.cfg && S.cfg.emergency;
    return (e && typeof e[which] === 'string' && e[which]) || (which === 'police' ? '112' : '02800');
  }

  function applyLang() {
    document.documentElement.lang = S.lang;
    $('lang').value = S.lang;
    each('[data-t]', function (e) {
      var n = e.getAttribute('data-n');
      e.textContent = t(e.getAttribute('data-t'), n ? emergency(n) : e.getAttribute('data-tn'));
    });
    each('[data-t-aria]', function (e) { e.setAttribute('aria-label', t(e.getAttribute('data-t-aria'))); });
    each('[data-t-ph]', function (e) { e.setAttribute('placeholder', t(e.getAttribute('data-t-ph'))); });
    each('a[data-tel]', function (e) { e.href = 'tel:' + emergency(e.getAttribute('data-tel')); });
    var hours = S.cfg && S.cfg.staffed_hours;
    var h = (hours && (hours[S.lang] || hours.nb)) || '';
    $('hours').textContent = h;
    $('hours').hidden = !h;
    $('unit').textContent = S.unit || t('police');
    rerenderMessages();
  }

  // ---- views ----

  function show(view) {
    ['loading', 'join', 'chat', 'ended', 'none'].forEach(function (v) { $('v-' + v).hidden = v !== view; });
    document.body.className = 'v-' + view;
    // One must-know list: in the join view, and behind the toggle in chat.
    if (view === 'chat') $('info').appendChild($('know'));
    if (view === 'join') $('join-know').appendChild($('know'));
    if (S.view === view) return;
    S.view = view;
    window.scrollTo(0, 0);
    $(view + '-h').focus();
  }

  function showOffline() {
    setT('loading-h', 'offlineH');
    setT('loading-p', 'offlineP');
    $('reload').hidden = false;
    S.view = '';
    show('loading');
  }

  function showNone(out) {
    setT('none-h', out ? 'outH' : 'noneH');
    setT('none-p', out ? 'outP' : 'noneP');
    show('none');
  }

  // sessionGone forgets the conversation: 410 (or a closed stream) shows the
  // ended view, 401 the logged-out text; a new link from the officer says so.
  function sessionGone(status, reason) {
    if (S.view !== 'chat') return;
    wipe();
    if (status !== 410) return showNone(true);
    var again = reason === 'reissued';
    setT('ended-h', again ? 'reissuedH' : 'endedH');
    setT('ended-p', again ? 'reissuedP' : 'endedP');
    show('ended');
  }

  // ---- HTTP ----

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

  // ---- start ----

  function tokenFromHash() {
    var h = location.hash.slice(1);
    try { h = decodeURIComponent(h); } catch (e) { /* keep it as it is */ }
    // Messengers sometimes glue a full stop or a bracket to the end of a link.
    return h.trim().replace(/[^A-Za-z0-9_-]+$/, '');
  }

  function loadConfig() {
    return api('GET', '/api/config').then(function (res) {
      return res.ok ? readJSON(res) : null;
    }).catch(noop).then(function (cfg) {
      if (!cfg) return;
      S.cfg = cfg;
      var avail = LANGS.filter(function (l) { return !Array.isArray(cfg.languages) || cfg.languages.indexOf(l) >= 0; });
      if (!avail.length) avail = LANGS;
      each('#lang option', function (o) { o.hidden = avail.indexOf(o.value) < 0; });
      if (!S.langChosen) S.lang = pickLang(avail, avail.indexOf(cfg.default_language) >= 0 ? cfg.default_language : avail[0]);
      if (cfg.max_message_chars > 0) $('text').maxLength = cfg.max_message_chars;
      applyLang();
    });
  }

  function boot() {
    setT('loading-h', 'loadingH');
    setT('loading-p');
    $('reload').hidden = true;
    S.token = tokenFromHash();
    var sess = api('GET', '/api/session').then(function (res) {
      return readJSON(res).then(function (b) { return { status: res.status, body: b }; });
    }, noop);
    Promise.all([sess, S.cfg || loadConfig()]).then(function (r) {
      var s = r[0];
      if (!s) return showOffline();
      if (s.status === 200) return startChat(s.body);
      if (s.status === 410) return show('ended');
      if (s.status === 401) return S.token ? showJoin() : showNone(false);
      showOffline();
    });
  }

  // ---- join ----

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
    S.joinFatal = !!fatal;
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
    S.joinBusy = busy;
    setT('join-btn', busy ? 'joining' : 'joinBtn');
    if (busy) $('join-btn').setAttribute('aria-disabled', 'true');
    else $('join-btn').removeAttribute('aria-disabled');
  }

  function onJoin(ev) {
    ev.preventDefault();
    if (S.joinBusy) return;
    var code = $('code').value.trim();
    if (!code) return joinError('errCodeMissing');
    joinBusy(true);
    api('POST', '/api/join', { token: S.token, code: code }).then(function (res) {
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

  // ---- chat ----

  function startChat(info) {
    S.unit = (info && info.unit_name) || (S.cfg && S.cfg.unit_name) || '';
    $('unit').textContent = S.unit || t('police');
    if (location.hash) history.replaceState(null, '', location.pathname);
    S.token = '';
    updateEmpty();
    show('chat');
    openEvents();
  }

  function openEvents() {
    closeEvents();
    var es = new EventSource('/api/events');
    S.es = es;
    var on = function (name, fn) {
      es.addEventListener(name, function (e) { if (S.es === es) fn(parse(e.data) || {}); });
    };
    es.addEventListener('open', function () {
      if (S.es !== es) return;
      S.esFails = 0;
      setConn(false);
    });
    on('message', onMessage);
    on('status', onStatus);
    on('read', onRead);
    on('typing', function (d) { showTyping(!!d.typing); });
    on('closed', function (d) {
      closeEvents();
      sessionGone(d.reason === 'session_expired' || d.reason === 'session_ended' ? 401 : 410, d.reason);
    });
    es.onerror = function () {
      if (S.es !== es) return;
      setConn(true);
      checkSession(es);
    };
  }

  function closeEvents() {
    clearTimeout(S.esTimer);
    if (S.es) S.es.close();
    S.es = null;
  }

  // After a stream error, ask whether the session still lives: the answer
  // decides between waiting for the reconnect, ended and logged out.
  function checkSession(es) {
    if (S.checking) return;
    S.checking = true;
    api('GET', '/api/session').then(function (r) { return r.status; }, function () { return 0; }).then(function (status) {
      S.checking = false;
      if (S.es !== es) return;
      if (status === 401 || status === 410) return sessionGone(status);
      if (es.readyState === 2) {
        // The browser gave up (the server answered with an error): open a new
        // stream; it replays the history and known messages are skipped.
        S.esFails++;
        S.esTimer = setTimeout(openEvents, backoff(S.esFails));
      }
    });
  }

  function setConn(on) {
    clearTimeout(S.connTimer);
    if (!on) return setT('conn');
    // A stream that comes back at once is not worth a word.
    S.connTimer = setTimeout(function () { setT('conn', 'reconnecting'); }, 1500);
  }

  // wipe forgets the conversation: DOM, memory, timers.
  function wipe() {
    closeEvents();
    [S.connTimer, S.readTimer, S.typingTimer].forEach(clearTimeout);
    S.own.forEach(function (m) {
      clearTimeout(m.timer);
      if (m.xhr) m.xhr.abort();
      if (m.preview) URL.revokeObjectURL(m.preview);
      m.blob = null;
    });
    S.byseq = new Map();
    S.bycid = new Map();
    S.own = [];
    S.maxToGuest = S.readSent = 0;
    S.typingOn = false;
    S.unit = '';
    $('log').textContent = '';
    $('unit').textContent = '';
    $('text').value = '';
    $('text').rows = 1;
    showTyping(false);
    setT('conn');
    composerError();
    setInfo(false);
    updateEmpty();
  }

  // ---- messages in ----

  function onMessage(d) {
    if (typeof d.seq !== 'number') return;
    var m = S.byseq.get(d.seq) || (d.direction === 'from_guest' && d.client_id && S.bycid.get(d.client_id));
    if (m) return update(m, d);
    m = {
      seq: d.seq, dir: d.direction === 'from_guest' ? 'from_guest' : 'to_guest', kind: d.kind || 'text',
      text: d.text || '', sender: d.sender || '', ts: d.ts || Date.now(), cid: d.client_id || '',
      edited: !!d.edited, deleted: !!d.deleted, replyTo: d.reply_to || 0, file: d.file || null,
      state: RANK[d.status] != null ? d.status : 'stored'
    };
    S.byseq.set(m.seq, m);
    if (m.cid) S.bycid.set(m.cid, m);
    var stick = nearBottom();
    buildMsg(m);
    insert(m);
    afterInsert(stick);
    if (m.dir === 'to_guest') {
      if (m.kind !== 'notice') showTyping(false);
      S.maxToGuest = Math.max(S.maxToGuest, m.seq);
      scheduleRead();
    }
  }

  function setSeq(m, seq) {
    if (m.seq != null || typeof seq !== 'number') return;
    m.seq = seq;
    S.byseq.set(seq, m);
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
    S.byseq.forEach(function (o) { if (o.replyTo === m.seq) buildMsg(o); });
  }

  function onStatus(d) {
    var m = S.byseq.get(d.seq) || (d.client_id && S.bycid.get(d.client_id));
    if (!m) return;
    setSeq(m, d.seq);
    if (d.status === 'read') onRead({ seq: m.seq });
    else bump(m, d.status);
  }

  // Reading a message means the police have read everything before it too.
  function onRead(d) {
    if (typeof d.seq !== 'number') return;
    S.own.concat(Array.from(S.byseq.values())).forEach(function (m) {
      if (m.dir === 'from_guest' && m.seq != null && m.seq <= d.seq) bump(m, 'read');
    });
  }

  function bump(m, status) {
    if (status === 'failed') { m.state = 'failed'; renderMeta(m); return; }
    if (RANK[status] == null || (m.state !== 'failed' && RANK[status] <= RANK[m.state])) return;
    m.state = status;
    renderMeta(m);
  }

  // Officer typing shows until a message comes, or 6 s without a new signal.
  function showTyping(on) {
    clearTimeout(S.typingTimer);
    if (on) S.typingTimer = setTimeout(function () { showTyping(false); }, 6000);
    var e = $('typing');
    if (on === e.classList.contains('on')) return;
    setT(e, on ? 'typing' : '');
    e.classList.toggle('on', on);
  }

  // ---- rendering ----

  function fmt(kind, v, opt) {
    try { return new Intl[kind](t('locale'), opt).format(v); } catch (e) { return String(kind === 'NumberFormat' ? Math.round(v) : v.toLocaleString()); }
  }

  function fmtTime(ts) {
    var d = new Date(ts);
    var opt = { hour: '2-digit', minute: '2-digit' };
    if (d.toDateString() !== new Date().toDateString()) {
      opt.day = 'numeric';
      opt.month = 'short';
    }
    return fmt('DateTimeFormat', d, opt);
  }

  function fmtSize(n) {
    var v = Number(n) || 0;
    var unit = 'B';
    if (v >= 1048576) { v /= 1048576; unit = 'MB'; } else if (v >= 1024) { v /= 1024; unit = 'kB'; }
    return fmt('NumberFormat', v, { maximumFractionDigits: v < 10 && unit !== 'B' ? 1 : 0 }) + '\u00a0' + unit;
  }

  function buildMsg(m) {
    var root = m.el || (m.el = el('div'));
    root._m = m;
    root.textContent = '';
    if (m.kind === 'notice') {
      root.className = 'msg note';
      root.appendChild(el('p', 'note-text', m.text));
      return;
    }
    var mine = m.dir === 'from_guest';
    root.className = 'msg ' + (mine ? 'me' : 'them');
    m.whoEl = root.appendChild(el('p', mine ? 'who vh' : 'who', mine ? t('you') : m.sender || S.unit || t('police')));
    var bubble = root.appendChild(el('div', 'bubble'));
    var quoted = m.replyTo && S.byseq.get(m.replyTo);
    if (quoted && !m.deleted) {
      var q = bubble.appendChild(el('p', 'quote'));
      q.appendChild(el('span', 'vh', t('replyTo') + ' '));
      q.appendChild(document.createTextNode(quoted.deleted ? t('deleted') : (quoted.text || (quoted.file && quoted.file.name) || '').slice(0, 120)));
    }
    if (m.deleted) {
      bubble.appendChild(el('p', 'text deleted', t('deleted')));
    } else {
      if (m.kind === 'file' && m.file) bubble.appendChild(fileBlock(m));
      if (m.text && !(m.file && m.text === m.file.name)) bubble.appendChild(el('p', 'text', m.text));
    }
    m.metaEl = root.appendChild(el('div', 'meta'));
    renderMeta(m);
  }

  function thumb(src, lazy) {
    var img = el('img', 'thumb');
    img.alt = '';
    if (lazy) img.loading = 'lazy';
    img.decoding = 'async';
    img.onerror = function () { img.remove(); };
    img.onload = keepAtEnd;
    img.src = src;
    return img;
  }

  // Officer files: a download link (same origin, attachment) and, for
  // pictures, a thumbnail from that same URL. Own files: name, size, picture.
  function fileBlock(m) {
    var f = m.file;
    var box = el('div', 'file');
    var label = (f.name || t('file')) + ' (' + fmtSize(f.size) + ')';
    var url = f.id ? '/api/files/' + encodeURIComponent(f.id) : '';
    var pic = THUMB.test(f.mime || '') && url;
    if (m.dir === 'to_guest' && url) {
      var a = box.appendChild(el('a', 'file-link'));
      a.href = url;
      a.setAttribute('download', f.name || '');
      if (pic) a.appendChild(thumb(url, true));
      a.appendChild(el('span', '', t('download') + ': ' + label));
    } else {
      if (m.preview || pic) box.appendChild(thumb(m.preview || url, !m.preview));
      box.appendChild(el('span', '', label));
    }
    return box;
  }

  function renderMeta(m) {
    var meta = m.metaEl;
    if (!meta) return;
    meta.textContent = '';
    var time = meta.appendChild(el('time', '', fmtTime(m.ts)));
    time.dateTime = new Date(m.ts).toISOString();
    if (m.edited && !m.deleted) meta.appendChild(el('span', '', '(' + t('edited') + ')'));
    if (m.dir !== 'from_guest') return;
    var failed = m.state === 'failed';
    m.el.classList.toggle('failed', failed);
    var st = meta.appendChild(el('span', 'state st-' + m.state));
    // Status changes are shown, not read aloud each time; failures are announced.
    st.setAttribute('aria-live', 'off');
    if (failed) {
      st.textContent = t('stFailed') + '. ' + t(m.err, m.errN);
      var b = meta.appendChild(el('button', 'btn small retry', t('retrySend')));
      b.type = 'button';
      b.addEventListener('click', function () { retry(m); });
    } else if (m.state === 'sending' && m.waiting) {
      st.textContent = t('stWaiting');
    } else if (m.state === 'sending' && m.progress != null) {
      st.textContent = t('stUploading', m.progress);
    } else {
      st.textContent = t(STATE_TEXT[m.state]);
    }
  }

  function rerenderMessages() {
    var log = $('log');
    if (!log.firstChild) return;
    // A language switch re-renders every message: keep the screen reader quiet.
    log.setAttribute('aria-live', 'off');
    for (var c = log.firstElementChild; c; c = c.nextElementSibling) buildMsg(c._m);
    regroup();
    setTimeout(function () { log.setAttribute('aria-live', 'polite'); }, 200);
  }

  // insert keeps the server's order; messages still being sent stay at the end.
  function insert(m) {
    var log = $('log');
    var ref = null;
    for (var c = log.lastElementChild; c && m.seq != null; c = c.previousElementSibling) {
      var o = c._m;
      if (o.seq == null ? o.state === 'failed' : o.seq < m.seq) break;
      ref = c;
    }
    log.insertBefore(m.el, ref);
  }

  function reposition(m) {
    if (!m.el || !m.el.parentNode) return;
    var p = m.el.previousElementSibling;
    var n = m.el.nextElementSibling;
    if ((p && p._m.seq > m.seq) || (n && n._m.seq != null && n._m.seq < m.seq)) {
      m.el.remove();
      insert(m);
      regroup();
    }
  }

  function afterInsert(stick) {
    regroup();
    updateEmpty();
    if (stick) scrollToEnd();
  }

  // regroup shows the sender once for a run of messages from the same person;
  // screen readers still hear it for every message.
  function regroup() {
    var prev = null;
    for (var c = $('log').firstElementChild; c; c = c.nextElementSibling) {
      var m = c._m;
      if (m.whoEl && m.dir === 'to_guest') {
        var same = prev && prev.dir === 'to_guest' && prev.kind !== 'notice' && prev.sender === m.sender;
        m.whoEl.className = same ? 'who vh' : 'who';
      }
      prev = m;
    }
  }

  function updateEmpty() {
    $('empty').hidden = !!$('log').firstChild;
  }

  // The end of the conversation is just above the footer: scrolling there keeps
  // the room for messages instead of the emergency-number footer.
  function endY() {
    return document.documentElement.scrollHeight - document.querySelector('.foot').offsetHeight - window.innerHeight;
  }

  function nearBottom() {
    return window.scrollY >= endY() - 120;
  }

  function scrollToEnd() {
    window.scrollTo(0, Math.max(0, endY()));
    S.stick = true;
  }

  // A picture that loads late must not push the newest message out of sight.
  function keepAtEnd() {
    if (S.stick && S.view === 'chat') scrollToEnd();
  }

  // ---- read receipts ----

  function scheduleRead() {
    clearTimeout(S.readTimer);
    S.readTimer = setTimeout(function () {
      var seq = S.maxToGuest;
      var before = S.readSent;
      if (S.view !== 'chat' || seq <= before || document.visibilityState !== 'visible') return;
      S.readSent = seq;
      post('/api/read', { seq: seq }).then(function (res) {
        if (!res && S.readSent === seq) S.readSent = before;
      });
    }, 400);
  }

  // ---- messages out ----

  function newClientId() {
    var c = window.crypto;
    if (typeof c.randomUUID === 'function') return c.randomUUID();
    var b = c.getRandomValues(new Uint8Array(16));
    var s = '';
    for (var i = 0; i < b.length; i++) s += (b[i] < 16 ? '0' : '') + b[i].toString(16);
    return s;
  }

  function addOwn(kind, fill) {
    var m = { seq: null, dir: 'from_guest', kind: kind, text: '', ts: Date.now(), cid: newClientId(), state: 'sending', attempt: 0 };
    fill(m);
    S.bycid.set(m.cid, m);
    S.own.push(m);
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
    m.state = 'sending';
    m.progress = 0;
    renderMeta(m);
    var fd = new FormData();
    fd.append('client_id', m.cid);
    fd.append('file', m.blob, m.file.name);
    var x = m.xhr = new XMLHttpRequest();
    x.open('POST', '/api/files');
    x.setRequestHeader('X-Sikkerchat', '1');
    x.upload.onprogress = function (e) {
      var p = e.lengthComputable && Math.min(99, Math.floor(e.loaded * 100 / e.total));
      if (p === false || p === m.progress) return;
      m.progress = p;
      m.waiting = false;
      renderMeta(m);
    };
    x.onload = function () {
      m.xhr = null;
      sent(m, x.status, parse(x.responseText) || {}, x.getResponseHeader('Retry-After'));
    };
    x.onerror = x.ontimeout = function () {
      m.xhr = null;
      later(m, 0, true);
    };
    x.send(fd);
  }

  // sent handles the answer to a send. Network trouble, 429 and 5xx are tried
  // again with the same client_id (the server makes that safe); a 4xx fails.
  function sent(m, status, b, ra) {
    if (S.own.indexOf(m) < 0) return;
    if (status === 200 || status === 202) {
      setSeq(m, b.seq);
      settle(m);
      // The file is on the server now; only a preview, if any, stays in memory.
      m.blob = null;
      return bump(m, RANK[b.status] ? b.status : 'stored');
    }
    if (status === 401 || status === 410) return sessionGone(status);
    if (status === 429) return later(m, retryAfter(ra));
    if (status >= 500 && m.attempt < 5) return later(m, 0);
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
    clearTimeout(m.timer);
    m.waiting = false;
    m.progress = null;
    m.attempt = 0;
  }

  function later(m, secs, offline) {
    if (S.own.indexOf(m) < 0) return;
    m.attempt++;
    m.waiting = !!offline;
    m.progress = null;
    renderMeta(m);
    clearTimeout(m.timer);
    m.timer = setTimeout(function () { resend(m); }, secs ? secs * 1000 : backoff(m.attempt));
  }

  function resend(m) {
    clearTimeout(m.timer);
    (m.kind === 'file' ? sendFile : sendText)(m);
  }

  function retry(m) {
    m.attempt = 0;
    $('text').focus();
    resend(m);
  }

  // ---- files out ----

  function maxFileText() {
    var max = S.cfg && S.cfg.max_file_bytes;
    return max > 0 ? fmtSize(max) : '';
  }

  function onFile() {
    var input = $('file');
    var f = input.files && input.files[0];
    input.value = '';
    if (!f) return;
    var max = S.cfg && S.cfg.max_file_bytes;
    if (!f.size) return composerError('fileEmpty');
    if (max > 0 && f.size > max) return composerError('fileTooBig', maxFileText());
    // An empty type is left to the server's own check of the bytes.
    if (f.type && !FILE_TYPES.test(f.type)) return composerError('fileType');
    composerError();
    addOwn('file', function (m) {
      m.file = { name: f.name, size: f.size, mime: f.type };
      m.blob = f;
      if (THUMB.test(f.type)) m.preview = URL.createObjectURL(f);
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
    if (on ? now - S.typingAt < 4000 : !S.typingOn) return;
    S.typingAt = on ? now : 0;
    S.typingOn = on;
    post('/api/typing', { typing: on });
  }

  function stopTyping() { typing(false); }

  function autosize() {
    var ta = $('text');
    ta.rows = 1;
    // An empty field stays one line, however the placeholder wraps.
    while (ta.value && ta.scrollHeight > ta.clientHeight + 2 && ta.rows < 6) ta.rows++;
  }

  function setInfo(open) {
    $('info').hidden = !open;
    $('info-btn').setAttribute('aria-expanded', String(open));
  }

  // ---- quick exit ----

  function quickExit() {
    if (S.exiting) return;
    S.exiting = true;
    var u = S.cfg && S.cfg.exit_url;
    var url = typeof u === 'string' && /^https?:\/\/\S+$/i.test(u) ? u : FALLBACK_EXIT;
    try { navigator.sendBeacon('/api/leave'); } catch (e) { /* best effort */ }
    // A second, ordinary request: it carries the page's Origin even where a
    // beacon under Referrer-Policy: no-referrer would say "Origin: null".
    try {
      fetch('/api/leave', { method: 'POST', keepalive: true, credentials: 'same-origin', headers: { 'X-Sikkerchat': '1' } }).catch(noop);
    } catch (e) { /* best effort */ }
    try {
      document.documentElement.classList.add('gone');
      wipe();
    } catch (e) { /* leave anyway */ }
    location.replace(url);
  }

  // ---- wiring ----

  function init() {
    S.lang = pickLang(LANGS, 'nb');
    applyLang();

    $('exit').addEventListener('click', quickExit);
    document.addEventListener('keydown', function (e) {
      if (e.key !== 'Escape' && e.key !== 'Esc') return;
      var now = Date.now();
      S.esc = S.esc.filter(function (x) { return now - x < 1500; });
      if (S.esc.push(now) >= 3) quickExit();
    }, true);

    $('lang').addEventListener('change', function () {
      if (LANGS.indexOf(this.value) < 0) return;
      S.lang = this.value;
      S.langChosen = true;
      applyLang();
    });

    $('reload').addEventListener('click', boot);
    $('join-form').addEventListener('submit', onJoin);
    $('code').addEventListener('input', function () {
      if ($('join-err').firstChild) joinError();
    });
    $('info-btn').addEventListener('click', function () { setInfo($('info').hidden); });

    var ta = $('text');
    $('composer').addEventListener('submit', onSend);
    ta.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) onSend(e);
    });
    ta.addEventListener('input', function () {
      autosize();
      if ($('composer-err').firstChild) composerError();
      typing(!!ta.value.trim());
    });
    ta.addEventListener('blur', stopTyping);
    // Keep the keyboard open when the send button is tapped.
    $('send').addEventListener('mousedown', function (e) { e.preventDefault(); });
    $('attach').addEventListener('click', function () { $('file').click(); });
    $('file').addEventListener('change', onFile);

    window.addEventListener('scroll', function () { S.stick = nearBottom(); }, { passive: true });
    document.addEventListener('visibilitychange', scheduleRead);
    // Back online: resend what waits for the network now, not after the backoff.
    window.addEventListener('online', function () {
      S.own.forEach(function (m) { if (m.state === 'sending' && m.waiting) resend(m); });
    });
    window.addEventListener('hashchange', function () {
      var tok = tokenFromHash();
      if (S.view === 'chat') return history.replaceState(null, '', location.pathname);
      if (!tok) return;
      S.token = tok;
      showJoin();
    });
    // Never show a conversation again from the back/forward cache.
    window.addEventListener('pageshow', function (e) {
      if (e.persisted) location.reload();
    });

    boot();
  }

  init();
}());
