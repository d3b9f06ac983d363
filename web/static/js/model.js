// The conversation as the page knows it: messages and who wrote them, with
// nothing of the page (render.js keeps the elements) or of the network
// (outbox.js keeps what is being sent). Everything lives in this page's memory
// only: no storage, no service worker, no cache.

var I18N = window.SC_I18N || {};
var LANGS = ['nb', 'nn', 'en'];
var FALLBACK_EXIT = 'https://www.yr.no/';
var RANK = { sending: 0, stored: 1, delivered: 2, read: 3 };
var E = 'NO.SIKKERCHAT.';

// settings: what the server and the person chose.
var settings = { lang: 'nb', langChosen: false, cfg: null, unit: '' };
// page: which view shows, and the page-wide state around it.
var page = { view: '', token: '', joinBusy: false, exiting: false, esc: [] };
// talk: the conversation's messages, by position and by the guest's own ID.
var talk = { byseq: new Map(), bycid: new Map(), own: [], maxToGuest: 0, readSent: 0, readTimer: 0 };

// A message from the event stream, as the model keeps it.
function messageFrom(d) {
  return {
    seq: d.seq, dir: d.direction === 'from_guest' ? 'from_guest' : 'to_guest', kind: d.kind || 'text',
    text: d.text || '', sender: d.sender || '', ts: d.ts || Date.now(), cid: d.client_id || '',
    edited: !!d.edited, deleted: !!d.deleted, replyTo: d.reply_to || 0, file: d.file || null,
    state: RANK[d.status] != null ? d.status : 'stored'
  };
}

// A message the guest writes now; it has no position until the server stores it.
function ownMessage(kind) {
  return { seq: null, dir: 'from_guest', kind: kind, text: '', ts: Date.now(), cid: newClientId(), state: 'sending' };
}

function newClientId() {
  var c = window.crypto;
  if (typeof c.randomUUID === 'function') return c.randomUUID();
  var b = c.getRandomValues(new Uint8Array(16));
  var s = '';
  for (var i = 0; i < b.length; i++) s += (b[i] < 16 ? '0' : '') + b[i].toString(16);
  return s;
}

// A message's state only moves forward (sending, stored, delivered, read);
// a failure can be left by a successful retry.
function advance(m, status) {
  if (status === 'failed') { m.state = 'failed'; return true; }
  if (RANK[status] == null || (m.state !== 'failed' && RANK[status] <= RANK[m.state])) return false;
  m.state = status;
  return true;
}

function forgetConversation() {
  talk.byseq = new Map();
  talk.bycid = new Map();
  talk.own = [];
  talk.maxToGuest = talk.readSent = 0;
}
