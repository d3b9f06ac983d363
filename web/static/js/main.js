// Start, the chat view, leaving (closed, logged out, quick exit) and the
// page's events.

// applyConfig takes the page's settings: the bridge puts them on <body
// data-config> so that the first view needs no call of its own; only if they
// are missing (an old proxy rewrote the page?) are they asked for.
function applyConfig(cfg) {
  if (!cfg || typeof cfg !== 'object') return;
  settings.cfg = cfg;
  var avail = LANGS.filter(function (l) { return !Array.isArray(cfg.languages) || cfg.languages.indexOf(l) >= 0; });
  if (!avail.length) avail = LANGS;
  each('#lang option', function (o) { o.hidden = avail.indexOf(o.value) < 0; });
  if (!settings.langChosen) settings.lang = pickLang(avail, avail.indexOf(cfg.default_language) >= 0 ? cfg.default_language : avail[0]);
  if (cfg.max_message_chars > 0) $('text').maxLength = cfg.max_message_chars;
  applyLang();
}

function embeddedConfig() {
  try {
    return JSON.parse(document.body.getAttribute('data-config') || 'null');
  } catch (e) {
    return null;
  }
}

function loadConfig() {
  return api('GET', '/api/config').then(function (res) {
    return res.ok ? readJSON(res) : null;
  }).catch(noop).then(applyConfig);
}

function boot() {
  setT('loading-h', 'loadingH');
  setT('loading-p');
  $('reload').hidden = true;
  page.token = tokenFromHash();
  var sess = api('GET', '/api/session').then(function (res) {
    return readJSON(res).then(function (b) { return { status: res.status, body: b }; });
  }, noop);
  Promise.all([sess, settings.cfg || loadConfig()]).then(function (r) {
    var s = r[0];
    if (!s) return showOffline();
    if (s.status === 200) return startChat(s.body);
    if (s.status === 410) return show('ended');
    if (s.status === 401) return page.token ? showJoin() : showNone(false);
    showOffline();
  });
}

function startChat(info) {
  settings.unit = (info && info.unit_name) || (settings.cfg && settings.cfg.unit_name) || '';
  $('unit').textContent = settings.unit || t('police');
  if (location.hash) history.replaceState(null, '', location.pathname);
  page.token = '';
  updateEmpty();
  show('chat');
  openEvents();
}

// sessionGone forgets the conversation: 410 (or a closed stream) shows the
// ended view, 401 the logged-out text; a new link from the officer says so.
function sessionGone(status, reason) {
  if (page.view !== 'chat') return;
  wipe();
  if (status !== 410) return showNone(true);
  var again = reason === 'reissued';
  setT('ended-h', again ? 'reissuedH' : 'endedH');
  setT('ended-p', again ? 'reissuedP' : 'endedP');
  show('ended');
}

// wipe forgets the conversation: the model, the screen, what is being sent,
// the stream and every timer.
function wipe() {
  closeEvents();
  clearTimeout(stream.connTimer);
  clearTimeout(talk.readTimer);
  forgetSends();
  forgetScreen();
  forgetConversation();
  settings.unit = '';
  $('unit').textContent = '';
  $('text').value = '';
  $('text').rows = 1;
  showTyping(false);
  setT('conn');
  composerError();
  setInfo(false);
  updateEmpty();
}

// ---- quick exit ----

function quickExit() {
  if (page.exiting) return;
  page.exiting = true;
  var u = settings.cfg && settings.cfg.exit_url;
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
  settings.lang = pickLang(LANGS, 'nb');
  applyConfig(embeddedConfig());
  if (!settings.cfg) applyLang();

  $('exit').addEventListener('click', quickExit);
  document.addEventListener('keydown', function (e) {
    if (e.key !== 'Escape' && e.key !== 'Esc') return;
    var now = Date.now();
    page.esc = page.esc.filter(function (x) { return now - x < 1500; });
    if (page.esc.push(now) >= 3) quickExit();
  }, true);

  $('lang').addEventListener('change', function () {
    if (LANGS.indexOf(this.value) < 0) return;
    settings.lang = this.value;
    settings.langChosen = true;
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

  window.addEventListener('scroll', function () { shown.stick = nearBottom(); }, { passive: true });
  document.addEventListener('visibilitychange', scheduleRead);
  window.addEventListener('online', resendWaiting);
  window.addEventListener('hashchange', function () {
    var tok = tokenFromHash();
    if (page.view === 'chat') return history.replaceState(null, '', location.pathname);
    if (!tok) return;
    page.token = tok;
    showJoin();
  });
  // Never show a conversation again from the back/forward cache.
  window.addEventListener('pageshow', function (e) {
    if (e.persisted) location.reload();
  });

  boot();
}

init();
