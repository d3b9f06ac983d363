// The guest page of sikkerchat: join with the code word, chat with the police,
// leave fast. Everything lives in this page's memory only: no storage, no
// service worker, no cache. Text from the server goes in with textContent only.
(function () {
  'use strict';

  var I18N = window.SC_I18N || {};
  var LANGS = ['nb', 'nn', 'en'];
  var FALLBACK_EXIT = 'https://www.yr.no/';
  var RANK = { sending: 0, stored: 1, delivered: 2, read: 3 };
  var THUMB_TYPES = /^image\/(png|jpeg|gif|webp)$/;
  var FILE_TYPES = /^(image|video|audio)\/|^application\/pdf$/;
  var E = 'NO.SIKKERCHAT.';

  var S = {
    lang: 'nb', langChosen: false, cfg: null, view: 'loading', token: '',
    es: null, esTimer: 0, esFails: 0, checking: false, connTimer: 0,
    byseq: new Map(), bycid: new Map(), own: [],
    maxToGuest: 0, readSent: 0, readTimer: 0,
    typingAt: 0, typingOn: false, typingTimer: 0,
    joinErr: null, joinBusy: false, composerErr: null,
    loadingKind: 'loading', noneKind: 'none', exiting: false, esc: []
  };

  function $(id) { return document.getElementById(id); }
  function noop() {}
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  // ---- language ----

  function t(key, n) {
    var d = I18N[S.lang] || I18N.nb || {};
    var s = d[key] != null ? d[key] : (I18N.nb && I18N.nb[key]) || '';
    return n == null ? s : s.split('{n}').join(String(n));
  }

  function pickLang(avail, fallback) {
    var list = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ''];
    for (var i = 0; i < list.length; i++) {
      var base = String(list[i]).toLowerCase().split(/[-_]/)[0];
      var code = base === 'nb' || base === 'no' ? 'nb' : base;
      if (avail.indexOf(code) >= 0) return code;
    }
    return fallback;
  }

  function emergency(which) {
    var e = S.cfg && S.cfg.emergency;
    var n = e && typeof e[which] === 'string' && e[which];
    return n || (which === 'police' ? '112' : '02800');
  }

  function applyLang() {
    document.documentElement.lang = S.lang;
    $('lang').value = S.lang;
    var nodes = document.querySelectorAll('[data-t]');
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i].getAttribute('data-n');
      nodes[i].textContent = t(nodes[i].getAttribute('data-t'), n ? emergency(n) : null);
    }
    nodes = document.querySelectorAll('[data-t-aria]');
    for (i = 0; i < nodes.length; i++) nodes[i].setAttribute('aria-label', t(nodes[i].getAttribute('data-t-aria')));
    nodes = document.querySelectorAll('[data-t-ph]');
    for (i = 0; i < nodes.length; i++) nodes[i].setAttribute('placeholder', t(nodes[i].getAttribute('data-t-ph')));
    nodes = document.querySelectorAll('a[data-tel]');
    for (i = 0; i < nodes.length; i++) nodes[i].setAttribute('href', 'tel:' + emergency(nodes[i].getAttribute('data-tel')));
    var hours = S.cfg && S.cfg.staffed_hours;
    var h = hours ? hours[S.lang] || hours.nb || '' : '';
    $('hours').textContent = h;
    $('hours-li').hidden = !h;
    renderLoading();
    renderNone();
    $('ended-p').textContent = t('endedP');
    renderJoinErr();
    renderComposerErr();
    if (S.joinBusy) $('join-btn').textContent = t('joining');
    if ($('typing').textContent) $('typing').textContent = t('typing');
    if ($('conn').textContent) $('conn').textContent = t('reconnecting');
    $('unit').textContent = S.unitName || t('police');
    rerenderMessages();
  }

  // ---- views ----

  function show(view) {
    var views = ['loading', 'join', 'chat', 'ended', 'none'];
    for (var i = 0; i < views.length; i++) $('v-' + views[i]).hidden = views[i] !== view;
    document.body.className = 'v-' + view;
    var changed = S.view !== view;
    S.view = view;
    if (changed) {
      window.scrollTo(0, 0);
      $(view + '-h').focus();
    }
  }

  function renderLoading() {
    var off = S.loadingKind === 'offline';
    $('loading-h').textContent = t(off ? 'offlineH' : 'loadingH');
    $('loading-p').textContent = off ? t('offlineP') : '';
    $('reload').hidden = !off;
  }

  function showOffline() {
    S.loadingKind = 'offline';
    renderLoading();
    S.view = '';
    show('loading');
  }

  function renderNone() {
    var out = S.noneKind === 'out';
    $('none-h').textContent = t(out ? 'outH' : 'noneH');
    $('none-p').textContent = t(out ? 'outP' : 'noneP');
  }

  function showNone(kind) {
    S.noneKind = kind;
    renderNone();
    show('none');
  }

  function showEnded() {
    wipe();
    show('ended');
  }

  function showLoggedOut() {
    wipe();
    showNone('out');
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
    return res.text().then(function (s) {
      try { return JSON.parse(s) || {}; } catch (e) { return {}; }
    }, function () { return {}; });
  }

  function retryAfter(v) {
    var n = parseInt(v, 10);
    return n > 0 && n < 3600 ? n : 0;
  }

  // post sends a small state change and forgets it; failures do not matter.
  function post(path, body) {
    return api('POST', path, body).then(function (res) {
      if (res.status === 401 || res.status === 410) sessionGone(res.status);
      return res;
    }).catch(noop);
  }

  // ---- start ----

  function tokenFromHash() {
    var h = location.hash.replace(/^#/, '');
    try { h = decodeURIComponent(h); } catch (e) { /* keep as it is */ }
    // Messengers sometimes glue a full stop or a bracket to the end of a link.
    return h.trim().replace(/[^A-Za-z0-9_-]+$/, '');
  }

  function loadConfig() {
    return api('GET', '/api/config').then(function (res) {
      return res.ok ? readJSON(res) : null;
    }).catch(function () { return null; }).then(function (cfg) {
      if (!cfg) return;
      S.cfg = cfg;
      var avail = LANGS.filter(function (l) {
        return !Array.isArray(cfg.languages) || cfg.languages.indexOf(l) >= 0;
      });
      if (!avail.length) avail = LANGS;
      var opts = $('lang').options;
      for (var i = 0; i < opts.length; i++) opts[i].hidden = avail.indexOf(opts[i].value) < 0;
      if (!S.langChosen) {
        var def = avail.indexOf(cfg.default_language) >= 0 ? cfg.default_language : avail[0];
        S.lang = pickLang(avail, def);
      }
      if (cfg.max_message_chars > 0) $('text').maxLength = cfg.max_message_chars;
      applyLang();
    });
  }

  function boot() {
    S.loadingKind = 'loading';
    renderLoading();
    S.token = tokenFromHash();
    var cfg = S.cfg ? Promise.resolve() : loadConfig();
    var sess = api('GET', '/api/session').then(function (res) {
      return res.ok ? readJSON(res).then(function (b) { return { status: res.status, body: b }; }) : { status: res.status };
    }, function () { return null; });
    Promise.all([sess, cfg]).then(function (r) {
      var s = r[0];
      if (!s) return showOffline();
      if (s.status === 200) return startChat(s.body);
      if (s.status === 410) return showEnded();
      if (s.status === 401) return S.token ? showJoin() : showNone('none');
      showOffline();
    });
  }

  // ---- join ----

  function showJoin() {
    S.joinErr = null;
    renderJoinErr();
    $('join-form').hidden = false;
    $('code').value = '';
    show('join');
  }

  function joinError(key, n, fatal) {
    S.joinErr = { key: key, n: n, fatal: !!fatal };
    renderJoinErr();
    if (fatal) {
      $('join-form').hidden = true;
      $('join-err-msg').focus();
    } else {
      $('code').focus();
      $('code').select();
    }
  }

  // A wrong code shows under the field; a dead link replaces the form.
  function renderJoinErr() {
    var e = S.joinErr;
    var code = $('code');
    $('join-err').textContent = '';
    $('join-fatal').textContent = '';
    if (!e) {
      code.removeAttribute('aria-invalid');
      return;
    }
    var p = el('p', 'error', t(e.key, e.n));
    p.id = 'join-err-msg';
    p.tabIndex = -1;
    $(e.fatal ? 'join-fatal' : 'join-err').appendChild(p);
    if (/^errCode/.test(e.key)) code.setAttribute('aria-invalid', 'true');
    else code.removeAttribute('aria-invalid');
  }

  function onJoin(ev) {
    ev.preventDefault();
    if (S.joinBusy) return;
    var code = $('code').value.trim();
    if (!code) return joinError('errCodeMissing');
    S.joinBusy = true;
    var btn = $('join-btn');
    btn.setAttribute('aria-disabled', 'true');
    btn.textContent = t('joining');
    var done = function () {
      S.joinBusy = false;
      btn.removeAttribute('aria-disabled');
      btn.textContent = t('joinBtn');
    };
    api('POST', '/api/join', { token: S.token, code: code }).then(function (res) {
      return readJSON(res).then(function (b) {
        done();
        if (res.ok) {
          history.replaceState(null, '', location.pathname);
          S.token = '';
          $('code').value = '';
          S.joinErr = null;
          renderJoinErr();
          return startChat(b);
        }
        joinFailed(res, b);
      });
    }, function () {
      done();
      joinError('errNet');
    });
  }

  function joinFailed(res, b) {
    switch (b.errcode) {
      case E + 'BAD_TOKEN':
      case E + 'INVITE_UNKNOWN':
        return joinError('errUnknownLink', null, true);
      case E + 'INVITE_USED':
        return joinError('errUsed', null, true);
      case E + 'INVITE_EXPIRED':
        return joinError('errExpired', null, true);
      case E + 'INVITE_REVOKED':
        return joinError('errRevoked', null, true);
      case E + 'CODE_MISSING':
        return joinError('errCodeMissing');
      case E + 'CODE_WRONG':
        var n = b.attempts_left;
        if (typeof n !== 'number') return joinError('errCodeWrongAny');
        if (n <= 0) return joinError('errRevoked', null, true);
        return n === 1 ? joinError('errCodeWrong1') : joinError('errCodeWrong', n);
      case E + 'RATE_LIMITED':
        var s = retryAfter(res.headers.get('Retry-After'));
        return s ? joinError('errRateS', s) : joinError('errRate');
    }
    joinError('errOther');
  }

  // ---- chat ----

  function startChat(info) {
    S.unitName = (info && info.unit_name) || (S.cfg && S.cfg.unit_name) || '';
    $('unit').textContent = S.unitName || t('police');
    if (location.hash) history.replaceState(null, '', location.pathname);
    S.token = '';
    $('log').textContent = '';
    updateEmpty();
    show('chat');
    openEvents();
  }

  function openEvents() {
    closeEvents();
    var es = new EventSource('/api/events');
    S.es = es;
    es.addEventListener('open', function () {
      if (S.es !== es) return;
      S.esFails = 0;
      setConn(false);
    });
    es.addEventListener('message', function (e) { if (S.es === es) onMessage(parse(e.data)); });
    es.addEventListener('status', function (e) { if (S.es === es) onStatus(parse(e.data)); });
    es.addEventListener('read', function (e) { if (S.es === es) onRead(parse(e.data)); });
    es.addEventListener('typing', function (e) { if (S.es === es) onTyping(parse(e.data)); });
    es.addEventListener('closed', function (e) {
      if (S.es !== es) return;
      var d = parse(e.data) || {};
      closeEvents();
      if (d.reason === 'session_expired' || d.reason === 'session_ended') showLoggedOut();
      else showEnded();
    });
    es.onerror = function () {
      if (S.es !== es) return;
      setConn(true);
      checkSession(es);
    };
  }

  function closeEvents() {
    clearTimeout(S.esTimer);
    if (S.es) {
      var es = S.es;
      S.es = null;
      try { es.close(); } catch (e) { /* already closed */ }
    }
  }

  // After a stream error, ask whether the session still lives: the answer
  // decides between waiting for the reconnect, ended and logged out.
  function checkSession(es) {
    if (S.checking) return;
    S.checking = true;
    api('GET', '/api/session').then(function (r) { return r.status; }, function () { return 0; }).then(function (status) {
      S.checking = false;
      if (S.es !== es || S.view !== 'chat') return;
      if (status === 401 || status === 410) return sessionGone(status);
      if (es.readyState === 2) {
        // The browser gave up (the server answered with an error): open a new
        // stream; it replays the history and known messages are skipped.
        S.esFails++;
        S.esTimer = setTimeout(openEvents, backoff(S.esFails));
      }
    });
  }

  function sessionGone(status) {
    if (S.view !== 'chat') return;
    if (status === 410) showEnded();
    else showLoggedOut();
  }

  function setConn(on) {
    clearTimeout(S.connTimer);
    if (!on) {
      $('conn').textContent = '';
      return;
    }
    // A stream that comes back at once is not worth a word.
    S.connTimer = setTimeout(function () {
      if (S.view === 'chat') $('conn').textContent = t('reconnecting');
    }, 1500);
  }

  function parse(s) {
    try { return JSON.parse(s); } catch (e) { return null; }
  }

  function backoff(n) {
    var ms = Math.min(30000, 1000 * Math.pow(2, Math.max(0, n - 1)));
    return Math.round(ms * (0.75 + Math.random() * 0.5));
  }

  // wipe forgets the conversation: DOM, memory, timers.
  function wipe() {
    closeEvents();
    clearTimeout(S.connTimer);
    clearTimeout(S.readTimer);
    clearTimeout(S.typingTimer);
    S.own.forEach(function (m) {
      clearTimeout(m.timer);
      if (m.xhr) try { m.xhr.abort(); } catch (e) { /* gone */ }
      if (m.preview) URL.revokeObjectURL(m.preview);
      m.blob = null;
    });
    S.byseq = new Map();
    S.bycid = new Map();
    S.own = [];
    S.maxToGuest = 0;
    S.readSent = 0;
    S.typingOn = false;
    S.composerErr = null;
    S.unitName = '';
    $('log').textContent = '';
    $('unit').textContent = '';
    $('text').value = '';
    $('text').rows = 1;
    $('typing').textContent = '';
    $('typing').classList.remove('on');
    $('conn').textContent = '';
    renderComposerErr();
    setInfo(false);
    updateEmpty();
  }

  // ---- messages in ----

  function onMessage(d) {
    if (!d || typeof d.seq !== 'number') return;
    var m = S.byseq.get(d.seq);
    if (!m && d.direction === 'from_guest' && d.client_id) m = S.bycid.get(d.client_id);
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

  // update handles a message seen before: our own echo, or an edit/deletion.
  function update(m, d) {
    var wasPending = m.seq == null;
    if (wasPending) {
      m.seq = d.seq;
      S.byseq.set(m.seq, m);
      settle(m);
    }
    if (d.ts) m.ts = d.ts;
    var changed = (d.text || '') !== m.text || !!d.edited !== m.edited || !!d.deleted !== m.deleted ||
      JSON.stringify(d.file || null) !== JSON.stringify(m.file) && !(m.blob || m.preview);
    if (m.dir === 'from_guest') bump(m, d.status || 'stored');
    if (changed && !wasPending) {
      m.text = d.text || '';
      m.edited = !!d.edited;
      m.deleted = !!d.deleted;
      if (d.file) m.file = d.file;
      buildMsg(m);
    } else {
      renderMeta(m);
    }
    if (wasPending) reposition(m);
  }

  function onStatus(d) {
    if (!d) return;
    var m = (typeof d.seq === 'number' && S.byseq.get(d.seq)) || (d.client_id && S.bycid.get(d.client_id));
    if (!m) return;
    if (m.seq == null && typeof d.seq === 'number') {
      m.seq = d.seq;
      S.byseq.set(m.seq, m);
      settle(m);
      reposition(m);
    }
    if (d.status === 'read') return onRead({ seq: m.seq });
    bump(m, d.status);
  }

  // Reading a message means the police have read everything before it too.
  function onRead(d) {
    if (!d || typeof d.seq !== 'number') return;
    S.own.forEach(function (m) {
      if (m.seq != null && m.seq <= d.seq) bump(m, 'read');
    });
  }

  function bump(m, status) {
    if (RANK[status] == null) return;
    if (m.state === 'failed' || RANK[status] > RANK[m.state]) {
      m.state = status;
      renderMeta(m);
    }
  }

  function onTyping(d) {
    clearTimeout(S.typingTimer);
    if (d && d.typing) {
      showTyping(true);
      S.typingTimer = setTimeout(function () { showTyping(false); }, 6000);
    } else {
      showTyping(false);
    }
  }

  function showTyping(on) {
    var e = $('typing');
    if (!on) clearTimeout(S.typingTimer);
    if (on === !!e.textContent) return;
    e.textContent = on ? t('typing') : '';
    e.classList.toggle('on', on);
  }

  // ---- rendering ----

  function locale() { return t('locale') || 'nb-NO'; }

  function fmtTime(ts) {
    var d = new Date(ts);
    var opt = { hour: '2-digit', minute: '2-digit' };
    if (d.toDateString() !== new Date().toDateString()) {
      opt.day = 'numeric';
      opt.month = 'short';
    }
    try { return new Intl.DateTimeFormat(locale(), opt).format(d); } catch (e) { return d.toLocaleTimeString(); }
  }

  function fmtSize(n) {
    n = Number(n) || 0;
    var unit = 'B';
    var v = n;
    if (n >= 1048576) { v = n / 1048576; unit = 'MB'; } else if (n >= 1024) { v = n / 1024; unit = 'kB'; }
    var s;
    try { s = new Intl.NumberFormat(locale(), { maximumFractionDigits: v < 10 && unit !== 'B' ? 1 : 0 }).format(v); } catch (e) { s = String(Math.round(v)); }
    return s + '\u00a0' + unit;
  }

  function buildMsg(m) {
    var root = m.el;
    if (!root) {
      root = m.el = el('div');
      root._m = m;
    }
    root.textContent = '';
    if (m.kind === 'notice') {
      root.className = 'msg note';
      root.appendChild(el('p', 'note-text', m.text));
      return;
    }
    var mine = m.dir === 'from_guest';
    root.className = 'msg ' + (mine ? 'me' : 'them');
    m.whoEl = root.appendChild(el('p', 'who', mine ? t('you') : (m.sender || S.unitName || t('police'))));
    if (mine) m.whoEl.className = 'who vh';
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
      if (m.text && !(m.kind === 'file' && m.file && m.text === m.file.name)) bubble.appendChild(el('p', 'text', m.text));
    }
    m.metaEl = root.appendChild(el('div', 'meta'));
    renderMeta(m);
  }

  function fileBlock(m) {
    var f = m.file;
    var box = el('div', 'file');
    var label = (f.name || t('file')) + ' (' + fmtSize(f.size) + ')';
    if (m.dir === 'to_guest' && f.id) {
      var a = el('a', 'file-link');
      a.href = '/api/files/' + encodeURIComponent(f.id);
      a.setAttribute('download', f.name || '');
      if (THUMB_TYPES.test(f.mime || '')) {
        var img = el('img', 'thumb');
        img.alt = '';
        img.loading = 'lazy';
        img.decoding = 'async';
        img.onerror = function () { img.remove(); };
        img.onload = keepAtEnd;
        img.src = a.href;
        a.appendChild(img);
      }
      a.appendChild(el('span', 'file-name', t('download') + ': ' + label));
      box.appendChild(a);
    } else {
      if (m.preview) {
        var pimg = el('img', 'thumb');
        pimg.alt = '';
        pimg.onload = keepAtEnd;
        pimg.src = m.preview;
        box.appendChild(pimg);
      }
      box.appendChild(el('span', 'file-name', label));
    }
    return box;
  }

  function renderMeta(m) {
    var meta = m.metaEl;
    if (!meta) return;
    meta.textContent = '';
    var time = el('time', 'time', fmtTime(m.ts));
    time.dateTime = new Date(m.ts).toISOString();
    meta.appendChild(time);
    if (m.edited && !m.deleted) meta.appendChild(el('span', 'edited', '(' + t('edited') + ')'));
    if (m.dir !== 'from_guest') return;
    m.el.classList.toggle('failed', m.state === 'failed');
    var st = el('span', 'state st-' + m.state);
    // Status changes are shown, not read aloud each time; failures are announced.
    st.setAttribute('aria-live', 'off');
    if (m.state === 'failed') {
      st.textContent = t('stFailed') + '. ' + t(m.err || 'sendErr', m.errN);
      meta.appendChild(st);
      var b = el('button', 'btn small retry', t('retrySend'));
      b.type = 'button';
      b.addEventListener('click', function () { retry(m); });
      meta.appendChild(b);
      return;
    }
    var key = { sending: 'stSending', stored: 'stSent', delivered: 'stDelivered', read: 'stRead' }[m.state];
    if (m.state === 'sending' && m.progress != null && !m.waiting) st.textContent = t('stUploading', m.progress);
    else st.textContent = t(m.state === 'sending' && m.waiting ? 'stWaiting' : key);
    meta.appendChild(st);
  }

  function rerenderMessages() {
    var log = $('log');
    if (!log.firstChild) return;
    // A language switch re-renders every message: keep the screen reader quiet.
    log.setAttribute('aria-live', 'off');
    for (var c = log.firstElementChild; c; c = c.nextElementSibling) if (c._m) buildMsg(c._m);
    regroup();
    setTimeout(function () { log.setAttribute('aria-live', 'polite'); }, 200);
  }

  // insert keeps the server's order; messages still being sent stay at the end.
  function insert(m) {
    var log = $('log');
    var ref = null;
    if (m.seq != null) {
      for (var c = log.lastElementChild; c; c = c.previousElementSibling) {
        var o = c._m;
        if (o && ((o.seq == null && o.state !== 'failed') || (o.seq != null && o.seq > m.seq))) ref = c;
        else break;
      }
    }
    log.insertBefore(m.el, ref);
  }

  function reposition(m) {
    var prev = m.el.previousElementSibling;
    var next = m.el.nextElementSibling;
    var bad = (prev && prev._m && prev._m.seq != null && prev._m.seq > m.seq) ||
      (next && next._m && next._m.seq != null && next._m.seq < m.seq);
    if (!bad) return;
    m.el.remove();
    insert(m);
    regroup();
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
      if (m && m.whoEl && m.dir === 'to_guest') {
        var same = prev && prev.dir === 'to_guest' && prev.kind !== 'notice' && prev.sender === m.sender;
        m.whoEl.className = same ? 'who vh' : 'who';
      }
      prev = m;
    }
  }

  // A picture that loads late must not push the newest message out of sight.
  function keepAtEnd() {
    if (S.stick && S.view === 'chat') scrollToEnd();
  }

  function updateEmpty() {
    $('empty').hidden = !!$('log').firstChild;
  }

  // The end of the conversation is just above the footer: scrolling there keeps
  // the composer's room for messages instead of the emergency-number footer.
  function endY() {
    var foot = document.querySelector('.foot');
    return document.documentElement.scrollHeight - (foot ? foot.offsetHeight : 0) - window.innerHeight;
  }

  function nearBottom() {
    return window.scrollY >= endY() - 120;
  }

  function scrollToEnd() {
    window.scrollTo(0, Math.max(0, endY()));
    S.stick = true;
  }

  // ---- read receipts ----

  function scheduleRead() {
    if (S.view !== 'chat' || S.maxToGuest <= S.readSent || document.visibilityState !== 'visible') return;
    clearTimeout(S.readTimer);
    S.readTimer = setTimeout(function () {
      var seq = S.maxToGuest;
      if (S.view !== 'chat' || seq <= S.readSent || document.visibilityState !== 'visible') return;
      var before = S.readSent;
      S.readSent = seq;
      post('/api/read', { seq: seq }).then(function (res) {
        if (!res && S.readSent === seq) S.readSent = before;
      });
    }, 400);
  }

  // ---- messages out ----

  function newClientId() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === 'function') return c.randomUUID();
    var b = new Uint8Array(16);
    c.getRandomValues(b);
    var s = '';
    for (var i = 0; i < b.length; i++) s += (b[i] < 16 ? '0' : '') + b[i].toString(16);
    return s;
  }

  function newOwn(kind) {
    var m = { seq: null, dir: 'from_guest', kind: kind, text: '', ts: Date.now(), cid: newClientId(), state: 'sending', attempt: 0 };
    S.bycid.set(m.cid, m);
    S.own.push(m);
    return m;
  }

  function addOwn(m) {
    buildMsg(m);
    insert(m);
    afterInsert(false);
    scrollToEnd();
  }

  function onSend(ev) {
    if (ev) ev.preventDefault();
    var ta = $('text');
    var text = ta.value.trim();
    if (!text) return;
    setComposerErr(null);
    var m = newOwn('text');
    m.text = text;
    ta.value = '';
    autosize();
    stopTyping();
    addOwn(m);
    sendText(m);
    ta.focus();
  }

  function sendText(m) {
    m.state = 'sending';
    m.err = null;
    renderMeta(m);
    api('POST', '/api/messages', { client_id: m.cid, text: m.text }).then(function (res) {
      return readJSON(res).then(function (b) {
        sent(m, res.status, b, res.headers.get('Retry-After'), sendText);
      });
    }, function () { later(m, sendText, 0, true); });
  }

  function sendFile(m) {
    m.state = 'sending';
    m.err = null;
    m.progress = 0;
    renderMeta(m);
    var fd = new FormData();
    fd.append('client_id', m.cid);
    fd.append('file', m.blob, m.file.name);
    var x = new XMLHttpRequest();
    m.xhr = x;
    x.open('POST', '/api/files');
    x.setRequestHeader('X-Sikkerchat', '1');
    x.upload.onprogress = function (e) {
      if (!e.lengthComputable || m.state !== 'sending') return;
      var p = Math.min(99, Math.floor(e.loaded * 100 / e.total));
      if (p !== m.progress) {
        m.progress = p;
        m.waiting = false;
        renderMeta(m);
      }
    };
    x.onload = function () {
      m.xhr = null;
      m.progress = null;
      sent(m, x.status, parse(x.responseText) || {}, x.getResponseHeader('Retry-After'), sendFile);
    };
    x.onerror = x.ontimeout = function () {
      m.xhr = null;
      m.progress = null;
      later(m, sendFile, 0, true);
    };
    x.send(fd);
  }

  // sent handles the answer to a send; `again` resends with the same client_id.
  function sent(m, status, b, ra, again) {
    if (S.own.indexOf(m) < 0) return;
    if (status === 200 || status === 202) {
      if (typeof b.seq === 'number' && m.seq == null) {
        m.seq = b.seq;
        S.byseq.set(m.seq, m);
        reposition(m);
      }
      settle(m);
      // The file is on the server now; only a preview, if any, stays in memory.
      m.blob = null;
      bump(m, RANK[b.status] ? b.status : 'stored');
      return;
    }
    if (status === 401 || status === 410) return sessionGone(status);
    if (status === 429) return later(m, again, retryAfter(ra), false);
    if (status >= 500 && m.attempt < 5) return later(m, again, 0, false);
    var key = {
      MESSAGE_TOO_LONG: 'tooLong', FILE_TOO_LARGE: 'fileTooBig', TOO_LARGE: m.kind === 'file' ? 'fileTooBig' : 'tooLong',
      FILE_TYPE_NOT_ALLOWED: 'fileType', FILE_TYPE_MISMATCH: 'fileMismatch', EMPTY_MESSAGE: 'fileEmpty'
    }[String(b.errcode || '').replace(E, '')];
    if (key === 'fileEmpty' && m.kind !== 'file') key = null;
    fail(m, key || 'sendErr', key === 'fileTooBig' ? maxFileText() : null);
  }

  function settle(m) {
    clearTimeout(m.timer);
    m.waiting = false;
    m.progress = null;
    m.attempt = 0;
    m.err = null;
  }

  function later(m, again, secs, offline) {
    if (S.own.indexOf(m) < 0) return;
    m.attempt++;
    m.waiting = !!offline;
    m.again = again;
    renderMeta(m);
    clearTimeout(m.timer);
    m.timer = setTimeout(function () { again(m); }, secs ? secs * 1000 : backoff(m.attempt));
  }

  function fail(m, key, n) {
    settle(m);
    m.state = 'failed';
    m.err = key;
    m.errN = n;
    renderMeta(m);
    announce(t('stFailed') + '. ' + t(key, n));
  }

  function retry(m) {
    m.attempt = 0;
    $('text').focus();
    if (m.kind === 'file') sendFile(m);
    else sendText(m);
  }

  function announce(text) {
    var a = $('announce');
    a.textContent = '';
    setTimeout(function () { a.textContent = text; }, 50);
  }

  // Back online: resend what waits for the network now, not at the next backoff.
  window.addEventListener('online', function () {
    S.own.forEach(function (m) {
      if (m.state === 'sending' && m.waiting && m.again) {
        clearTimeout(m.timer);
        m.again(m);
      }
    });
  });

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
    if (f.size === 0) return setComposerErr('fileEmpty');
    if (max > 0 && f.size > max) return setComposerErr('fileTooBig', maxFileText());
    // An empty type is left to the server's own check of the bytes.
    if (f.type && !FILE_TYPES.test(f.type)) return setComposerErr('fileType');
    setComposerErr(null);
    var m = newOwn('file');
    m.file = { name: f.name, size: f.size, mime: f.type };
    m.blob = f;
    if (THUMB_TYPES.test(f.type) && window.URL && URL.createObjectURL) m.preview = URL.createObjectURL(f);
    addOwn(m);
    sendFile(m);
  }

  function setComposerErr(key, n) {
    S.composerErr = key ? { key: key, n: n } : null;
    renderComposerErr();
    var ta = $('text');
    if (key) ta.setAttribute('aria-invalid', 'true');
    else ta.removeAttribute('aria-invalid');
  }

  function renderComposerErr() {
    var slot = $('composer-err');
    slot.textContent = '';
    if (S.composerErr) slot.appendChild(el('p', 'error', t(S.composerErr.key, S.composerErr.n)));
  }

  // ---- typing out ----

  function typingPing() {
    var now = Date.now();
    if (now - S.typingAt < 4000) return;
    S.typingAt = now;
    S.typingOn = true;
    post('/api/typing', { typing: true });
  }

  function stopTyping() {
    if (!S.typingOn) return;
    S.typingOn = false;
    S.typingAt = 0;
    post('/api/typing', { typing: false });
  }

  function autosize() {
    var ta = $('text');
    ta.rows = 1;
    // An empty field stays one line, however the placeholder wraps.
    if (!ta.value) return;
    while (ta.scrollHeight > ta.clientHeight + 2 && ta.rows < 6) ta.rows++;
  }

  // ---- info ----

  function setInfo(open) {
    $('info').hidden = !open;
    $('info-btn').setAttribute('aria-expanded', String(open));
  }

  // ---- quick exit ----

  function exitURL() {
    var u = S.cfg && S.cfg.exit_url;
    return typeof u === 'string' && /^https?:\/\/[^\s]+$/i.test(u) ? u : FALLBACK_EXIT;
  }

  function quickExit() {
    if (S.exiting) return;
    S.exiting = true;
    var url = exitURL();
    try { if (navigator.sendBeacon) navigator.sendBeacon('/api/leave'); } catch (e) { /* best effort */ }
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
      S.esc.push(now);
      if (S.esc.length >= 3) quickExit();
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
      if (S.joinErr && !S.joinErr.fatal) {
        S.joinErr = null;
        renderJoinErr();
      }
    });

    $('info-btn').addEventListener('click', function () { setInfo($('info').hidden); });

    var ta = $('text');
    $('composer').addEventListener('submit', onSend);
    ta.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) onSend(e);
    });
    ta.addEventListener('input', function () {
      autosize();
      if (S.composerErr) setComposerErr(null);
      if (ta.value.trim()) typingPing();
      else stopTyping();
    });
    ta.addEventListener('blur', stopTyping);
    // Keep the keyboard open when the send button is tapped.
    $('send').addEventListener('mousedown', function (e) { e.preventDefault(); });
    $('attach').addEventListener('click', function () { $('file').click(); });
    $('file').addEventListener('change', onFile);

    window.addEventListener('scroll', function () { S.stick = nearBottom(); }, { passive: true });
    document.addEventListener('visibilitychange', scheduleRead);
    window.addEventListener('hashchange', function () {
      var tok = tokenFromHash();
      if (!tok) return;
      if (S.view === 'chat') {
        history.replaceState(null, '', location.pathname);
        return;
      }
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
