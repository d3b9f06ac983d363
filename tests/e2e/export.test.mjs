// Evidence export from the room itself, before and after close, checked by
// `sikkerchat verify-export`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openConversation } from './lib/conversation.mjs';
import { Officer } from './lib/officer.mjs';
import { startStack, testHook, eventually } from './lib/localstack.mjs';
import { Guest, newClientId } from './lib/guest.mjs';

const run = promisify(execFile);
let stack;
let officer;

before(async () => {
  stack = await startStack({ basePort: 29108 });
  officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
  await officer.start();
});

after(async () => {
  await officer?.stop();
  await stack?.stop();
});

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

async function unzip(buf) {
  // A tiny reader for the stored (uncompressed) entries sikkerchat writes.
  const entries = {};
  let offset = 0;
  while (buf.readUInt32LE(offset) === 0x04034b50) {
    const method = buf.readUInt16LE(offset + 8);
    let size = buf.readUInt32LE(offset + 18);
    const nameLen = buf.readUInt16LE(offset + 26);
    const extraLen = buf.readUInt16LE(offset + 28);
    const flags = buf.readUInt16LE(offset + 6);
    const name = buf.toString('utf8', offset + 30, offset + 30 + nameLen);
    const start = offset + 30 + nameLen + extraLen;
    assert.equal(method, 0, 'stored');
    if (flags & 0x08) {
      // Sizes follow the data in a data descriptor: find it through the central directory instead.
      const cd = buf.lastIndexOf(Buffer.from(name), buf.length) - 46;
      size = buf.readUInt32LE(cd + 20);
      entries[name] = buf.subarray(start, start + size);
      offset = start + size + 16;
    } else {
      entries[name] = buf.subarray(start, start + size);
      offset = start + size;
    }
  }
  return entries;
}

test('!sc export: the package matches what the officer sees, and verify-export catches one changed byte', async () => {
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm);

  const texts = [];
  for (let i = 0; i < 3; i++) {
    const g = `Gjest ${i} ${randomUUID().slice(0, 8)}`;
    await testHook(stack, 'POST', `/_test/conversations/${invite.conversation_id}/guest-text`, { message_id: randomUUID(), text: g });
    const o = `Politi ${i} ${randomUUID().slice(0, 8)}`;
    await officer.sendText(roomId, o);
    texts.push(g, o);
  }
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f80f00000101000518d84e0000000049454e44ae426082', 'hex');
  await officer.sendFile(roomId, { name: 'bevis.png', data: png, mimetype: 'image/png' });
  for (const t of texts) await officer.waitForMessage(roomId, (c) => c.body === t);

  // Close first: the export must work after close too.
  const closeId = await officer.sendText(roomId, '!sc close');
  await officer.waitForMessage(roomId, (c) => c.msgtype === 'm.notice' && /Samtalen er avsluttet/.test(c.body));
  const exportId = await officer.sendText(roomId, '!sc export');
  const zipMsg = await officer.waitForMessage(roomId, (c) => c.msgtype === 'm.file' && c.body?.endsWith('.zip'), { timeoutMs: 60000 });
  assert.equal(zipMsg.type, 'm.room.encrypted', 'the package is uploaded encrypted');
  const zip = await officer.downloadAttachment(zipMsg.content);
  assert.equal(sha256(zip), zipMsg.content['no.sikkerchat.sha256']);
  assert.ok(closeId && exportId);

  const entries = await unzip(zip);
  for (const name of ['manifest.json', 'transcript.json', 'transcript.html', 'audit.json']) assert.ok(entries[name], name);
  const transcript = JSON.parse(entries['transcript.json']);
  const byId = new Map(transcript.map((m) => [m.event_id, m]));

  // Message for message, and file hash for file hash, with the officer's view.
  // Everything up to the export command; the package and its notice come after it.
  const timeline = officer.client.getRoom(roomId).getLiveTimeline().getEvents();
  const upTo = timeline.findIndex((e) => e.getId() === exportId);
  const seen = timeline.slice(0, upTo + 1).filter((e) => e.getType() === 'm.room.message' && !e.isRedacted());
  assert.ok(seen.length >= texts.length + 1);
  for (const e of seen) {
    const m = byId.get(e.getId());
    assert.ok(m, `the export has ${e.getId()} (${e.getContent().body?.slice(0, 30)})`);
    assert.equal(m.body, e.getContent().body);
    assert.equal(m.sender, e.getSender());
    if (e.getContent().msgtype === 'm.image' && e.getContent().body === 'bevis.png') {
      assert.equal(m.file_sha256, sha256(png));
      assert.equal(sha256(entries[m.file]), sha256(png));
    }
  }
  for (const t of texts) assert.ok(transcript.some((m) => m.body === t), `export has "${t}"`);
  const audit = JSON.parse(entries['audit.json']);
  assert.deepEqual(audit.map((r) => r.action), ['create', 'close']);

  // verify-export accepts it, and rejects a copy with one changed byte.
  const dir = mkdtempSync(join(tmpdir(), 'sikkerchat-export-'));
  const good = join(dir, 'good.zip');
  writeFileSync(good, zip);
  const bin = join(stack.STACK_DIR, 'bin', 'sikkerchat');
  const ok = await run(bin, ['verify-export', good]);
  assert.match(ok.stdout, /^SHA-256 of the package: [0-9a-f]{64}$/m);
  assert.match(ok.stdout, /^OK:/m);
  const bad = Buffer.from(zip);
  const at = bad.indexOf(Buffer.from(texts[0]));
  bad[at] ^= 0x01;
  writeFileSync(join(dir, 'bad.zip'), bad);
  await assert.rejects(run(bin, ['verify-export', join(dir, 'bad.zip')]), (err) => {
    assert.equal(err.code, 1);
    assert.match(err.stdout, /NOT OK/);
    assert.match(err.stdout, /transcript\.(html|json) was changed/);
    return true;
  });
});

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f80f00000101000518d84e0000000049454e44ae426082', 'hex');

