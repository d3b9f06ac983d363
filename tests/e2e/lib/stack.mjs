// Small helpers for talking to the local test stack: reading the facts file
// that scripts/stack.sh writes (stack.env) and creating accounts on the
// homeserver with the registration shared secret.
import { readFileSync } from 'node:fs';
import { createHmac, randomBytes } from 'node:crypto';

/**
 * Parses a KEY=VALUE file such as stack.env into a plain object.
 *
 * - one assignment per line; blank lines and lines starting with `#` are ignored
 * - an optional leading `export ` is accepted (so the file can be `source`d too)
 * - whitespace around key and value is trimmed
 * - a value wrapped in matching single or double quotes is unwrapped (no escape
 *   processing and no variable expansion: values are taken literally)
 * - everything after the first `=` is the value, so values may contain `=`
 *
 * @param {string} path
 * @returns {Record<string, string>}
 */
export function readStackEnv(path) {
  const out = {};
  const lines = readFileSync(path, 'utf8').split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/.exec(line);
    if (!m) throw new Error(`${path}:${i + 1}: not a KEY=VALUE line: ${JSON.stringify(raw)}`);
    let value = m[2].trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0]) {
      value = value.slice(1, -1);
    }
    out[m[1]] = value;
  });
  return out;
}

/**
 * Creates an account with Synapse-style shared-secret registration, which
 * Dendrite implements too (`/_synapse/admin/v1/register`):
 *   1. GET the endpoint for a one-time nonce;
 *   2. POST {nonce, username, password, admin, mac} where mac is the hex
 *      HMAC-SHA1, keyed with the shared secret, over
 *      nonce \0 username \0 password \0 ("admin" | "notadmin").
 *
 * @param {string} hsUrl         e.g. http://127.0.0.1:8008
 * @param {string} sharedSecret  the homeserver's registration shared secret
 * @param {string} user          localpart (lowercase; Dendrite rejects uppercase)
 * @param {string} password      at least 8 characters for Dendrite
 * @param {boolean} [admin=false]
 * @returns {Promise<{user_id: string, access_token: string, device_id?: string}>}
 */
export async function registerUser(hsUrl, sharedSecret, user, password, admin = false) {
  const url = new URL('/_synapse/admin/v1/register', hsUrl).toString();
  const nonceRes = await fetch(url);
  const nonceText = await nonceRes.text();
  if (!nonceRes.ok) throw new Error(`registerUser ${user}: GET nonce: ${nonceRes.status} ${nonceText}`);
  const { nonce } = JSON.parse(nonceText);

  const mac = createHmac('sha1', sharedSecret)
    .update([nonce, user, password, admin ? 'admin' : 'notadmin'].join('\0'))
    .digest('hex');
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ nonce, username: user, password, admin, mac }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`registerUser ${user}: POST: ${res.status} ${text}`);
  const body = JSON.parse(text);
  if (!body.user_id || !body.access_token) throw new Error(`registerUser ${user}: unexpected answer ${text}`);
  return body;
}

/**
 * A random, valid, lowercase localpart such as `officer-3f9a1c2b7d`, for tests
 * that need fresh accounts on a shared homeserver.
 * @param {string} [prefix='user']
 */
export function randomLocalpart(prefix = 'user') {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}
