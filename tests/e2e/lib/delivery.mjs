// The delivery checks shared by the fault and failover tests: a guest whose
// event stream reconnects as the page's does, the room and the guest record
// read back in full, and the message-by-message comparison of both (zero
// lost, zero doubled, order kept).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { eventually } from './localstack.mjs';
import { Guest, newClientId } from './guest.mjs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Both sides of every conversation talk until stop(): each guest sends until
 * its message is stored (retrying as the page does), each officer sends
 * through the homeserver, with a random pause of [min, min+span) ms between
 * messages. What was sent is pushed to c.guestSent and c.officerSent.
 * stop() waits for the last sends and gives the guests' retry count.
 */
export function talkBothWays(officer, convs, { guestPause, officerPause }) {
  let running = true;
  let retries = 0;
  const pause = ([min, span]) => sleep(min + Math.random() * span);
  const loops = convs.flatMap((c, ci) => [
    (async () => {
      for (let n = 0; running; n++) {
        const text = `gjest ${ci}.${n} ${randomUUID()}`;
        const res = await c.guest.sendUntilStored(text, newClientId(), { retryMs: 100 });
        retries += res.tries - 1;
        c.guestSent.push(text);
        await pause(guestPause);
      }
    })(),
    (async () => {
      for (let n = 0; running; n++) {
        const text = `politi ${ci}.${n} ${randomUUID()}`;
        await officer.sendText(c.roomId, text);
        c.officerSent.push(text);
        await pause(officerPause);
      }
    })(),
  ]);
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return { retries };
    },
  };
}

/** A guest whose event stream reconnects (with resume) whenever it drops, as the page's does. */
export async function connectedGuest(stack, invite) {
  const guest = await Guest.join(stack.GUEST_URL, invite);
  let stopped = false;
  let stream;
  const loop = (async () => {
    while (!stopped) {
      try {
        stream = await guest.openStream();
        await stream.done;
      } catch {
        // the bridge is down: try again shortly
      }
      if (!stopped) await sleep(100);
    }
  })();
  return { guest, stop: async () => { stopped = true; stream?.close(); await loop; } };
}

/**
 * The texts the ghost sent into the room, as the officer's client has them
 * from both of its views of the room: the live timeline (sync) and the whole
 * room read back by /messages. Neither is enough alone on Dendrite: after an
 * outage the sync that follows is "limited" and the live timeline has a gap,
 * and Dendrite's backward pagination sometimes skips (and repeats) an event
 * at a page boundary. Events are taken once each, by event ID, in the order
 * the homeserver received them (origin_server_ts; the outbox sends one
 * message of a conversation at a time, so that is the order sent).
 * `undecrypted` lists the ghost's events the officer could not decrypt.
 */
export async function ghostTexts(officer, roomId) {
  const readable = (e) => e && e.getClearContent() && !e.isDecryptionFailure();
  const byId = new Map();
  for (const ev of await officer.roomHistory(roomId)) byId.set(ev.getId(), ev);
  for (const ev of officer._roomEvents(roomId)) {
    if (!byId.has(ev.getId()) || (readable(ev) && !readable(byId.get(ev.getId())))) byId.set(ev.getId(), ev);
  }
  const events = [...byId.values()]
    .filter((ev) => ev.getSender()?.startsWith('@sikkerchat_'))
    .map((ev, i) => ({ ev, i }))
    .sort((a, b) => a.ev.getTs() - b.ev.getTs() || a.i - b.i)
    .map(({ ev }) => ev);
  const texts = [];
  const undecrypted = [];
  const other = [];
  for (const ev of events) {
    if (!readable(ev)) {
      if (ev.isEncrypted()) undecrypted.push(`${ev.getId()} (${ev.decryptionFailureReason ?? '?'})`);
      continue;
    }
    if (ev.getType() === 'm.room.message' && ev.getContent().msgtype === 'm.text') texts.push(ev.getContent().body);
    else other.push(`${ev.getId()} ${ev.getType()}/${ev.getContent()?.msgtype}`);
  }
  return { texts, undecrypted, other };
}

/** The guest-side record as a fresh page load shows it (the whole transcript, from the start). */
export async function freshRecord(stack, guest) {
  const fresh = new Guest(stack.GUEST_URL, guest.cookie);
  let stream;
  await eventually(async () => {
    stream = await fresh.openStream({ resume: false });
    return true;
  }, { what: 'the event stream to open' });
  await sleep(500); // the history is written at once; leave time for it to arrive
  stream.close();
  return fresh.entries();
}

/** Checks one conversation, message by message: nothing lost, nothing doubled, order kept. */
export async function checkConversation(stack, officer, name, { roomId, guest, guestSent, officerSent }) {
  // Everything the guest's POSTs had accepted reaches the room…
  let seen = { texts: [], undecrypted: [], other: [] };
  try {
    await eventually(async () => {
      seen = await ghostTexts(officer, roomId);
      return guestSent.every((t) => seen.texts.includes(t));
    }, { timeoutMs: 180000, intervalMs: 1000, what: `${name}: every accepted guest message in the room` });
  } catch (err) {
    const missing = guestSent.filter((t) => !seen.texts.includes(t));
    const record = await freshRecord(stack, guest).catch(() => []);
    const status = (t) => record.find((e) => e.text === t)?.status ?? 'not in the guest record';
    err.message += `\n${missing.length} of ${guestSent.length} missing (first: ${missing.slice(0, 3).map((t) => `${t} [${status(t)}]`).join(' | ')}); ` +
      `the ghost's events in the room: ${seen.texts.length} readable, ${seen.undecrypted.length} the officer could not decrypt: ${seen.undecrypted.slice(0, 3).join(', ')}; ` +
      `${seen.other.length} of another kind: ${seen.other.slice(0, 3).join(', ')}; ` +
      `texts seen twice: ${seen.texts.filter((t, i) => seen.texts.indexOf(t) !== i).slice(0, 3).join(' | ')}`;
    throw err;
  }
  // …and the officers' messages reach the guest side.
  await eventually(async () => {
    const record = await freshRecord(stack, guest);
    const shown = record.filter((e) => e.direction === 'to_guest').map((e) => e.text);
    return officerSent.every((t) => shown.includes(t));
  }, { timeoutMs: 180000, intervalMs: 1000, what: `${name}: every officer message on the guest side` });

  const inRoom = (await ghostTexts(officer, roomId)).texts;
  assert.deepEqual(inRoom, guestSent, `${name}: the room has each guest message exactly once, in the order sent`);
  const record = await freshRecord(stack, guest);
  const fromGuest = record.filter((e) => e.direction === 'from_guest');
  assert.deepEqual(fromGuest.map((e) => e.text), guestSent, `${name}: the guest's record has each of its messages once, in order`);
  assert.ok(fromGuest.every((e) => e.status === 'delivered' || e.status === 'read'), `${name}: the guest's record shows every message delivered`);
  const toGuest = record.filter((e) => e.direction === 'to_guest').map((e) => e.text);
  assert.deepEqual(toGuest, officerSent, `${name}: the guest side has each officer message exactly once, in the order sent`);
  return { guest: guestSent.length, officer: officerSent.length };
}
