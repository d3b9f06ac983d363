// Security end to end. Secrets stay secret: a conversation run end to end with marker strings in
// the messages (both ways) and the file names (both ways), plus the invite's
// token and code word, then every log line of the bridge and of Dendrite and
// the bridge's database (SQLite with its WAL, or a pg_dump of PostgreSQL) are
// searched for each of them in plain text. The bridge logs at debug level
// here, the most it ever logs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { openConversation, command } from './lib/conversation.mjs';
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

async function provisioningAudit(conversationId) {
  const res = await fetch(`${stack.PROVISIONING_URL}/v3/sikkerchat/conversations/${conversationId}/audit?user_id=${encodeURIComponent(stack.ADMIN_MXID)}`, {
    headers: { Authorization: `Bearer ${stack.PROVISIONING_SECRET}` },
  });
  assert.equal(res.status, 200);
  return (await res.json()).rows;
}

test('code words guessed in parallel from 100 networks: at most max_code_attempts are checked, and the right code after them is refused', async () => {
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm);
  const token = new URL(invite.url).hash.slice(1);
  const join = (code, network) => fetch(stack.GUEST_URL + '/api/join', {
    method: 'POST',
    // Behind the trusted (loopback) proxy every request comes from its own IPv6 /64,
    // so no per-address rate limit stands in the way.
    headers: { 'Content-Type': 'application/json', 'X-Sikkerchat': '1', Origin: stack.GUEST_URL, 'X-Forwarded-For': `2001:db8:${network.toString(16)}::7` },
    body: JSON.stringify({ token, code }),
  }).then(async (r) => ({ status: r.status, body: await r.json() }));
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => join('feil kode 12', i + 1)));
  const byStatus = {};
  for (const r of results) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  assert.deepEqual(Object.keys(byStatus).sort(), ['403', '410'], JSON.stringify(byStatus));
  assert.equal(byStatus[403], 4, 'every checked guess but the last tells how many are left');
  const right = await join(invite.code, 1000);
  assert.equal(right.status, 410, JSON.stringify(right.body));
  assert.equal(right.body.errcode, 'NO.SIKKERCHAT.INVITE_REVOKED');
  const rows = await provisioningAudit(invite.conversation_id);
  assert.equal(rows.filter((r) => r.action === 'code_failed').length, 5, 'exactly max_code_attempts codes were checked');
  assert.equal(rows.filter((r) => r.action === 'invite_burned').length, 1);
  assert.equal(rows.filter((r) => r.action === 'join').length, 0);
  await officer.waitForMessage(roomId, (c) => c.msgtype === 'm.notice' && /feil kodeord 5 ganger/.test(c.body));
});

test('bridgev2’s own commands are unknown, for an admin too: nothing goes around close, retention or the audit trail', async () => {
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm);
  const admin = await Officer.login(stack.HS_URL, stack.ADMIN_MXID, stack.ADMIN_PASSWORD);
  try {
    await admin.start();
    const adminDm = await admin.createEncryptedDM(stack.BOT_MXID);
    for (const cmd of ['delete-all-portals', 'delete-portal', `sudo ${stack.OFFICER_MXID} close`, `doin ${roomId} close`,
      'debug-reset-network', 'debug-account-data m.direct {}', 'debug-register-push x', 'filter', 'set-management-room', 'id',
      'cancel', 'login', 'logout', 'unbridge', 'delete-chat', 'set-relay']) {
      const reply = await command(admin, adminDm, `!sc ${cmd}`);
      assert.match(reply.content.body, /^Ukjent kommando/, cmd);
    }
  } finally {
    await admin.stop();
  }
  // The conversation is untouched: open, its room bridged, its trail without a trace of the attempts.
  const state = await officer.getState(roomId, 'no.sikkerchat.conversation');
  assert.equal(state.status, 'created');
  const status = await command(officer, roomId, '!sc status');
  assert.match(status.content.body, new RegExp(invite.conversation_id));
  assert.deepEqual((await provisioningAudit(invite.conversation_id)).map((r) => r.action), ['create']);
});

