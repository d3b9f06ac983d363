// The "officer" of the end-to-end tests: a real Matrix client with real
// end-to-end encryption, built the way Element Web is (matrix-js-sdk with the
// Rust crypto stack, matrix-sdk-crypto-wasm), driving the bridge the way a
// police officer in Element would.
//
// Usage:
//   const officer = await Officer.login(hsUrl, '@officer:localhost', password);
//   await officer.start();
//   const dm = await officer.createEncryptedDM(botMxid);
//   const id = await officer.sendText(dm, '!sc help');
//   const reply = await officer.waitForMessage(dm, (c) => c.body?.includes('hjelp'));
//   await officer.stop();
//
// Notes on the environment (see also lib/polyfill.mjs):
//   - Node 20: matrix-js-sdk 43 wants Node 22; the polyfill module supplies what
//     is missing and must be evaluated before the SDK, hence the first import.
//   - No IndexedDB in Node: the Rust crypto store is in memory
//     (initRustCrypto({ useIndexedDB: false })), as is the sync store. Every
//     Officer.login() therefore creates a brand-new device with fresh keys.
//   - Spec versions: Dendrite v0.15.2 advertises versions up to v1.2 only.
//     matrix-js-sdk 43's minimum is v1.1 (lib/version-support.js), it does not
//     refuse such a server, and everything the officer uses (login, sync,
//     createRoom, send, keys/*, sendToDevice, state) is on /v3 paths Dendrite
//     serves. So no versions shim is needed; the SDK merely treats newer
//     optional features (authenticated media, threads API, ...) as absent.
//   - Trust: the bridge's devices are never verified. The Rust crypto default
//     already shares room keys with unverified devices; start() sets it
//     explicitly anyway (globalBlacklistUnverifiedDevices = false and
//     AllDevicesIsolationMode(false)) so sending never fails or silently skips
//     unverified devices.
//   - Timers: the SDK leaves long request-timeout timers behind that would keep
//     Node alive for ~2 minutes after stop(); polyfill.mjs unrefs them once no
//     officer is running (holdSdkTimers), so test files exit promptly.
//   - Logging: the SDK logs at debug level by default. We hand the client a
//     logger that only lets errors through, and turn the SDK's global logger
//     down to errors too. Set OFFICER_SDK_LOG=debug (or info, warn) to see more.
// Must stay the first import: it has to run before matrix-js-sdk is evaluated.
import { holdSdkTimers } from './polyfill.mjs';

import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  createClient,
  ClientEvent,
  RoomEvent,
  RoomStateEvent,
  RoomMemberEvent,
  MatrixEvent,
  MatrixEventEvent,
  EventStatus,
  Method,
  SyncState,
} from 'matrix-js-sdk';
import { logger as sdkGlobalLogger } from 'matrix-js-sdk/lib/logger.js';
import { AllDevicesIsolationMode } from 'matrix-js-sdk/lib/crypto-api/index.js';

const DEFAULT_TIMEOUT_MS = 30000;
/** How often waiters re-check even without an SDK event (a safety net only). */
const POLL_MS = 250;

// ---------------------------------------------------------------------------
// Logging

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];
const sdkLogLevel = LEVELS.includes(process.env.OFFICER_SDK_LOG) ? process.env.OFFICER_SDK_LOG : 'error';

/**
 * A matrix-js-sdk `Logger` that drops everything below `sdkLogLevel`.
 * The client (and through it sync, the HTTP layer and the Rust OlmMachine) logs
 * through the logger passed to createClient, so this quiets nearly everything.
 */
function makeLogger(prefix) {
  const min = LEVELS.indexOf(sdkLogLevel);
  const log = {};
  for (const [i, level] of LEVELS.entries()) {
    log[level] = i < min ? () => {} : (...args) => console[level === 'trace' ? 'debug' : level](`[${prefix}]`, ...args);
  }
  log.getChild = (name) => makeLogger(`${prefix}${name}`);
  return log;
}

