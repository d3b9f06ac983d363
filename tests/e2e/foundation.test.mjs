// The foundation, end to end: the real Dendrite, the real bridge binary and
// matrix-js-sdk with Rust crypto as the officer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Officer } from './lib/officer.mjs';
import { registerUser } from './lib/stack.mjs';
import { startStack, testHook, eventually } from './lib/localstack.mjs';
import { openConversation, command } from './lib/conversation.mjs';

let stack;
let officer;
let dmRoomId;

before(async () => {
  stack = await startStack({ basePort: 28008 });
  officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
  await officer.start();
  dmRoomId = await officer.createEncryptedDM(stack.BOT_MXID);
});

after(async () => {
  await officer?.stop();
  await stack?.stop();
});

const isInviteReply = (content) => content?.['no.sikkerchat.invite'] !== undefined;

async function newConversation(label) {
  const commandId = await officer.sendText(dmRoomId, `!sc new ${label}`);
  const reply = await officer.waitForMessage(dmRoomId, (content) =>
    isInviteReply(content) && content['m.relates_to']?.['m.in_reply_to']?.event_id === commandId, { timeoutMs: 60000 });
  return { reply, invite: reply.content['no.sikkerchat.invite'] };
}

test('!sc new creates an encrypted conversation room with the right policy', async () => {
  const { reply, invite } = await newConversation('Testsak 1');
  assert.equal(reply.type, 'm.room.encrypted', 'the reply in the encrypted DM is encrypted');
  assert.equal(reply.content.msgtype, 'm.notice');
  assert.match(invite.conversation_id, /^[a-z2-7]{16}$/);
  assert.match(invite.room_id, /^!/);
  assert.match(invite.url, new RegExp(`^${stack.GUEST_URL}/#[A-Za-z0-9_-]{43}$`), 'link has a 256-bit token in the fragment');
  assert.match(invite.code, /^[a-z]+ [0-9]{2}$/);
  assert.ok(invite.expires_at > Date.now(), 'expiry lies ahead');
  assert.ok(reply.content.body.includes(invite.url) && reply.content.body.includes(invite.code), 'humans see link and code');

  const roomId = await officer.waitForInvite({ predicate: (id) => id === invite.room_id });
  await officer.joinRoom(roomId);

  assert.equal(await officer.isRoomEncrypted(roomId), true);
  assert.equal((await officer.getState(roomId, 'm.room.encryption')).algorithm, 'm.megolm.v1.aes-sha2');
  assert.equal((await officer.getState(roomId, 'm.room.history_visibility')).history_visibility, 'joined');
  assert.equal((await officer.getState(roomId, 'm.room.join_rules')).join_rule, 'invite');
  assert.equal((await officer.getState(roomId, 'm.room.guest_access')).guest_access, 'forbidden');

  const state = await officer.getState(roomId, 'no.sikkerchat.conversation');
  assert.equal(state.conversation_id, invite.conversation_id);
  assert.equal(state.status, 'created');
  assert.equal(state.created_by, stack.OFFICER_MXID);
  assert.equal(state.invite_expires_at, invite.expires_at);
  assert.match(state.guest, /^@sikkerchat_[a-z2-7]{16}:localhost$/);
  assert.equal(state.hold, false);

  const pl = await officer.getState(roomId, 'm.room.power_levels');
  assert.equal(pl.users[stack.BOT_MXID], 100);
  assert.equal(pl.users[stack.OFFICER_MXID], 50);
  assert.equal(pl.users[state.guest] ?? pl.users_default ?? 0, 0);
  assert.equal(pl.invite, 100, 'only the bot can invite');
  assert.equal(pl.events['m.room.encryption'], 100);

  const guestMember = await officer.getState(roomId, 'm.room.member', state.guest);
  assert.equal(guestMember.membership, 'join', 'the guest ghost is in the room');
});

