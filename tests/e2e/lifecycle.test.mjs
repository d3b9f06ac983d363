// A conversation's whole life in the browser: create, join, talk, close.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openConversation, command } from './lib/conversation.mjs';
import { Officer } from './lib/officer.mjs';
import { startStack, eventually } from './lib/localstack.mjs';
import { launchBrowser, newPhone } from './lib/browser.mjs';

let stack;
let officer;
let browser;

before(async () => {
  stack = await startStack({ basePort: 28808 });
  officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
  await officer.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await officer?.stop();
  await stack?.stop();
});

test('create, join, talk, close: the page ends at once and the police keep the room', async () => {
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm);

  const context = await newPhone(browser);
  const page = await context.newPage();
  await page.goto(invite.url);
  await page.locator('#code').fill(invite.code);
  await page.locator('#join-btn').click();
  await page.locator('#v-chat').waitFor({ state: 'visible' });
  const guestText = `Før lukking ${randomUUID().slice(0, 8)}`;
  await page.locator('#text').fill(guestText);
  await page.locator('#send').click();
  await officer.waitForMessage(roomId, (c) => c.body === guestText);
  const officerText = `Svar ${randomUUID().slice(0, 8)}`;
  await officer.sendText(roomId, officerText);
  await page.locator('.msg.them', { hasText: officerText }).waitFor();

  // A copy of the bridge's database (with its WAL) taken before close.
  const copyDir = mkdtempSync(join(tmpdir(), 'sikkerchat-dbcopy-'));
  if (stack.BRIDGE_DB_URI.startsWith('postgres')) {
    const { stdout } = await promisify(execFile)('pg_dump', [stack.BRIDGE_DB_URI], { maxBuffer: 64 << 20 });
    writeFileSync(join(copyDir, 'copy.db'), stdout);
  } else {
    for (const suffix of ['', '-wal']) {
      if (existsSync(stack.BRIDGE_DB + suffix)) copyFileSync(stack.BRIDGE_DB + suffix, join(copyDir, 'copy.db' + suffix));
    }
  }
  assert.ok(existsSync(join(copyDir, 'copy.db')), 'a copy of the database was taken');
  const keyFile = join(stack.STACK_DIR, 'bridge', 'keys', `${invite.conversation_id}.key`);
  assert.ok(existsSync(keyFile), 'the open conversation has its key, outside the database');

  const closeId = await officer.sendText(roomId, '!sc close');
  const closedAt = Date.now();
  await page.locator('#v-ended').waitFor({ state: 'visible' });
  const flipMs = Date.now() - closedAt;
  console.log(`# page showed the ended state ${flipMs} ms after the officer sent !sc close`);
  assert.equal(await page.locator('#log .msg').count(), 0, 'nothing of the conversation is left on the page');

  // Crypto-shredding: the key is gone, and the copy never held readable content.
  await eventually(async () => !existsSync(keyFile), { what: 'the conversation key destroyed' });
  for (const suffix of ['', '-wal']) {
    const file = join(copyDir, 'copy.db' + suffix);
    if (!existsSync(file)) continue;
    const bytes = readFileSync(file);
    for (const secret of [guestText, officerText]) {
      assert.ok(!bytes.includes(Buffer.from(secret)), `the database copy holds no plaintext (${suffix || 'main'})`);
    }
  }

  // Reload shows nothing; every API call is refused.
  await page.reload();
  await eventually(async () => (await page.locator('#v-none').isVisible()) || (await page.locator('#v-ended').isVisible()), { what: 'an empty page after reload' });
  assert.equal(await page.locator('#log .msg').count(), 0);
  const statuses = await page.evaluate(async () => {
    const out = {};
    for (const [method, path] of [['GET', '/api/session'], ['GET', '/api/events'], ['POST', '/api/messages']]) {
      const res = await fetch(path, { method, headers: { 'X-Sikkerchat': '1', 'Content-Type': 'application/json' }, body: method === 'POST' ? JSON.stringify({ client_id: 'abcdefghijklmnopq', text: 'x' }) : undefined });
      out[path] = res.status;
    }
    return out;
  });
  for (const [path, status] of Object.entries(statuses)) {
    assert.ok([401, 410].includes(status), `${path} answered ${status}`);
  }

  // The room is marked closed, the ghost has left, and the officer still reads everything.
  await officer.waitForMessage(roomId, (c) => c.msgtype === 'm.notice' && /Samtalen er avsluttet/.test(c.body));
  const state = await officer.getState(roomId, 'no.sikkerchat.conversation');
  assert.equal(state.status, 'closed');
  assert.ok(state.closed_at > 0 && state.purge_after > state.closed_at);
  assert.match((await officer.getState(roomId, 'm.room.name')).name, /^\[Avsluttet\] /);
  assert.equal((await officer.getState(roomId, 'm.room.member', state.guest)).membership, 'leave');
  await officer.waitForMessage(roomId, (c) => c.body === guestText);
  await officer.waitForMessage(roomId, (c) => c.body === officerText);
  assert.ok(closeId);

  // Every action of this life is in the audit trail, in order, and the chain is whole.
  const auditCmd = await officer.sendText(roomId, '!sc audit');
  const auditReply = await officer.waitForMessage(roomId, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === auditCmd);
  const actions = [...auditReply.content.body.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]);
  assert.deepEqual(actions, ['create', 'join', 'close']);
  assert.match(auditReply.content.body, /Kjeden er hel/);
  await context.close();
});