async function upload(guest, name, data, type) {
  const form = new FormData();
  form.set('client_id', newClientId());
  form.set('file', new Blob([data], { type }), name);
  const res = await fetch(stack.GUEST_URL + '/api/files', { method: 'POST', headers: guest.headers(), body: form });
  return { status: res.status, body: await res.json() };
}

async function provisioningAudit(conversationId) {
  const res = await fetch(`${stack.PROVISIONING_URL}/v3/sikkerchat/conversations/${conversationId}/audit?user_id=${encodeURIComponent(stack.OFFICER_MXID)}`, {
    headers: { Authorization: `Bearer ${stack.PROVISIONING_SECRET}` },
  });
  assert.equal(res.status, 200);
  return res.text();
}

test('the guest’s words stay: no officer can redact them; the export names who redacted what, has the text the guest saw last, and files carry the extension of their bytes; verify-export checks the package against the audit trail', async () => {
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm);
  const guest = await Guest.join(stack.GUEST_URL, invite);
  const stream = await guest.openStream();
  try {
    // Polyglots are refused; a real picture named .html arrives as .png.
    const pe = Buffer.concat([Buffer.from('MZ\x90\x00ftypisom\x00\x00\x02\x00isomiso2', 'latin1'), Buffer.alloc(64)]);
    assert.equal((await upload(guest, 'program.exe', pe, 'video/mp4')).status, 415);
    const page = Buffer.from('<htmftypmp42\x00\x00\x00\x00<script>alert(1)</script>', 'latin1');
    assert.equal((await upload(guest, 'side.html', page, 'video/mp4')).status, 415);
    assert.equal((await upload(guest, 'side.html', PNG, 'text/html')).status, 422, 'a claim that disagrees with the bytes is refused');
    assert.equal((await upload(guest, 'side.html', PNG, '')).status, 202);
    const image = await officer.waitForMessage(roomId, (c) => c.msgtype === 'm.image');
    assert.equal(image.content.body, 'side.png');
    assert.equal(image.content.filename, 'side.png');

    assert.equal((await guest.send('Dette er det jeg sa')).status, 202);
    const said = await officer.waitForMessage(roomId, (c) => c.body === 'Dette er det jeg sa');
    // An officer cannot redact the guest's message: the homeserver refuses it.
    const res = await fetch(`${stack.HS_URL}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/redact/${encodeURIComponent(said.eventId)}/${randomUUID()}`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${officer.client.getAccessToken()}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ reason: 'prøver' }),
    });
    assert.equal(res.status, 403, await res.text());

    // The officer edits and takes back their own.
    const planned = await officer.sendText(roomId, 'Vi ringer deg kl 14');
    await officer.editText(roomId, planned, 'Vi ringer deg kl 15');
    const wrong = await officer.sendText(roomId, 'Feil samtale, beklager');
    await eventually(() => guest.entries().some((m) => m.text === 'Feil samtale, beklager'), { what: 'the message on the page' });
    await officer.redact(roomId, wrong);
    await eventually(() => guest.entries().some((m) => m.text === 'Vi ringer deg kl 15' && m.edited), { what: 'the edit on the page' });
  } finally {
    stream.close();
  }

  await officer.sendText(roomId, '!sc export');
  const zipMsg = await officer.waitForMessage(roomId, (c) => c.msgtype === 'm.file' && c.body?.endsWith('.zip'), { timeoutMs: 60000 });
  const zip = await officer.downloadAttachment(zipMsg.content);
  const entries = await unzip(zip);
  const transcript = JSON.parse(entries['transcript.json']);
  const edited = transcript.find((m) => m.body === 'Vi ringer deg kl 14');
  assert.ok(edited, 'the message as sent');
  assert.equal(edited.revisions.at(-1).body, 'Vi ringer deg kl 15', 'and the text the guest saw last');
  const redacted = transcript.find((m) => m.redacted);
  assert.ok(redacted, 'the redacted message is listed');
  assert.equal(redacted.redacted_by, officer.userId, 'with who redacted it');
  assert.ok(redacted.redacted_at > 0);
  const files = Object.keys(entries).filter((n) => n.startsWith('files/'));
  assert.deepEqual(files.map((n) => n.replace(/^files\/\d+-/, '')), ['side.png']);
  assert.match(entries['transcript.html'].toString(), /slettet av @officer/);

  // The package against the audit trail: recorded, this exact package.
  const dir = mkdtempSync(join(tmpdir(), 'sikkerchat-export-'));
  const pkg = join(dir, 'pakke.zip');
  writeFileSync(pkg, zip);
  await eventually(async () => (await provisioningAudit(invite.conversation_id)).includes(sha256(zip)), { what: 'the export row' });
  const auditFile = join(dir, 'audit.json');
  writeFileSync(auditFile, await provisioningAudit(invite.conversation_id));
  const bin = join(stack.STACK_DIR, 'bin', 'sikkerchat');
  const ok = await run(bin, ['verify-export', pkg, auditFile]);
  assert.match(ok.stdout, /recorded exporting exactly this package/);
  // A package the trail never saw (one rebuilt with a consistent manifest would be such) is not taken.
  writeFileSync(auditFile, JSON.stringify({ rows: [] }));
  await assert.rejects(run(bin, ['verify-export', pkg, auditFile]), (err) => err.code === 1 && /no export row/.test(err.stdout));
  // The redaction is in the audit trail with who made it (Dendrite does not
  // send redactions to appservices; the export wrote the row when it read the room).
  const audit = JSON.parse(await provisioningAudit(invite.conversation_id));
  const redactRows = audit.rows.filter((r) => r.action === 'redact');
  assert.equal(redactRows.length, 1, audit.rows.map((r) => r.action).join(', '));
  assert.equal(redactRows[0].actor, officer.userId);
  assert.ok(redactRows[0].detail.startsWith(redacted.event_id));
  assert.ok(JSON.parse(entries['audit.json']).some((r) => r.action === 'redact'), 'and in the package');
});
