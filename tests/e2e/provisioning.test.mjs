// The provisioning API for case systems: create, get, list, close, audit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Officer } from './lib/officer.mjs';
import { startStack } from './lib/localstack.mjs';

let stack;

before(async () => {
  stack = await startStack({ basePort: 29008 });
});

after(async () => {
  await stack?.stop();
});

async function prov(method, path, { user = stack.OFFICER_MXID, secret = stack.PROVISIONING_SECRET, body } = {}) {
  const res = await fetch(`${stack.PROVISIONING_URL}/v3/sikkerchat${path}${path.includes('?') ? '&' : '?'}user_id=${encodeURIComponent(user)}`, {
    method,
    headers: { Authorization: `Bearer ${secret}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: await res.json() };
}

test('a case system creates, reads, lists, closes and audits a conversation', async () => {
  assert.ok(stack.PROVISIONING_SECRET?.length >= 16, 'the stack exposes the provisioning secret');
  const created = await prov('POST', '/conversations', { body: { label: 'Sak 2026-123' } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const invite = created.body['no.sikkerchat.invite'];
  assert.match(invite.url, /#[A-Za-z0-9_-]{43}$/);
  assert.equal(created.body.status, 'created');
  assert.equal(created.body.created_by, stack.OFFICER_MXID);

  // The answer matches the room's state event.
  const officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
  try {
    await officer.start();
    const roomId = await officer.waitForInvite({ predicate: (id) => id === created.body.room_id });
    await officer.joinRoom(roomId);
    const state = await officer.getState(roomId, 'no.sikkerchat.conversation');
    const got = await prov('GET', `/conversations/${invite.conversation_id}`);
    assert.equal(got.status, 200);
    for (const key of Object.keys(state)) assert.deepEqual(got.body[key], state[key], key);

    const list = await prov('GET', '/conversations');
    assert.ok(list.body.conversations.some((c) => c.conversation_id === invite.conversation_id));

    const closed = await prov('POST', `/conversations/${invite.conversation_id}/close`);
    assert.equal(closed.status, 200);
    assert.equal(closed.body.status, 'closed');
    assert.ok(closed.body.purge_after > closed.body.closed_at);
    assert.equal((await prov('POST', `/conversations/${invite.conversation_id}/close`)).status, 409);
    await officer.waitForMessage(roomId, (c) => c.msgtype === 'm.notice' && /fagsystemet/.test(c.body));

    const audit = await prov('GET', `/conversations/${invite.conversation_id}/audit`);
    assert.equal(audit.body.chain_ok, true);
    assert.deepEqual(audit.body.rows.map((r) => r.action), ['create', 'close']);
    assert.equal(audit.body.rows[1].detail, 'provisioning');
  } finally {
    await officer.stop();
  }
});

test('provisioning exports a verifiable package and gives anonymous statistics', async () => {
  const created = await prov('POST', '/conversations', {});
  const id = created.body.conversation_id;
  const res = await fetch(`${stack.PROVISIONING_URL}/v3/sikkerchat/conversations/${id}/export?user_id=${encodeURIComponent(stack.OFFICER_MXID)}`, {
    method: 'POST', headers: { Authorization: `Bearer ${stack.PROVISIONING_SECRET}` },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/zip');
  const zip = Buffer.from(await res.arrayBuffer());
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { execFile } = await import('node:child_process');
  const file = join(mkdtempSync(join(tmpdir(), 'sikkerchat-prov-')), 'export.zip');
  writeFileSync(file, zip);
  const out = await new Promise((resolve, reject) => execFile(join(stack.STACK_DIR, 'bin', 'sikkerchat'), ['verify-export', file],
    (err, stdout) => (err ? reject(err) : resolve(stdout))));
  assert.match(out, /^OK:/m);

  const stats = await prov('GET', '/stats?days=7');
  assert.equal(stats.status, 200);
  assert.ok(stats.body.created >= 1);
  const text = JSON.stringify(stats.body);
  assert.ok(!text.includes('@') && !text.includes(id), 'no identities in statistics');
  assert.equal((await prov('GET', '/stats?days=0')).status, 400);
});

test('provisioning refuses bad secrets, non-officers and other officers\' conversations', async () => {
  assert.equal((await prov('GET', '/conversations', { secret: 'wrong-secret-0123456789' })).status, 401);
  const outsider = await prov('POST', '/conversations', { user: '@someone:localhost' });
  assert.equal(outsider.status, 403);
  const mine = await prov('POST', '/conversations', {});
  assert.equal(mine.status, 201);
  const other = await prov('GET', `/conversations/${mine.body.conversation_id}`, { user: stack.OFFICER2_MXID });
  assert.equal(other.status, 404, 'another officer does not see it');
  assert.equal((await prov('GET', '/conversations/does-not-exist')).status, 404);
  assert.equal((await prov('POST', '/conversations', { body: { label: 'x'.repeat(65) } })).status, 400);
});