test('a message the ghost sends arrives encrypted and decrypts; the officer\'s reaches the connector', async () => {
  const label = `Sak-${randomUUID().slice(0, 8)}`;
  const { invite } = await newConversation(label);
  const roomId = await officer.waitForInvite({ predicate: (id) => id === invite.room_id });
  await officer.joinRoom(roomId);

  const guestText = `Hei, jeg trenger hjelp ${randomUUID()}`;
  const { event_id: guestEventId } = await testHook(stack, 'POST',
    `/_test/conversations/${invite.conversation_id}/guest-text`, { message_id: randomUUID(), text: guestText });
  const received = await officer.waitForMessage(roomId, (content) => content.body === guestText);
  assert.equal(received.type, 'm.room.encrypted', 'the ghost message is encrypted on the wire');
  assert.equal(received.eventId, guestEventId);
  assert.equal(received.content.msgtype, 'm.text');

  const officerText = `Hei! Du snakker med politiet ${randomUUID()}`;
  const officerEventId = await officer.sendText(roomId, officerText);
  const entry = await eventually(async () => {
    const transcript = await testHook(stack, 'GET', `/_test/conversations/${invite.conversation_id}/transcript`);
    return transcript.find((e) => e.matrix_event_id === officerEventId);
  }, { what: 'officer message in the connector' });
  assert.equal(entry.direction, 'to_guest');
  assert.equal(entry.text, officerText, 'the connector got the decrypted plaintext');
  assert.equal(entry.kind, 'text');

  assert.ok(!stack.bridgeLog().includes(officerText), 'message content never reaches the log');
  assert.ok(!stack.bridgeLog().includes(guestText), 'message content never reaches the log');
  assert.ok(!stack.bridgeLog().includes(invite.code), 'the code word never reaches the log');
  assert.ok(!stack.bridgeLog().includes(label), 'the label (it may name a person) never reaches the log');
  assert.ok(!stack.bridgeLog().includes(invite.url.split('#')[1]), 'the token never reaches the log');
});

test('!sc status and !sc help answer in bokmål', async () => {
  const helpId = await officer.sendText(dmRoomId, '!sc help');
  const help = await officer.waitForMessage(dmRoomId, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === helpId);
  assert.match(help.content.body, /opprett en ny sikker samtale/);
  const statusId = await officer.sendText(dmRoomId, '!sc status');
  const status = await officer.waitForMessage(dmRoomId, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === statusId);
  assert.match(status.content.body, /Du har \d+ åpne samtaler/);
});

test('a user outside the permissions cannot create a conversation', async () => {
  const name = `citizen${Date.now()}`;
  const password = 'password-' + randomUUID();
  await registerUser(stack.HS_URL, stack.REGISTRATION_SHARED_SECRET, name, password);
  const outsider = await Officer.login(stack.HS_URL, `@${name}:localhost`, password);
  try {
    await outsider.start();
    const dm = await outsider.createEncryptedDM(stack.BOT_MXID);
    const commandId = await outsider.sendText(dm, '!sc new');
    const reply = await outsider.waitForMessage(dm, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === commandId);
    assert.match(reply.content.body, /Beklager, du har ikke tilgang/);
    assert.equal(isInviteReply(reply.content), false);
    // Nothing was made for them: no invite to a conversation room arrives.
    await assert.rejects(outsider.waitForInvite({ timeoutMs: 3000 }));
  } finally {
    await outsider.stop();
  }
});

