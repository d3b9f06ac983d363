// The Meta simulator's control API (internal/metasim, /_sim/): what the tests
// make people on Messenger and Instagram do, and what Meta received.

export class MetaSim {
  constructor(stack) {
    this.url = stack.META_SIM_URL;
    this.page = stack.META_PAGE_ID;
    this.instagram = stack.META_IG_ID;
  }

  async _post(path, body) {
    const res = await fetch(this.url + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`metasim ${path}: ${res.status} ${text}`);
    return JSON.parse(text);
  }

  async _get(path) {
    const res = await fetch(this.url + path);
    if (!res.ok) throw new Error(`metasim ${path}: ${res.status}`);
    return res.json();
  }

  /**
   * A person writes. attachments: [{type, mime_type, data: Buffer}].
   * agoMs backdates the message (the windows count from it).
   * @returns {Promise<string>} the message's mid
   */
  async message({ account, person, text, attachments = [], agoMs = 0, replyTo }) {
    const body = {
      account: account ?? this.page, person, text, ago_ms: agoMs, reply_to: replyTo,
      attachments: attachments.map((a) => ({ type: a.type, mime_type: a.mime_type, data: Buffer.from(a.data).toString('base64') })),
    };
    return (await this._post('/_sim/message', body)).mid;
  }

  /** Any other messaging item from the person (read, reaction, postback…). */
  async event({ account, person, part, value }) {
    return this._post('/_sim/event', { account: account ?? this.page, person, part, value });
  }

  /** Someone at the page replies in Meta Business Suite (an echo with another app's ID). */
  async pageReply({ account, person, text }) {
    return (await this._post('/_sim/page_reply', { account: account ?? this.page, person, text })).mid;
  }

  /** Every Send API call so far. */
  async sends() {
    return (await this._get('/_sim/sends')) ?? [];
  }

  /** Webhook deliveries and how many are still being retried. */
  async deliveries() {
    return this._get('/_sim/deliveries');
  }

  /** The Send API answers every call with status (0 ends the outage). */
  async sendOutage(status) {
    return this._post('/_sim/send_outage', { status });
  }
}