/**
 * A few SDK modules log through the global `loglevel` logger instead; each of
 * its children is created at debug level, so lower the level of every child too.
 */
function quietGlobalLogger(l) {
  l.setLevel(sdkLogLevel, false);
  const getChild = l.getChild;
  l.getChild = (name) => quietGlobalLogger(getChild.call(l, name));
  return l;
}
quietGlobalLogger(sdkGlobalLogger);

// ---------------------------------------------------------------------------

/** One line about a timeline event, for timeout messages. */
function describeEvent(ev) {
  const wire = ev.getWireType();
  const clear = ev.isEncrypted() ? `->${ev.getClearContent() ? ev.getType() : '?'}` : '';
  let what;
  if (ev.isDecryptionFailure()) what = `UNABLE TO DECRYPT (${ev.decryptionFailureReason})`;
  else if (ev.isBeingDecrypted()) what = 'decrypting…';
  else if (ev.isEncrypted() && !ev.getClearContent()) what = 'not decrypted yet';
  else {
    const c = ev.getContent();
    what = c.body !== undefined ? JSON.stringify(String(c.body).slice(0, 120)) : JSON.stringify(c).slice(0, 160);
  }
  const status = ev.status ? ` [${ev.status}]` : '';
  return `${ev.getId()} ${wire}${clear} from ${ev.getSender()}${status}: ${what}`;
}

/** Local echoes that have not reached the server yet have no real event ID. */
const PENDING = new Set([EventStatus.NOT_SENT, EventStatus.ENCRYPTING, EventStatus.SENDING, EventStatus.QUEUED, EventStatus.CANCELLED]);

export class Officer {
  /**
   * Logs in with a password and returns an Officer that is not started yet.
   * The server assigns a new device ID on every login, so every run (and every
   * Officer) is a separate device with its own keys.
   *
   * @param {string} hsUrl     homeserver base URL, e.g. http://127.0.0.1:8008
   * @param {string} user      full MXID (@officer:localhost) or localpart
   * @param {string} password
   * @param {object} [opts]
   * @param {string} [opts.deviceName]  display name of the new device
   * @param {boolean} [opts.crossSign=true]  set up cross-signing in start() and
   *   sign this device, as Element does for a new account. sikkerchat's device
   *   policy gives the guest's messages only to cross-signed devices; false
   *   makes a device its owner never vouched for.
   * @returns {Promise<Officer>}
   */
  static async login(hsUrl, user, password, { deviceName, crossSign = true } = {}) {
    const anon = createClient({ baseUrl: hsUrl, logger: makeLogger('officer-login') });
    const res = await anon.loginRequest({
      type: 'm.login.password',
      identifier: { type: 'm.id.user', user },
      password,
      initial_device_display_name: deviceName ?? `sikkerchat e2e officer ${randomBytes(3).toString('hex')}`,
    });
    const client = createClient({
      baseUrl: hsUrl,
      userId: res.user_id,
      deviceId: res.device_id,
      accessToken: res.access_token,
      logger: makeLogger(`officer ${res.user_id}/${res.device_id}`),
    });
    const officer = new Officer(client);
    officer._crossSignWith = crossSign ? { user: res.user_id, password } : null;
    return officer;
  }

  /** @param {import('matrix-js-sdk').MatrixClient} client  an authenticated client */
  constructor(client) {
    /** The underlying matrix-js-sdk MatrixClient, for anything this wrapper lacks. */
    this.client = client;
    /** Fires 'change' whenever something a waiter might care about happened. */
    this._changes = new EventEmitter();
    this._changes.setMaxListeners(0);
    /** roomId -> MatrixEvent[] of every timeline event seen (in arrival order). */
    this._events = new Map();
    this._seen = new WeakSet();
    this._syncState = null;
    this._syncError = null;
    this._started = false;
    this._stopped = false;
  }

  /** The officer's full user ID, e.g. @officer:localhost. */
  get userId() {
    return this.client.getUserId();
  }

  /** This login's device ID. */
  get deviceId() {
    return this.client.getDeviceId();
  }

