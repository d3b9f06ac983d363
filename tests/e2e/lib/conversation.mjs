// The officer's first steps, shared by the tests: `!sc new` in the DM with the
// bot, the reply with the invite, and joining the new conversation room.

/** Sends `!sc <command>` in a room and resolves with the bot's threaded answer. */
export async function command(officer, roomId, text, opts = {}) {
  const id = await officer.sendText(roomId, text);
  return officer.waitForMessage(roomId, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === id, opts);
}

/**
 * Creates a conversation from `dm` and joins its room.
 * @returns {Promise<{invite: {conversation_id, room_id, url, code, expires_at}, roomId: string, reply}>}
 */
export async function openConversation(officer, dm, label = '') {
  const commandId = await officer.sendText(dm, `!sc new ${label}`.trim());
  const reply = await officer.waitForMessage(dm, (c) =>
    c['no.sikkerchat.invite'] && c['m.relates_to']?.['m.in_reply_to']?.event_id === commandId, { timeoutMs: 60000 });
  const invite = reply.content['no.sikkerchat.invite'];
  const roomId = await officer.waitForInvite({ predicate: (id) => id === invite.room_id });
  await officer.joinRoom(roomId);
  return { invite, roomId, reply };
}
