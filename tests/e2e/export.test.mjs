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
import { startStack, testHook } from './lib/localstack.mjs';

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
  assert.match(ok.stdout, /^OK/);
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
