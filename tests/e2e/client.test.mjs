// Self-test of the officer client (lib/officer.mjs) against a real homeserver,
// without the bridge: two fresh users exchange end-to-end encrypted messages.
//
// Starts its own Dendrite, or uses the one in HS_URL + REGISTRATION_SHARED_SECRET.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Officer } from './lib/officer.mjs';
import { registerUser, randomLocalpart } from './lib/stack.mjs';
import { startHomeserver } from './lib/localstack.mjs';

let { HS_URL, REGISTRATION_SHARED_SECRET } = process.env;
let homeserver;
let alice;
let bob;

before(async () => {
  if (!HS_URL || !REGISTRATION_SHARED_SECRET) {
    homeserver = await startHomeserver({ port: 28308 });
    ({ HS_URL, REGISTRATION_SHARED_SECRET } = homeserver);
  }
  const make = async (prefix) => {
    const name = randomLocalpart(prefix);
    const password = `pw-${randomUUID()}`;
    const { user_id: userId } = await registerUser(HS_URL, REGISTRATION_SHARED_SECRET, name, password);
    assert.ok(userId.startsWith(`@${name}:`), userId);
    const officer = await Officer.login(HS_URL, userId, password);
    await officer.start();
    return officer;
  };
  alice = await make('alice');
  bob = await make('bob');
});

after(async () => {
  await alice?.stop();
  await bob?.stop();
  await homeserver?.stop();
});

test('two officers exchange end-to-end encrypted messages in a DM', async () => {
  assert.notEqual(alice.userId, bob.userId);

  // Alice opens an encrypted DM; Bob accepts the invite.
  const invitePromise = bob.waitForInvite();
  const dmPromise = alice.createEncryptedDM(bob.userId);
  const invitedRoomId = await invitePromise;
  await bob.joinRoom(invitedRoomId);
  const roomId = await dmPromise;
  assert.equal(invitedRoomId, roomId);

  // The server agrees the room is encrypted, with megolm.
  assert.equal(await alice.isRoomEncrypted(roomId), true);
  assert.equal(await bob.isRoomEncrypted(roomId), true);
  assert.equal((await bob.getState(roomId, 'm.room.encryption')).algorithm, 'm.megolm.v1.aes-sha2');
  assert.equal((await bob.getState(roomId, 'm.room.member', bob.userId)).membership, 'join');
  await assert.rejects(bob.getState(roomId, 'm.room.topic'), (err) => err.errcode === 'M_NOT_FOUND');
  assert.deepEqual((await alice.getJoinedMembers(roomId)).sort(), [alice.userId, bob.userId].sort());

  // Alice -> Bob.
  const hello = `Hei Bob ${randomUUID()}`;
  const helloId = await alice.sendText(roomId, hello);
  assert.match(helloId, /^\$/);
  const got = await bob.waitForMessage(roomId, (content) => content.body === hello);
  assert.equal(got.type, 'm.room.encrypted', 'the message is encrypted on the wire');
  assert.equal(got.clearType, 'm.room.message');
  assert.equal(got.content.msgtype, 'm.text');
  assert.equal(got.content.body, hello);
  assert.equal(got.sender, alice.userId);
  assert.equal(got.eventId, helloId);

  // Bob -> Alice, as a reply.
  const answer = `Hei Alice ${randomUUID()}`;
  const answerId = await bob.sendMessage(roomId, {
    msgtype: 'm.text',
    body: answer,
    'm.relates_to': { 'm.in_reply_to': { event_id: helloId } },
  });
  const back = await alice.waitForMessage(roomId, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === helloId);
  assert.equal(back.type, 'm.room.encrypted');
  assert.equal(back.content.body, answer);
  assert.equal(back.sender, bob.userId);
  assert.equal(back.eventId, answerId);

  // Already-received messages are found too, and the sender filter works.
  const again = await alice.waitForMessage(roomId, (c) => c.body === hello, { sender: alice.userId });
  assert.equal(again.eventId, helloId);
  assert.equal(again.type, 'm.room.encrypted', "alice's own message went out encrypted");
});

test('the waits time out with a description of what they saw', async () => {
  // Bob does not join this DM, so createEncryptedDM gives up (short timeout on purpose).
  await assert.rejects(alice.createEncryptedDM(bob.userId, { timeoutMs: 1500 }),
    /timed out after 1500 ms waiting for @bob-[0-9a-f]+:\S+ to join the DM .*their membership as this client sees it: invite/);

  const err = await alice.waitForMessage('!nonexistent:localhost', () => true, { timeoutMs: 500 }).catch((e) => e);
  assert.ok(err instanceof Error);
  assert.match(err.message, /timed out after 500 ms waiting for a matching message in !nonexistent:localhost; no events seen/);

  await assert.rejects(alice.waitForInvite({ timeoutMs: 500 }), /timed out after 500 ms waiting for an invite; pending invites: none/);
});