// Element's "reset cryptographic identity" (a lost recovery key) on a new
// device, then once more on the same device. The bridge trusts an officer's
// identity on first use; a changed one is locked out until an admin, having
// checked with the officer by another channel, trusts it with `!sc trust`.
test('an officer who resets their identity is locked out and told, until an admin trusts it; a non-admin cannot; a second reset locks them out again', { timeout: 300000 }, async () => {
  const lockedOut = /Krypteringsidentiteten din er endret/;
  const masterKey = async (userId) => {
    const q = await officer.client.http.authedRequest('POST', '/keys/query', undefined, { device_keys: { [userId]: [] } });
    return Object.values(q.master_keys?.[userId]?.keys ?? {})[0];
  };
  const guestSays = async (conversationId, text) => (await testHook(stack, 'POST',
    `/_test/conversations/${conversationId}/guest-text`, { message_id: randomUUID(), text })).event_id;
  // The device sees the guest's event, and still cannot read it a few seconds on.
  const unreadable = async (who, roomId, eventId) => {
    await eventually(() => who._roomEvents(roomId).some((ev) => ev.getId() === eventId), { what: 'the guest event on the device' });
    await new Promise((r) => setTimeout(r, 3000));
    const ev = who._roomEvents(roomId).find((e) => e.getId() === eventId);
    assert.ok(ev.isEncrypted() && ev.isDecryptionFailure(), `the locked-out device cannot read the guest (${ev.getType()})`);
  };

  const admin = await Officer.login(stack.HS_URL, stack.ADMIN_MXID, stack.ADMIN_PASSWORD);
  const before = await Officer.login(stack.HS_URL, stack.OFFICER2_MXID, stack.OFFICER2_PASSWORD);
  let after;
  try {
    await admin.start();
    const adminDm = await admin.createEncryptedDM(stack.BOT_MXID);
    assert.match((await command(admin, adminDm, '!sc status')).content.body, /sikkerchat kjører/);
    await before.start();
    const dm = await before.createEncryptedDM(stack.BOT_MXID);
    const { invite, roomId } = await openConversation(before, dm);
    const hello = `Hei ${randomUUID()}`;
    const helloId = await guestSays(invite.conversation_id, hello);
    assert.equal((await before.waitForMessage(roomId, (c) => c.body === hello)).eventId, helloId);
    const firstKey = await masterKey(stack.OFFICER2_MXID);

    // A new device, a new identity; the old device is gone.
    await before.stop();
    after = await Officer.login(stack.HS_URL, stack.OFFICER2_MXID, stack.OFFICER2_PASSWORD, { deviceName: 'ny telefon' });
    await after.start();
    const newKey = await masterKey(stack.OFFICER2_MXID);
    assert.ok(newKey && newKey !== firstKey, 'the identity was reset');

    // Locked out and told, in bokmål and readable: not encrypted, since the
    // device gets no room keys. The command does not run.
    const told = await command(after, dm, '!sc status');
    assert.equal(told.type, 'm.room.message', 'the notice is sent unencrypted');
    assert.equal(told.content.msgtype, 'm.notice');
    assert.match(told.content.body, lockedOut);
    assert.match(told.content.body, /Administratorene er varslet/);
    // Nothing of any conversation.
    await unreadable(after, roomId, await guestSays(invite.conversation_id, `Hemmelig ${randomUUID()}`));
    for (const ev of after._roomEvents(dm)) {
      assert.ok(!/not bridged|not trusted|sikkerchat kjører/.test(ev.getContent()?.body ?? ''), `no other answer: ${ev.getContent()?.body}`);
    }

    // The admin is told, with the command to give once they have checked.
    const notice = await admin.waitForMessage(adminDm, (c) => c.body?.includes(`${stack.OFFICER2_MXID} er endret`));
    assert.equal(notice.type, 'm.room.encrypted');
    const [, named, key] = /`!sc trust (\S+) (\S+)`/.exec(notice.content.body);
    assert.equal(named, stack.OFFICER2_MXID);
    assert.equal(key, newKey, 'the notice names the new master key');

    // A non-admin cannot trust it; the officer stays locked out.
    assert.match((await command(officer, dmRoomId, `!sc trust ${stack.OFFICER2_MXID} ${key}`)).content.body, /Bare en administrator/);
    assert.match((await command(after, dm, '!sc status')).content.body, lockedOut);

    // The admin trusts it: the officer is told, and commands and the guest reach them again.
    assert.match((await command(admin, adminDm, `!sc trust ${stack.OFFICER2_MXID} ${key}`)).content.body, /er godkjent/);
    const welcomeBack = await after.waitForMessage(dm, (c) => c.body?.includes(`godkjent av ${stack.ADMIN_MXID}`));
    assert.equal(welcomeBack.type, 'm.room.encrypted', 'the officer reads the encrypted notice');
    const status = await command(after, dm, '!sc status');
    assert.equal(status.type, 'm.room.encrypted');
    assert.match(status.content.body, /sikkerchat kjører/);
    const back = `Er du der? ${randomUUID()}`;
    const backId = await guestSays(invite.conversation_id, back);
    assert.equal((await after.waitForMessage(roomId, (c) => c.body === back)).eventId, backId);

    // A second reset, on this device: locked out again, and the admin is told again.
    await after._crossSign(30000);
    const thirdKey = await masterKey(stack.OFFICER2_MXID);
    assert.ok(thirdKey && thirdKey !== newKey, 'the identity was reset again');
    await eventually(async () => lockedOut.test((await command(after, dm, '!sc status', { timeoutMs: 10000 })).content.body),
      { timeoutMs: 60000, intervalMs: 500, what: 'the officer locked out again (the bridge hears of the new keys through its sync)' });
    await admin.waitForMessage(adminDm, (c) => c.body?.includes(`!sc trust ${stack.OFFICER2_MXID} ${thirdKey}`));
    await unreadable(after, roomId, await guestSays(invite.conversation_id, `Hemmelig igjen ${randomUUID()}`));
    assert.ok(!stack.bridgeLog().includes(hello) && !stack.bridgeLog().includes(back), 'message content never reaches the log');
  } finally {
    await after?.stop();
    await before.stop();
    await admin.stop();
  }
});