  /**
   * Sets up Rust crypto, starts syncing and resolves once the first sync is
   * processed and this device's identity keys and one-time keys are on the
   * server (so other clients, like the bridge, can encrypt to it right away).
   *
   * @param {object} [opts]
   * @param {number} [opts.timeoutMs=30000]
   */
  async start({ timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    if (this._started) throw new Error('Officer already started');
    this._started = true;
    this._releaseTimers = holdSdkTimers();
    const client = this.client;

    // In-memory crypto store: there is no IndexedDB in Node.
    await client.initRustCrypto({ useIndexedDB: false });
    const crypto = client.getCrypto();
    // Share room keys with every device, verified or not (the bridge's devices
    // are unverified), and never fail a send because of verification state.
    crypto.globalBlacklistUnverifiedDevices = false;
    crypto.setDeviceIsolationMode(new AllDevicesIsolationMode(false));

    const changed = () => this._changes.emit('change');
    client.on(ClientEvent.Sync, (state, _prev, data) => {
      this._syncState = state;
      if (state === SyncState.Error) this._syncError = data?.error;
      changed();
    });
    client.on(RoomEvent.Timeline, (event, room) => {
      const roomId = room?.roomId ?? event.getRoomId();
      if (roomId) this._record(roomId, event);
      changed();
    });
    client.on(MatrixEventEvent.Decrypted, changed);
    client.on(RoomEvent.LocalEchoUpdated, changed);
    client.on(RoomEvent.MyMembership, changed);
    client.on(ClientEvent.Room, changed);
    client.on(RoomStateEvent.Members, changed);
    client.on(RoomMemberEvent.Membership, changed);

    await client.startClient({
      initialSyncLimit: 50,
      // Keep every event in the room's main timeline, including replies the
      // bridge posts in threads, so waitForMessage sees them all.
      threadSupport: false,
      lazyLoadMembers: false,
    });

    await this._waitFor(
      () => (this._syncState === SyncState.Prepared || this._syncState === SyncState.Syncing ? true : undefined),
      { timeoutMs, what: 'the first sync', detail: () => `sync state ${this._syncState}; last error ${this._syncError}` },
    );

    // Keys go up in the background right after startup; wait for them.
    let last = '';
    await this._waitFor(async () => {
      const { one_time_key_counts: counts = {} } = await client.http.authedRequest(Method.Post, '/keys/upload', undefined, {});
      const q = await client.http.authedRequest(Method.Post, '/keys/query', undefined, { device_keys: { [this.userId]: [this.deviceId] } });
      const deviceKeys = q.device_keys?.[this.userId]?.[this.deviceId];
      const otks = counts.signed_curve25519 ?? 0;
      last = `device keys ${deviceKeys ? 'uploaded' : 'missing'}, ${otks} one-time keys`;
      return deviceKeys && otks > 0 ? true : undefined;
    }, { timeoutMs, what: "this device's keys on the server", detail: () => last, pollMs: 200 });

    if (this._crossSignWith) await this._crossSign(timeoutMs);
  }

  /**
   * Creates this user's cross-signing keys (a new identity: each stack has
   * fresh accounts, and each user logs in once per stack) and signs this
   * device with them, then waits until the server hands out the signature.
   */
  async _crossSign(timeoutMs) {
    const { user, password } = this._crossSignWith;
    const crypto = this.client.getCrypto();
    await crypto.bootstrapCrossSigning({
      setupNewCrossSigning: true,
      authUploadDeviceSigningKeys: async (makeRequest) => {
        await makeRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user }, password });
      },
    });
    let last = '';
    await this._waitFor(async () => {
      const q = await this.client.http.authedRequest(Method.Post, '/keys/query', undefined, { device_keys: { [this.userId]: [] } });
      const master = q.master_keys?.[this.userId];
      const selfSigning = q.self_signing_keys?.[this.userId];
      const device = q.device_keys?.[this.userId]?.[this.deviceId];
      const ssKeyId = selfSigning ? Object.keys(selfSigning.keys)[0] : undefined;
      const signed = ssKeyId && device?.signatures?.[this.userId]?.[ssKeyId];
      last = `master ${master ? 'up' : 'missing'}, self-signing ${selfSigning ? 'up' : 'missing'}, device ${signed ? 'signed' : 'not signed'}`;
      return master && signed ? true : undefined;
    }, { timeoutMs, what: 'cross-signing on the server', detail: () => last, pollMs: 200 });
  }

  /**
   * Stops syncing, closes the Rust OlmMachine (freeing its wasm memory) and,
   * by default, logs out so the throwaway device is deleted on the server and
   * the bridge stops encrypting to it.
   *
   * @param {object} [opts]
   * @param {boolean} [opts.logout=true]
   */
  async stop({ logout = true } = {}) {
    if (this._stopped) return;
    this._stopped = true;
    this._changes.emit('stop');
    // stopClient() also calls cryptoBackend.stop(), which closes the OlmMachine.
    this.client.stopClient();
    if (logout) {
      try {
        await this.client.logout();
      } catch {
        // The server may already be gone (stack torn down first); nothing to clean then.
      }
    }
    this.client.http.abort();
    this.client.removeAllListeners();
    this._changes.removeAllListeners();
    this._releaseTimers?.();
  }

  /**
   * Creates a direct chat with otherUserId the way Element does for an
   * encrypted DM (is_direct, trusted_private_chat, m.room.encryption in the
   * initial state, m.direct account data) and resolves once the other user has
   * joined and this client has seen the join, so the first message is
   * encrypted for their devices.
   *
   * @param {string} otherUserId
   * @param {object} [opts]
   * @param {number} [opts.timeoutMs=30000]  how long to wait for the join
   * @returns {Promise<string>} room ID
   */
  async createEncryptedDM(otherUserId, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    const { room_id: roomId } = await this.client.createRoom({
      is_direct: true,
      invite: [otherUserId],
      preset: 'trusted_private_chat',
      initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }],
    });

    // Mark it as a DM in account data, as Element does.
    const direct = { ...(this.client.getAccountData('m.direct')?.getContent() ?? {}) };
    direct[otherUserId] = [...new Set([...(direct[otherUserId] ?? []), roomId])];
    await this.client.setAccountData('m.direct', direct);

    await this._waitFor(async () => {
      const room = this.client.getRoom(roomId);
      if (room?.getMember(otherUserId)?.membership !== 'join') return undefined;
      return (await this.client.getCrypto().isEncryptionEnabledInRoom(roomId)) ? true : undefined;
    }, {
      timeoutMs,
      what: `${otherUserId} to join the DM ${roomId}`,
      detail: () => `their membership as this client sees it: ${this.client.getRoom(roomId)?.getMember(otherUserId)?.membership ?? 'unknown'}`,
    });
    return roomId;
  }

  /**
   * Sends an m.text message. In an encrypted room it is encrypted (megolm) for
   * every device of every member, verified or not. Refuses to send in plain if
   * the server says the room is encrypted but this client has not caught up
   * with that yet: it waits for the local state instead.
   *
   * @param {string} roomId
   * @param {string} text
   * @returns {Promise<string>} the event ID
   */
  async sendText(roomId, text) {
    return this.sendMessage(roomId, { msgtype: 'm.text', body: text });
  }

  /**
   * Sends an m.room.message with arbitrary content (e.g. a reply with
   * m.relates_to, or m.notice), encrypted as in sendText.
   *
   * @param {string} roomId
   * @param {object} content
   * @returns {Promise<string>} the event ID
   */
  async sendMessage(roomId, content) {
    await this._ensureLocallyReady(roomId);
    const { event_id: eventId } = await this.client.sendEvent(roomId, 'm.room.message', content);
    return eventId;
  }

  /**
   * Resolves with the first timeline event in roomId, already received or
   * arriving later, whose (decrypted) content matches predicate. Encrypted
   * events are only offered to the predicate once decrypted; events still
   * undecryptable are listed in the timeout error. Every timeline event is
   * offered (state events too), in arrival order; local echoes only once the
   * server has accepted them (real $ event ID).
   *
   * @param {string} roomId
   * @param {(content: object, event: import('matrix-js-sdk').MatrixEvent) => boolean} predicate
   * @param {object} [opts]
   * @param {number} [opts.timeoutMs=30000]
   * @param {string} [opts.sender]  only consider events from this user
   * @param {string} [opts.type]    only consider events of this (clear) type; default any
   * @returns {Promise<{event, type: string, clearType: string, content: object, sender: string, eventId: string}>}
   *   type is the wire type ('m.room.encrypted' if it was encrypted), content the clear content
   */
  async waitForMessage(roomId, predicate, { timeoutMs = DEFAULT_TIMEOUT_MS, sender, type } = {}) {
    let predicateError;
    return this._waitFor(() => {
      for (const ev of this._roomEvents(roomId)) {
        if (PENDING.has(ev.status) || !ev.getId()?.startsWith('$')) continue;
        if (ev.isEncrypted() && (ev.isBeingDecrypted() || ev.isDecryptionFailure() || !ev.getClearContent())) continue;
        if (sender && ev.getSender() !== sender) continue;
        if (type && ev.getType() !== type) continue;
        // A predicate that throws (say c.body.includes() on a state event
        // without a body) counts as "no match"; the error shows up on timeout.
        try {
          if (!predicate(ev.getContent(), ev)) continue;
        } catch (err) {
          predicateError = err;
          continue;
        }
        return {
          event: ev,
          type: ev.getWireType(),
          clearType: ev.getType(),
          content: ev.getContent(),
          sender: ev.getSender(),
          eventId: ev.getId(),
        };
      }
      return undefined;
    }, {
      timeoutMs,
      what: `a matching message in ${roomId}`,
      detail: () => {
        const seen = this._roomEvents(roomId).map((ev) => `  ${describeEvent(ev)}`);
        const note = predicateError ? `; the predicate threw on some event: ${predicateError}` : '';
        return (seen.length ? `events seen in the room:\n${seen.join('\n')}` : 'no events seen in the room') + note;
      },
    });
  }

  /**
   * Sends a file as Element does in an encrypted room: AES-CTR encrypted
   * attachment (Matrix v2 attachment format), uploaded, then an m.image /
   * m.file event carrying the key.
   */
  async sendFile(roomId, { name, data, mimetype }) {
    const { webcrypto } = await import('node:crypto');
    const keyBytes = webcrypto.getRandomValues(new Uint8Array(32));
    const iv = new Uint8Array(16);
    webcrypto.getRandomValues(iv.subarray(0, 8));
    const key = await webcrypto.subtle.importKey('raw', keyBytes, { name: 'AES-CTR' }, true, ['encrypt', 'decrypt']);
    const ciphertext = new Uint8Array(await webcrypto.subtle.encrypt({ name: 'AES-CTR', counter: iv, length: 64 }, key, data));
    const digest = new Uint8Array(await webcrypto.subtle.digest('SHA-256', ciphertext));
    const { content_uri: url } = await this.client.uploadContent(Buffer.from(ciphertext), { type: 'application/octet-stream', includeFilename: false });
    const b64 = (u8) => Buffer.from(u8).toString('base64').replace(/=+$/, '');
    const jwk = await webcrypto.subtle.exportKey('jwk', key);
    const msgtype = mimetype.startsWith('image/') ? 'm.image' : 'm.file';
    return this.sendMessage(roomId, {
      msgtype,
      body: name,
      filename: name,
      info: { mimetype, size: data.length },
      file: { v: 'v2', url, key: { kty: 'oct', key_ops: ['encrypt', 'decrypt'], alg: 'A256CTR', k: jwk.k, ext: true }, iv: b64(iv), hashes: { sha256: b64(digest) } },
    });
  }

  /** Downloads and decrypts the attachment of an m.image/m.file content. */
  async downloadAttachment(content) {
    const { webcrypto } = await import('node:crypto');
    const file = content.file;
    const mxc = file ? file.url : content.url;
    const [server, mediaId] = mxc.replace('mxc://', '').split('/');
    const base = this.client.baseUrl;
    let res = await fetch(`${base}/_matrix/client/v1/media/download/${server}/${mediaId}`, {
      headers: { Authorization: `Bearer ${this.client.getAccessToken()}` },
    });
    if (res.status === 404 || res.status === 400) {
      res = await fetch(`${base}/_matrix/media/v3/download/${server}/${mediaId}`);
    }
    if (!res.ok) throw new Error(`download of ${mxc} failed: ${res.status}`);
    const data = new Uint8Array(await res.arrayBuffer());
    if (!file) return Buffer.from(data);
    const unb64 = (s) => Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    const digest = Buffer.from(await webcrypto.subtle.digest('SHA-256', data)).toString('base64').replace(/=+$/, '');
    if (digest !== file.hashes.sha256) throw new Error('attachment hash mismatch');
    const key = await webcrypto.subtle.importKey('jwk', file.key, { name: 'AES-CTR' }, false, ['decrypt']);
    const plain = await webcrypto.subtle.decrypt({ name: 'AES-CTR', counter: unb64(file.iv), length: 64 }, key, data);
    return Buffer.from(plain);
  }

  /** Edits one of this officer's messages (m.replace), as Element does. */
  async editText(roomId, eventId, newText) {
    return this.sendMessage(roomId, {
      msgtype: 'm.text',
      body: `* ${newText}`,
      'm.new_content': { msgtype: 'm.text', body: newText },
      'm.relates_to': { rel_type: 'm.replace', event_id: eventId },
    });
  }

  /** Redacts (deletes) an event. */
  async redact(roomId, eventId) {
    const { event_id: id } = await this.client.redactEvent(roomId, eventId);
    return id;
  }

  /** Shows this officer as typing (or not) in roomId. */
  async sendTyping(roomId, typing, timeoutMs = 10000) {
    await this.client.sendTyping(roomId, typing, timeoutMs);
  }

  /** Sends a read receipt (m.read) for eventId in roomId. */
  async sendReadReceipt(roomId, eventId) {
    await this.client.http.authedRequest(Method.Post,
      `/rooms/${encodeURIComponent(roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`, undefined, {});
  }

  /** Resolves once userId is shown as typing (typing=true) or not (false) in roomId. */
  async waitForTyping(roomId, userId, typing = true, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    return this._waitFor(() => {
      const member = this.client.getRoom(roomId)?.getMember(userId);
      return member && member.typing === typing ? true : undefined;
    }, { timeoutMs, what: `${userId} typing=${typing} in ${roomId}`, detail: () => '' });
  }

  /** Resolves once userId has a read receipt at or after eventId in roomId. */
  async waitForReadReceipt(roomId, userId, eventId, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    return this._waitFor(() => {
      const room = this.client.getRoom(roomId);
      if (!room) return undefined;
      const event = room.findEventById(eventId);
      return event && room.hasUserReadEvent(userId, eventId) ? true : undefined;
    }, { timeoutMs, what: `a read receipt of ${userId} for ${eventId}`, detail: () => '' });
  }

  /**
   * Resolves with the ID of a room this officer is invited to (pending invite,
   * already there or arriving later) and that predicate accepts.
   *
   * @param {object} [opts]
   * @param {number} [opts.timeoutMs=30000]
   * @param {(roomId: string, room: import('matrix-js-sdk').Room) => boolean} [opts.predicate]
   * @returns {Promise<string>} room ID
   */
  async waitForInvite({ timeoutMs = DEFAULT_TIMEOUT_MS, predicate = () => true } = {}) {
    const invited = () => this.client.getRooms().filter((r) => r.getMyMembership() === 'invite');
    return this._waitFor(() => invited().find((r) => predicate(r.roomId, r))?.roomId, {
      timeoutMs,
      what: 'an invite',
      detail: () => `pending invites: ${invited().map((r) => r.roomId).join(', ') || 'none'}`,
    });
  }

  /**
   * Joins a room and resolves once this client's sync has caught up with the
   * join (so sending in it is encrypted when it should be).
   *
   * @param {string} roomId
   * @param {object} [opts]
   * @param {number} [opts.timeoutMs=30000]
   * @returns {Promise<string>} room ID
   */
  async joinRoom(roomId, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    await this.client.joinRoom(roomId);
    // Now and then (about one run in ten of the Meta suite) the room stays
    // "invite" in this client for good after a join the server accepted.
    // After 10 s ask the server: if it has us joined, the sync lost the
    // join, and the room's state is taken from the server (the encryption
    // event through the crypto layer, as sync does); if it has us invited,
    // join again. Either way it is said on stderr with the room, so a pattern
    // can be seen.
    let checkedAt = Date.now();
    await this._waitFor(async () => {
      const room = this.client.getRoom(roomId);
      if (room?.getMyMembership() === 'join') return true;
      if (!room || Date.now() - checkedAt < 10000) return undefined;
      checkedAt = Date.now();
      const member = await this.client.getStateEvent(roomId, 'm.room.member', this.userId).catch((err) => ({ membership: `unreadable (${err?.errcode ?? err})` }));
      console.error(`officer ${this.userId}: ${roomId} still "${room.getMyMembership()}" here 10 s after joining; the server says "${member?.membership}"`);
      if (member?.membership === 'invite') {
        await this.client.joinRoom(roomId);
      } else if (member?.membership === 'join') {
        const events = (await this.client.roomState(roomId)).map((e) => new MatrixEvent(e));
        for (const e of events) {
          if (e.getType() === 'm.room.encryption' && e.getStateKey() === '') await this.client.getCrypto()?.onCryptoEvent?.(room, e);
        }
        room.currentState.setStateEvents(events);
        room.recalculate();
      }
      return undefined;
    }, {
      timeoutMs,
      what: `our join of ${roomId} to come down sync`,
      detail: () => `membership: ${this.client.getRoom(roomId)?.getMyMembership() ?? 'room unknown'}`,
    });
    return roomId;
  }

  /**
   * Reads a state event's content from the server
   * (GET /rooms/{roomId}/state/{type}/{stateKey}); rejects if it is absent
   * (err.errcode === 'M_NOT_FOUND', err.httpStatus === 404).
   *
   * @param {string} roomId
   * @param {string} type
   * @param {string} [stateKey='']
   * @returns {Promise<object>}
   */
  async getState(roomId, type, stateKey = '') {
    return this.client.getStateEvent(roomId, type, stateKey);
  }

  /**
   * Whether the server has an m.room.encryption state event (with an
   * algorithm) in the room.
   * @param {string} roomId
   * @returns {Promise<boolean>}
   */
  async isRoomEncrypted(roomId) {
    try {
      const content = await this.getState(roomId, 'm.room.encryption');
      return typeof content?.algorithm === 'string' && content.algorithm !== '';
    } catch (err) {
      if (err?.errcode === 'M_NOT_FOUND' || err?.httpStatus === 404) return false;
      throw err;
    }
  }

  /**
   * The member list of a room as the server has it (GET /rooms/{id}/joined_members).
   * @param {string} roomId
   * @returns {Promise<string[]>} user IDs of joined members
   */
  async getJoinedMembers(roomId) {
    const res = await this.client.getJoinedRoomMembers(roomId);
    return Object.keys(res.joined ?? {});
  }

  /**
   * The room's whole timeline from the server, oldest first, decrypted where
   * this device has the keys: what Element shows when the officer scrolls
   * back. The live timeline alone is not enough after an outage: when many
   * events arrive between two syncs the sync is "limited" and the SDK starts a
   * new live timeline after a gap. Dendrite v0.15.2's backward pagination can
   * repeat an event at a page boundary (taken once here) and skip one (see
   * faults.test.mjs, which adds the live timeline's events).
   * @param {string} roomId
   * @returns {Promise<import('matrix-js-sdk').MatrixEvent[]>}
   */
  async roomHistory(roomId) {
    const mapper = this.client.getEventMapper();
    const raw = [];
    let from;
    for (let page = 0; page < 200; page++) {
      const query = { dir: 'b', limit: '100' };
      if (from) query.from = from;
      const res = await this.client.http.authedRequest(Method.Get, `/rooms/${encodeURIComponent(roomId)}/messages`, query);
      raw.push(...(res.chunk ?? []));
      if (!res.end || res.end === from || !res.chunk?.length) break;
      from = res.end;
    }
    const seen = new Set();
    const events = raw.reverse()
      .filter((ev) => !seen.has(ev.event_id) && seen.add(ev.event_id))
      .map((ev) => mapper({ ...ev, room_id: roomId }));
    for (const ev of events) await this.client.decryptEventIfNeeded(ev);
    return events;
  }

  /** Leaves a room. */
  async leaveRoom(roomId) {
    await this.client.leave(roomId);
  }

  // -------------------------------------------------------------------------
  // Internals

  _record(roomId, event) {
    if (this._seen.has(event)) return;
    this._seen.add(event);
    if (!this._events.has(roomId)) this._events.set(roomId, []);
    this._events.get(roomId).push(event);
  }

  /** Everything seen in the room, including what is in the live timeline now. */
  _roomEvents(roomId) {
    const room = this.client.getRoom(roomId);
    for (const ev of room?.getLiveTimeline().getEvents() ?? []) this._record(roomId, ev);
    return this._events.get(roomId) ?? [];
  }

  /**
   * In an encrypted room (server's view), wait until the local client knows it
   * is encrypted too (its sync may lag behind a fresh join), so the SDK never
   * sends a plaintext event there.
   */
  async _ensureLocallyReady(roomId, timeoutMs = DEFAULT_TIMEOUT_MS) {
    // Throws (e.g. M_FORBIDDEN) right away if we cannot see the room at all.
    if (!(await this.isRoomEncrypted(roomId))) return;
    await this._waitFor(
      async () => ((await this.client.getCrypto().isEncryptionEnabledInRoom(roomId)) ? true : undefined),
      { timeoutMs, what: `this client to learn from sync that ${roomId} is encrypted` },
    );
  }

  /**
   * Calls check() now, on every change notification and every pollMs, until
   * it returns something other than undefined, and resolves with that. check
   * may be async; runs never overlap. Rejects on timeout (with what/detail
   * in the message), if check throws, or if the officer is stopped.
   */
  _waitFor(check, { timeoutMs = DEFAULT_TIMEOUT_MS, what, detail = () => '', pollMs = POLL_MS }) {
    return new Promise((resolve, reject) => {
      let running = false;
      let again = false;
      let done = false;
      const finish = (fn, value) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(poll);
        this._changes.off('change', run);
        this._changes.off('stop', onStop);
        fn(value);
      };
      const run = async () => {
        if (done) return;
        if (running) {
          again = true;
          return;
        }
        running = true;
        try {
          do {
            again = false;
            const value = await check();
            if (value !== undefined) return finish(resolve, value);
          } while (again && !done);
        } catch (err) {
          finish(reject, err);
        } finally {
          running = false;
        }
      };
      const onStop = () => finish(reject, new Error(`officer stopped while waiting for ${what}`));
      const timer = setTimeout(() => {
        let extra = '';
        try {
          extra = detail();
        } catch (err) {
          extra = `(could not describe: ${err})`;
        }
        finish(reject, new Error(`${this.userId}: timed out after ${timeoutMs} ms waiting for ${what}${extra ? `; ${extra}` : ''}`));
      }, timeoutMs);
      const poll = setInterval(run, pollMs);
      this._changes.on('change', run);
      this._changes.on('stop', onStop);
      run();
    });
  }
}
