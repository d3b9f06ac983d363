// Secrets stay secret: a conversation run end to end with marker strings in
// the messages (both ways) and the file names (both ways), plus the invite's
// token and code word, then every log line of the bridge and of Dendrite and
// the bridge's database (SQLite with its WAL, or a pg_dump of PostgreSQL) are
// searched for each of them in plain text. The bridge logs at debug level
// here, the most it ever logs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { openConversation } from './lib/conversation.mjs';
import { Officer } from './lib/officer.mjs';
import { startStack, eventually } from './lib/localstack.mjs';
import { Guest, newClientId } from './lib/guest.mjs';

let stack;
let officer;

before(async () => {
  stack = await startStack({ basePort: 29808 });
  officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
  await officer.start();
});

after(async () => {
  await officer?.stop();
  await stack?.stop();
});

const marker = (what) => `MARKER${what}${randomBytes(6).toString('hex').toUpperCase()}`;

/** Every file under dir (recursively), as bytes. */
function filesUnder(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = statSync(path);
    if (st.isDirectory()) out.push(...filesUnder(path));
    else out.push({ path, data: readFileSync(path) });
  }
  return out;
}

// A tiny valid PNG (1×1), so the guest's upload passes real type detection.
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cfc0f01f0005000201a5f1e1e40000000049454e44ae426082', 'hex');

test('no message text, file name, token or code word in any log line or in the database in plain text', { timeout: 300000 }, async () => {
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm);
  const token = new URL(invite.url).hash.slice(1);
  const markers = {
    guestText: marker('GUESTTEXT'),
    officerText: marker('OFFICERTEXT'),
    guestFile: marker('GUESTFILE'),
    officerFile: marker('OFFICERFILE'),
    token,
    code: invite.code,
  };

  const guest = await Guest.join(stack.GUEST_URL, invite);
  const stream = await guest.openStream();
  // Guest → room: a text and a file.
  assert.equal((await guest.send(`hei ${markers.guestText} hei`)).status, 202);
  const form = new FormData();
  form.set('client_id', newClientId());
  form.set('file', new Blob([PNG], { type: 'image/png' }), `${markers.guestFile}.png`);
  const up = await fetch(stack.GUEST_URL + '/api/files', { method: 'POST', headers: guest.headers(), body: form });
  assert.equal(up.status, 202, await up.clone().text());
  await officer.waitForMessage(roomId, (c) => c.body?.includes(markers.guestText));
  await officer.waitForMessage(roomId, (c) => c.filename?.includes(markers.guestFile) || c.body?.includes(markers.guestFile));
  // Room → guest: a text and a file.
  await officer.sendText(roomId, `svar ${markers.officerText} svar`);
  await officer.sendFile(roomId, { name: `${markers.officerFile}.png`, data: PNG, mimetype: 'image/png' });
  await eventually(() => {
    const e = guest.entries();
    return e.some((m) => m.text?.includes(markers.officerText)) && e.some((m) => m.file?.name?.includes(markers.officerFile));
  }, { what: 'the officer text and file on the guest side' });
  // Everything delivered, so nothing is waiting in memory only.
  await eventually(() => guest.entries().filter((m) => m.direction === 'from_guest').every((m) => m.status === 'delivered' || m.status === 'read'),
    { what: 'guest messages delivered' });
  stream.close();
  await new Promise((r) => setTimeout(r, 1500)); // let the loggers write

  // Where to look: every log file of the bridge and Dendrite, and the bridge database.
  const places = [
    ...filesUnder(join(stack.dir, 'bridge')).filter((f) => /\.(log|out)$/.test(f.path)),
    ...filesUnder(join(stack.dir, 'dendrite')).filter((f) => /\.(log|out)$/.test(f.path) || f.path.includes('/logs/')),
  ];
  assert.ok(places.some((f) => f.path.endsWith('bridge.log') && f.data.length > 10000), 'the bridge wrote a debug log');
  if (stack.BRIDGE_DB_URI.startsWith('postgres')) {
    const dump = execFileSync('pg_dump', ['--data-only', stack.BRIDGE_DB_URI], { maxBuffer: 256 << 20 });
    places.push({ path: 'pg_dump of the bridge database', data: dump });
  } else {
    for (const suffix of ['', '-wal', '-shm']) {
      const path = stack.BRIDGE_DB + suffix;
      if (existsSync(path)) places.push({ path, data: readFileSync(path) });
    }
  }
  assert.ok(places.some((p) => /sikkerchat\.db$|pg_dump/.test(p.path)), 'the database is among the places searched');

  // Control: the search does find what is meant to be there (IDs are not secrets).
  assert.ok(places.some((p) => p.data.includes(Buffer.from(invite.conversation_id))), 'control: the conversation ID is found');
  // The metrics say how much, never who or what.
  const metricsText = await (await fetch(stack.METRICS_URL)).text();
  for (const name of ['sikkerchat_conversations{state="active"}', 'sikkerchat_messages_total{direction="to_room",kind="text"}',
    'sikkerchat_messages_total{direction="to_guest",kind="file"}', 'sikkerchat_send_latency_seconds_bucket', 'sikkerchat_errors_total{kind=']) {
    assert.ok(metricsText.includes(name), `metrics have ${name}`);
  }
  places.push({ path: 'metrics', data: Buffer.from(metricsText) });
  for (const id of [invite.conversation_id, roomId, officer.userId, stack.BOT_MXID, '@sikkerchat_']) {
    assert.ok(!metricsText.includes(id), `no identity in the metrics (${id.slice(0, 12)}…)`);
  }
  const found = [];
  for (const [name, value] of Object.entries(markers)) {
    for (const place of places) {
      if (place.data.includes(Buffer.from(value, 'utf8'))) found.push(`${name} in ${place.path}`);
    }
  }
  assert.deepEqual(found, [], 'no secret anywhere in plain text');
  console.log(`# searched ${places.length} files (${places.reduce((n, p) => n + p.data.length, 0)} bytes) for ${Object.keys(markers).length} markers: none found`);
});