test('team: !sc add brings in a permitted colleague only; !sc list shows open conversations', async () => {
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm, 'Teamsak');

  const refuse = await officer.sendText(roomId, '!sc add @nobody:localhost');
  const refused = await officer.waitForMessage(roomId, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === refuse);
  assert.match(refused.content.body, /har ikke tilgang/);

  const colleague = await Officer.login(stack.HS_URL, stack.OFFICER2_MXID, stack.OFFICER2_PASSWORD);
  try {
    await colleague.start();
    const add = await officer.sendText(roomId, `!sc add ${stack.OFFICER2_MXID}`);
    await officer.waitForMessage(roomId, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === add && /invitert/.test(c.body));
    await colleague.waitForInvite({ predicate: (id) => id === roomId });
    await colleague.joinRoom(roomId);
    const pl = await colleague.getState(roomId, 'm.room.power_levels');
    assert.equal(pl.users[stack.OFFICER2_MXID], 50, 'the colleague gets officer power');
    // The colleague's messages reach the guest side too.
    const text = `Kollega her ${randomUUID().slice(0, 8)}`;
    const eventId = await colleague.sendText(roomId, text);
    await eventually(async () => {
      const res = await fetch(`${stack.GUEST_URL}/_test/conversations/${invite.conversation_id}/transcript`);
      return (await res.json()).some((e) => e.matrix_event_id === eventId && e.text === text);
    }, { what: "the colleague's message on the guest side" });
  } finally {
    await colleague.stop();
  }

  const list = await officer.sendText(dm, '!sc list');
  const listed = await officer.waitForMessage(dm, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === list);
  assert.ok(listed.content.body.includes(invite.conversation_id));
});

test('legal hold: any officer places it; only an admin lifts it, with a reason that goes into the audit trail', async () => {
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm);
  assert.match((await command(officer, roomId, '!sc hold')).content.body, /satt på vent/);
  assert.match((await command(officer, roomId, '!sc unhold ferdig')).content.body, /Bare en administrator/);
  assert.equal((await officer.getState(roomId, 'no.sikkerchat.conversation')).hold, true);

  assert.match((await command(officer, roomId, `!sc add ${stack.ADMIN_MXID}`)).content.body, /invitert/);
  const admin = await Officer.login(stack.HS_URL, stack.ADMIN_MXID, stack.ADMIN_PASSWORD);
  try {
    await admin.start();
    await admin.waitForInvite({ predicate: (id) => id === roomId });
    await admin.joinRoom(roomId);
    assert.match((await command(admin, roomId, '!sc unhold')).content.body, /begrunnelse/, 'a reason is required');
    assert.match((await command(admin, roomId, '!sc unhold Saken er henlagt av påtalemyndigheten')).content.body, /opphevet/);
  } finally {
    await admin.stop();
  }
  await eventually(async () => (await officer.getState(roomId, 'no.sikkerchat.conversation')).hold === false, { what: 'the state event without hold' });
  const res = await fetch(`${stack.PROVISIONING_URL}/v3/sikkerchat/conversations/${invite.conversation_id}/audit?user_id=${encodeURIComponent(stack.OFFICER_MXID)}`, {
    headers: { Authorization: `Bearer ${stack.PROVISIONING_SECRET}` },
  });
  const rows = (await res.json()).rows;
  assert.deepEqual(rows.filter((r) => r.action === 'hold' || r.action === 'unhold').map((r) => [r.action, r.actor, r.detail ?? '']),
    [['hold', stack.OFFICER_MXID, ''], ['unhold', stack.ADMIN_MXID, 'Saken er henlagt av påtalemyndigheten']]);
});