test('device policy: a device its officer never cross-signed gets no keys to the guest’s messages, and what it writes never reaches the guest', async () => {
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm);
  const guest = await Guest.join(stack.GUEST_URL, invite);
  const stream = await guest.openStream();
  // Someone with the officer's password, on a device of their own.
  const rogue = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD, { crossSign: false, deviceName: 'ukjent enhet' });
  try {
    await rogue.start();
    await new Promise((r) => setTimeout(r, 2000)); // the bridge hears of the new device through its sync
    const text = marker('GUESTTEXT');
    assert.equal((await guest.send(text)).status, 202);
    const seen = await officer.waitForMessage(roomId, (c) => c.body === text);
    assert.equal(seen.type, 'm.room.encrypted');
    // The rogue device gets the event, but not the key to it.
    await eventually(() => rogue._roomEvents(roomId).some((ev) => ev.getId() === seen.eventId), { what: 'the event on the rogue device', timeoutMs: 30000 });
    await new Promise((r) => setTimeout(r, 3000));
    const onRogue = rogue._roomEvents(roomId).find((ev) => ev.getId() === seen.eventId);
    assert.ok(onRogue.isEncrypted());
    assert.ok(onRogue.isDecryptionFailure(), 'the rogue device cannot read the guest');
    assert.ok(!JSON.stringify(onRogue.getClearContent() ?? {}).includes(text));
    // The bridge withheld the key on purpose (m.unverified), not by accident.
    assert.match(onRogue.getContent().body ?? '', /unverified devices/);

    // What the rogue device writes is dropped; the officer's next message arrives.
    const fake = marker('ROGUETEXT');
    await rogue.sendText(roomId, fake);
    const real = marker('OFFICERTEXT');
    await officer.sendText(roomId, real);
    await eventually(() => guest.entries().some((m) => m.text === real), { what: "the officer's message on the page" });
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(!guest.entries().some((m) => m.text === fake), 'the rogue device never reaches the guest');
  } finally {
    stream.close();
    await rogue.stop();
  }
});

test('someone in a conversation room who is not a permitted officer is removed and announced (an officer whose permission was taken away, at start)', async () => {
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm);
  const colleague = await Officer.login(stack.HS_URL, stack.OFFICER2_MXID, stack.OFFICER2_PASSWORD);
  try {
    await colleague.start();
    const add = await command(officer, roomId, `!sc add ${stack.OFFICER2_MXID}`);
    assert.match(add.content.body, /invitert/);
    await colleague.waitForInvite({ predicate: (id) => id === roomId });
    await colleague.joinRoom(roomId);
  } finally {
    await colleague.stop();
  }
  assert.ok((await officer.getJoinedMembers(roomId)).includes(stack.OFFICER2_MXID));

  // The unit takes officer2 off the permissions; the bridge checks every room at start.
  await stack.stopBridge();
  const configPath = join(stack.dir, 'bridge', 'config.yaml');
  const config = readFileSync(configPath, 'utf8');
  const without = config.split('\n').filter((l) => !l.includes(`${stack.OFFICER2_MXID}`)).join('\n');
  assert.notEqual(without, config, 'the permission line was found');
  writeFileSync(configPath, without);
  await stack.startBridge();
  const notice = await officer.waitForMessage(roomId, (c) => c.msgtype === 'm.notice' && c.body.includes(stack.OFFICER2_MXID) && /ikke en godkjent betjent/.test(c.body), { timeoutMs: 60000 });
  assert.ok(notice);
  await eventually(async () => !(await officer.getJoinedMembers(roomId)).includes(stack.OFFICER2_MXID), { what: 'officer2 out of the room' });
  const removed = (await provisioningAudit(invite.conversation_id)).filter((r) => r.action === 'member_removed');
  assert.deepEqual(removed.map((r) => [r.actor, r.detail]), [['system', stack.OFFICER2_MXID]]);
});
