// A guest without a browser: the guest API exactly as the page uses it (join
// with token + code, cookie, Origin and X-Sikkerchat on every POST, the event
// stream with Last-Event-ID resume, retries with the same client_id). The
// benchmark and the fault tests use it where a browser per guest would be too
// heavy; the browser tests prove the page itself.
import http from 'node:http';
import { randomBytes } from 'node:crypto';

export const newClientId = () => randomBytes(12).toString('base64url');

export class GuestError extends Error {
  constructor(status, body) {
    super(`guest API ${status}: ${JSON.stringify(body)}`);
    this.status = status;
    this.body = body;
  }
}

export class Guest {
  /** @param {string} baseUrl the guest listener, e.g. http://127.0.0.1:29346 */
  constructor(baseUrl, cookie = '') {
    this.baseUrl = baseUrl;
    this.cookie = cookie;
    /** seq -> message frame, the guest's record as the page would show it */
    this.record = new Map();
    this.lastEventId = 0;
    this.closed = null;
  }

  /** Joins with an invite ({url, code}) as `!sc new` gives it. */
  static async join(baseUrl, invite) {
    const token = new URL(invite.url).hash.slice(1);
    const guest = new Guest(baseUrl);
    const res = await guest.post('/api/join', { token, code: invite.code });
    if (res.status !== 200) throw new GuestError(res.status, res.body);
    return guest;
  }

  headers(extra = {}) {
    return { Origin: this.baseUrl, 'X-Sikkerchat': '1', ...(this.cookie ? { Cookie: this.cookie } : {}), ...extra };
  }

  /** POSTs JSON; resolves {status, body}. Throws only when no answer came. */
  async post(path, body, { signal } = {}) {
    const res = await fetch(this.baseUrl + path, {
      method: 'POST',
      headers: this.headers({ 'Content-Type': 'application/json' }),
      body: JSON.stringify(body),
      signal,
    });
    const setCookie = res.headers.get('set-cookie');
    if (setCookie) this.cookie = setCookie.split(';')[0];
    const text = await res.text();
    let parsed;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      parsed = { raw: text };
    }
    return { status: res.status, body: parsed };
  }

  /** Sends a text once; resolves the answer ({status, body}). */
  send(text, clientId = newClientId(), opts) {
    return this.post('/api/messages', { client_id: clientId, text }, opts);
  }

  /**
   * Sends a text the way the page does: until the bridge has answered 2xx,
   * retrying with the same client_id after network errors and 5xx/429.
   * Resolves with the accepted answer and the number of tries.
   */
  async sendUntilStored(text, clientId = newClientId(), { retryMs = 200, timeoutMs = 300000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    let tries = 0;
    for (;;) {
      tries++;
      try {
        const res = await this.send(text, clientId);
        if (res.status === 200 || res.status === 202) return { ...res, tries, clientId };
        if (res.status < 500 && res.status !== 429) throw new GuestError(res.status, res.body);
      } catch (err) {
        if (err instanceof GuestError) throw err;
        // no answer: the bridge is down or the connection broke; try again
      }
      if (Date.now() > deadline) throw new Error(`message not stored within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }

  /**
   * Opens the event stream (resuming after lastEventId) and keeps the record.
   * onFrame(name, data, receivedAt) sees every frame. Resolves once the stream
   * answered 200; the returned object has close() and a `done` promise.
   */
  openStream({ onFrame = () => {}, resume = true } = {}) {
    const url = new URL(this.baseUrl + '/api/events');
    return new Promise((resolve, reject) => {
      const headers = this.headers({ Accept: 'text/event-stream' });
      if (resume && this.lastEventId) headers['Last-Event-ID'] = String(this.lastEventId);
      const req = http.get({ hostname: url.hostname, port: url.port, path: url.pathname, headers, agent: false }, (res) => {
        if (res.statusCode !== 200) {
          let body = '';
          res.on('data', (c) => { body += c; });
          res.on('end', () => reject(new GuestError(res.statusCode, body)));
          return;
        }
        res.setEncoding('utf8');
        let buf = '';
        let doneResolve;
        const done = new Promise((r) => { doneResolve = r; });
        res.on('data', (chunk) => {
          const at = performance.now();
          buf += chunk;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let name = 'message';
            let id = 0;
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) name = line.slice(7);
              else if (line.startsWith('id: ')) id = Number(line.slice(4));
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (!data) continue;
            const parsed = JSON.parse(data);
            if (id > this.lastEventId) this.lastEventId = id;
            this.apply(name, parsed);
            onFrame(name, parsed, at);
          }
        });
        res.on('end', () => doneResolve());
        res.on('error', () => doneResolve());
        res.on('aborted', () => doneResolve());
        resolve({ close: () => req.destroy(), done, socket: req.socket });
      });
      req.on('error', reject);
    });
  }

  /** Keeps the record as the page does: messages by seq, status updates in place. */
  apply(name, data) {
    if (name === 'message') {
      const prev = this.record.get(data.seq);
      this.record.set(data.seq, { ...prev, ...data });
    } else if (name === 'status') {
      const prev = this.record.get(data.seq);
      if (prev) prev.status = data.status;
    } else if (name === 'closed') {
      this.closed = data.reason;
    }
  }

  /** The record in order. */
  entries() {
    return [...this.record.values()].sort((a, b) => a.seq - b.seq);
  }
}
