// What the page shows: the language, the views, and each message as DOM.
// Text from the server goes in with textContent only.

var STATE_TEXT = { sending: 'stSending', stored: 'stSent', delivered: 'stDelivered', read: 'stRead' };
var THUMB = /^image\/(png|jpeg|gif|webp)$/;
// views: message → its elements { el, who, meta }; el._m leads back.
var views = new Map();
// previews: an own picture's local object URL, until the page forgets it.
var previews = new Map();
var shown = { stick: true, typingTimer: 0 };

function $(id) { return document.getElementById(id); }
function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}
function each(sel, fn) { Array.prototype.forEach.call(document.querySelectorAll(sel), fn); }

// ---- language ----

function t(key, n) {
  var d = I18N[settings.lang] || I18N.nb || {};
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
  var e = settings.cfg && settings.cfg.emergency;
  return (e && typeof e[which] === 'string' && e[which]) || (which === 'police' ? '112' : '02800');
}

function applyLang() {
  document.documentElement.lang = settings.lang;
  $('lang').value = settings.lang;
  each('[data-t]', function (e) {
    var n = e.getAttribute('data-n');
    e.textContent = t(e.getAttribute('data-t'), n ? emergency(n) : e.getAttribute('data-tn'));
  });
  each('[data-t-aria]', function (e) { e.setAttribute('aria-label', t(e.getAttribute('data-t-aria'))); });
  each('[data-t-ph]', function (e) { e.setAttribute('placeholder', t(e.getAttribute('data-t-ph'))); });
  each('a[data-tel]', function (e) { e.href = 'tel:' + emergency(e.getAttribute('data-tel')); });
  var hours = settings.cfg && settings.cfg.staffed_hours;
  var h = (hours && (hours[settings.lang] || hours.nb)) || '';
  $('hours').textContent = h;
  $('hours').hidden = !h;
  $('unit').textContent = settings.unit || t('police');
  rerenderMessages();
}

// ---- views ----

function show(view) {
  ['loading', 'join', 'chat', 'ended', 'none'].forEach(function (v) { $('v-' + v).hidden = v !== view; });
  document.body.className = 'v-' + view;
  // One must-know list: in the join view, and behind the toggle in chat.
  if (view === 'chat') $('info').appendChild($('know'));
  if (view === 'join') $('join-know').appendChild($('know'));
  if (page.view === view) return;
  page.view = view;
  window.scrollTo(0, 0);
  $(view + '-h').focus();
}

function showOffline() {
  setT('loading-h', 'offlineH');
  setT('loading-p', 'offlineP');
  $('reload').hidden = false;
  page.view = '';
  show('loading');
}

function showNone(out) {
  setT('none-h', out ? 'outH' : 'noneH');
  setT('none-p', out ? 'outP' : 'noneP');
  show('none');
}

// Officer typing shows until a message comes, or 6 s without a new signal.
function showTyping(on) {
  clearTimeout(shown.typingTimer);
  if (on) shown.typingTimer = setTimeout(function () { showTyping(false); }, 6000);
  var e = $('typing');
  if (on === e.classList.contains('on')) return;
  setT(e, on ? 'typing' : '');
  e.classList.toggle('on', on);
}

function setInfo(open) {
  $('info').hidden = !open;
  $('info-btn').setAttribute('aria-expanded', String(open));
}

// ---- messages ----

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

function viewOf(m) {
  var v = views.get(m);
  if (!v) {
    v = { el: el('div'), who: null, meta: null };
    v.el._m = m;
    views.set(m, v);
  }
  return v;
}

function buildMsg(m) {
  var v = viewOf(m);
  var root = v.el;
  root.textContent = '';
  v.who = v.meta = null;
  if (m.kind === 'notice') {
    root.className = 'msg note';
    root.appendChild(el('p', 'note-text', m.text));
    return;
  }
  var mine = m.dir === 'from_guest';
  root.className = 'msg ' + (mine ? 'me' : 'them');
  v.who = root.appendChild(el('p', mine ? 'who vh' : 'who', mine ? t('you') : m.sender || settings.unit || t('police')));
  var bubble = root.appendChild(el('div', 'bubble'));
  var quoted = m.replyTo && talk.byseq.get(m.replyTo);
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
  v.meta = root.appendChild(el('div', 'meta'));
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
  var preview = previews.get(m);
  if (m.dir === 'to_guest' && url) {
    var a = box.appendChild(el('a', 'file-link'));
    a.href = url;
    a.setAttribute('download', f.name || '');
    if (pic) a.appendChild(thumb(url, true));
    a.appendChild(el('span', '', t('download') + ': ' + label));
  } else {
    if (preview || pic) box.appendChild(thumb(preview || url, !preview));
    box.appendChild(el('span', '', label));
  }
  return box;
}

function renderMeta(m) {
  var v = views.get(m);
  var meta = v && v.meta;
  if (!meta) return;
  meta.textContent = '';
  var time = meta.appendChild(el('time', '', fmtTime(m.ts)));
  time.dateTime = new Date(m.ts).toISOString();
  if (m.edited && !m.deleted) meta.appendChild(el('span', '', '(' + t('edited') + ')'));
  if (m.dir !== 'from_guest') return;
  var failed = m.state === 'failed';
  v.el.classList.toggle('failed', failed);
  var st = meta.appendChild(el('span', 'state st-' + m.state));
  // Status changes are shown, not read aloud each time; failures are announced.
  st.setAttribute('aria-live', 'off');
  var s = sends.get(m);
  if (failed) {
    st.textContent = t('stFailed') + '. ' + t(m.err, m.errN);
    var b = meta.appendChild(el('button', 'btn small retry', t('retrySend')));
    b.type = 'button';
    b.addEventListener('click', function () { retry(m); });
  } else if (m.state === 'sending' && s && s.waiting) {
    st.textContent = t('stWaiting');
  } else if (m.state === 'sending' && s && s.progress != null) {
    st.textContent = t('stUploading', s.progress);
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
  log.insertBefore(viewOf(m).el, ref);
}

function reposition(m) {
  var e = views.get(m) && views.get(m).el;
  if (!e || !e.parentNode) return;
  var p = e.previousElementSibling;
  var n = e.nextElementSibling;
  if ((p && p._m.seq > m.seq) || (n && n._m.seq != null && n._m.seq < m.seq)) {
    e.remove();
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
    var who = views.get(m).who;
    if (who && m.dir === 'to_guest') {
      var same = prev && prev.dir === 'to_guest' && prev.kind !== 'notice' && prev.sender === m.sender;
      who.className = same ? 'who vh' : 'who';
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
  shown.stick = true;
}

// A picture that loads late must not push the newest message out of sight.
function keepAtEnd() {
  if (shown.stick && page.view === 'chat') scrollToEnd();
}

// forgetScreen drops every message's elements and local previews.
function forgetScreen() {
  previews.forEach(function (url) { URL.revokeObjectURL(url); });
  previews = new Map();
  views = new Map();
  clearTimeout(shown.typingTimer);
  $('log').textContent = '';
}
