// The patrol inbox end to end: the real Dendrite, the real bridge, the
// js-sdk officer and Chromium, with the Meta simulator playing Messenger and
// Instagram (signed webhooks in, the Send API out, windows and errors as Meta
// documents them).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { command } from './lib/conversation.mjs';
import { Officer } from './lib/officer.mjs';
import { startStack, eventually } from './lib/localstack.mjs';
import { launchBrowser, newPhone } from './lib/browser.mjs';
import { MetaSim } from './lib/metasim.mjs';

let stack;
let officer;
let browser;
let sim;

const DAY = 24 * 3600 * 1000;
// A 1×1 PNG.
const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000' +
  '1f15c4890000000d4944415478da63f8cfc0f01f0005000201a1a6b5d30000000049454e44ae426082', 'hex');

// Everything the tests let people write and the bridge learn, checked against its log at the end.
const secrets = new Set();
const marker = (what) => {
  const m = `${what}-${randomUUID().slice(0, 8)}`;
  secrets.add(m);
  return m;
};
const person = () => {
  const id = `70${Date.now()}${Math.floor(Math.random() * 1000)}`.slice(0, 16);
  secrets.add(id);
  return id;
};

before(async () => {
  stack = await startStack({
    basePort: 29908,
    extraEnv: {
      SIKKERCHAT_META_SIM: '1',
      // Dendrite's own default upload limit (the stack's is larger).
      HS_MAX_FILE_BYTES: String(10 * 1024 * 1024),
      // The window tests post messages written days ago.
      SIKKERCHAT_META_REPLAY_WINDOW: '240h',
    },
  });
  for (const s of [stack.META_APP_SECRET, stack.META_PAGE_TOKEN, stack.META_VERIFY_TOKEN]) secrets.add(s);
  sim = new MetaSim(stack);
  officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD, { crossSign: true });
  await officer.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await officer?.stop();
  await stack?.stop();
});

const socialState = (roomId) => officer.getState(roomId, 'no.sikkerchat.social');

const joined = new Set();

/** Waits for the invite to the room of a new social conversation (not one seen before). */
async function socialInvite(platform = 'Messenger') {
  const roomId = await officer.waitForInvite({
    timeoutMs: 60000,
    predicate: (id, room) => !joined.has(id) && room.name?.startsWith(`${platform}:`),
  });
  joined.add(roomId);
  return roomId;
}

/** Waits for the room of a new social conversation and joins it. */
async function joinSocialRoom(platform = 'Messenger') {
  const roomId = await socialInvite(platform);
  await officer.joinRoom(roomId, { timeoutMs: 60000 });
  return roomId;
}

/** The room's first notice, which tells the officer what to do. */
const waitForOpenedNotice = (roomId, platform) =>
  officer.waitForMessage(roomId, (c) => c.msgtype === 'm.notice' && c.body?.startsWith(`Ny samtale fra ${platform}`));

async function newSends(before, n, what) {
  return eventually(async () => {
    const all = await sim.sends();
    return all.length >= before + n ? all.slice(before) : undefined;
  }, { timeoutMs: 60000, what });
}

test('a person writes on Messenger: an encrypted room with the officer in it; replies and images go both ways', async () => {
  const p = person();
  const first = marker('hjelp');
  await sim.message({ person: p, text: first });
  const roomId = await joinSocialRoom();
  await waitForOpenedNotice(roomId, 'Messenger');
  assert.ok(await officer.isRoomEncrypted(roomId), 'the room is encrypted');
  const state = await socialState(roomId);
  assert.equal(state.platform, 'messenger');
  assert.equal(state.account, stack.META_PAGE_ID);
  assert.equal(state.status, 'open');
  assert.equal(state.window, 'open');
  const got = await officer.waitForMessage(roomId, (c) => c.body === first);
  assert.equal(got.type, 'm.room.encrypted', 'the person\'s message arrives encrypted');
  assert.equal(got.sender, state.person);
  assert.deepEqual(got.content['m.mentions'], {}, 'what a stranger typed mentions nobody');

  // The officer answers; Meta gets a RESPONSE to the person.
  const before = (await sim.sends()).length;
  const reply = marker('svar');
  const replyId = await officer.sendText(roomId, reply);
  const [sent] = await newSends(before, 1, 'the reply at the Send API');
  assert.equal(sent.recipient, p);
  assert.equal(sent.messaging_type, 'RESPONSE');
  assert.equal(sent.text, reply);
  assert.equal(sent.status, 200);

  // An image from the person, fetched from Meta's CDN and uploaded encrypted.
  await sim.message({ person: p, attachments: [{ type: 'image', mime_type: 'image/png', data: png }] });
  const image = await officer.waitForMessage(roomId, (c) => c.msgtype === 'm.image');
  assert.ok(image.content.file, 'the image is an encrypted attachment');
  assert.deepEqual(await officer.downloadAttachment(image.content), png);

  // An image from the officer, uploaded to Meta with the message (filedata).
  const before2 = (await sim.sends()).length;
  await officer.sendFile(roomId, { name: 'kart.png', data: png, mimetype: 'image/png' });
  const [file] = await newSends(before2, 1, 'the officer\'s image at the Send API');
  assert.equal(file.status, 200);
  assert.equal(file.attachment.type, 'image');
  assert.equal(file.attachment.size, png.length);
  assert.equal(file.attachment.name, 'kart.png');

  // What the page wrote in Meta Business Suite shows as the page.
  const suite = marker('fra-suite');
  await sim.pageReply({ person: p, text: suite });
  const fromPage = await officer.waitForMessage(roomId, (c) => c.body === suite);
  assert.notEqual(fromPage.sender, state.person);
  assert.match(fromPage.sender, /^@sikkerchat_page/);
  // The bridge's own reply came back as an echo and is not shown twice.
  const history = await officer.roomHistory(roomId);
  assert.equal(history.filter((e) => e.getContent()?.body === reply).length, 1);

  // The person reads: the read receipt lands on the officer's reply.
  await sim.event({ person: p, part: 'read', value: { watermark: Date.now() } });
  await officer.waitForReadReceipt(roomId, state.person, replyId);
});

test('an officer who joins hours later sees the notice and everything the person wrote before the join', async () => {
  const p = person();
  const first = marker('tidlig');
  const second = marker('tidlig-igjen');
  await sim.message({ person: p, text: first });
  const roomId = await socialInvite();
  await sim.message({ person: p, text: second });
  // Both messages are in the room before the officer joins (read as the bridge bot).
  await eventually(async () => {
    const url = `${stack.HS_URL}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=100&user_id=${encodeURIComponent(stack.BOT_MXID)}`;
    const res = await fetch(url, { headers: { Authorization: `Bearer ${stack.AS_TOKEN}` } });
    const { chunk = [] } = await res.json();
    const fromPerson = chunk.filter((e) => e.type === 'm.room.encrypted' && e.sender !== stack.BOT_MXID);
    return fromPerson.length >= 2 || undefined;
  }, { timeoutMs: 60000, what: "the person's two messages in the room before the officer joins" });
  await officer.joinRoom(roomId, { timeoutMs: 60000 });
  await waitForOpenedNotice(roomId, 'Messenger');
  await officer.waitForMessage(roomId, (c) => c.body === first);
  await officer.waitForMessage(roomId, (c) => c.body === second);
});

test('!sc new in the room sends the link and the code as two messages; the person opens it in a browser and talks', async () => {
  const p = person();
  await sim.message({ person: p, text: marker('kan-vi-snakke') });
  const roomId = await joinSocialRoom();
  const before = (await sim.sends()).length;
  const reply = await command(officer, roomId, '!sc new', { timeoutMs: 60000 });
  const invite = reply.content['no.sikkerchat.invite'];
  assert.ok(invite?.url && invite?.code, 'the officer sees what is sent');
  secrets.add(invite.code);
  secrets.add(invite.url.split('#')[1]);
  const [linkMsg, codeMsg] = await newSends(before, 2, 'the link and the code at the Send API');
  assert.equal(linkMsg.recipient, p);
  assert.ok(linkMsg.text.includes(invite.url), 'the first message carries the link');
  assert.ok(!linkMsg.text.includes(invite.code), 'the code word is not in the same message');
  assert.equal(codeMsg.text, `Kodeordet er: ${invite.code}`);
  await officer.waitForMessage(roomId, (c) => c.body?.startsWith('Lenken og kodeordet er sendt'));

  const secureRoom = await officer.waitForInvite({ predicate: (id) => id === invite.room_id });
  await officer.joinRoom(secureRoom);
  const linked = await officer.getState(secureRoom, 'no.sikkerchat.linked');
  assert.equal(linked.room_id, roomId);
  assert.deepEqual((await socialState(roomId)).linked_conversations, [invite.conversation_id]);

  const context = await newPhone(browser);
  const page = await context.newPage();
  await page.goto(invite.url);
  await page.locator('#code').fill(invite.code);
  await page.locator('#join-btn').click();
  await page.locator('#v-chat').waitFor({ state: 'visible' });
  const guestText = marker('fra-nettsiden');
  await page.locator('#text').fill(guestText);
  await page.locator('#send').click();
  await officer.waitForMessage(secureRoom, (c) => c.body === guestText);
  const officerText = marker('trygt-svar');
  await officer.sendText(secureRoom, officerText);
  await page.locator('.msg.them', { hasText: officerText }).waitFor();
  await context.close();
});

test('a video the homeserver cannot take, then another person\'s text: the text reaches its room, the video\'s room is told', async () => {
  const pA = person();
  await sim.message({ person: pA, text: marker('se-videoen') });
  const roomA = await joinSocialRoom();
  // A phone's MP4 of 15 MB: over the homeserver's 10 MiB.
  const video = Buffer.concat([Buffer.from('00000018667479706d703432000000006d70343269736f6d', 'hex'), Buffer.alloc(15_000_000 - 24)]);
  await sim.message({ person: pA, attachments: [{ type: 'video', mime_type: 'video/mp4', data: video }] });
  const pB = person();
  const textB = marker('fra-en-annen');
  await sim.message({ person: pB, text: textB });
  const roomB = await joinSocialRoom();
  await officer.waitForMessage(roomB, (c) => c.body === textB, { timeoutMs: 60000 });
  const notice = await officer.waitForMessage(roomA, (c) => c.msgtype === 'm.notice' && c.body?.startsWith('Et vedlegg fra personen kunne ikke hentes inn'),
    { timeoutMs: 60000 });
  assert.match(notice.content.body, /^Et vedlegg fra personen kunne ikke hentes inn \(videoklipp, 15,0 MB\)\. /);
  assert.equal(notice.sender, stack.BOT_MXID, 'a notice from the bot, not as the person');
  // Nothing else of it reached the room, and A's next message follows.
  const next = marker('etter-videoen');
  await sim.message({ person: pA, text: next });
  await officer.waitForMessage(roomA, (c) => c.body === next);
  const history = await officer.roomHistory(roomA);
  assert.equal(history.filter((e) => e.getContent()?.msgtype === 'm.video').length, 0);
});

test('the window: after 24 hours a reply goes with HUMAN_AGENT; after 7 days it is refused with a notice', async () => {
  const p1 = person();
  await sim.message({ person: p1, text: marker('i-går'), agoMs: 30 * 3600 * 1000 });
  const room1 = await joinSocialRoom();
  assert.equal((await socialState(room1)).window, 'human_agent');
  const before = (await sim.sends()).length;
  await officer.sendText(room1, marker('sent-svar'));
  const [tagged] = await newSends(before, 1, 'the tagged reply');
  assert.equal(tagged.recipient, p1);
  assert.equal(tagged.messaging_type, 'MESSAGE_TAG');
  assert.equal(tagged.tag, 'HUMAN_AGENT');
  assert.equal(tagged.status, 200);

  const p2 = person();
  await sim.message({ person: p2, text: marker('forrige-uke'), agoMs: 8 * DAY });
  const room2 = await joinSocialRoom();
  assert.equal((await socialState(room2)).window, 'closed');
  const before2 = (await sim.sends()).length;
  const tooLate = await officer.sendText(room2, marker('for-sent'));
  const notice = await officer.waitForMessage(room2, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === tooLate);
  assert.match(notice.content.body, /mer enn 7 dager/);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await sim.sends()).length, before2, 'nothing reached Meta');
});

test('an Instagram conversation: its own room, replies through the Page to the Instagram-scoped ID', async () => {
  const igsid = person();
  const text = marker('insta');
  await sim.message({ account: sim.instagram, person: igsid, text });
  const roomId = await joinSocialRoom('Instagram');
  await waitForOpenedNotice(roomId, 'Instagram');
  const state = await socialState(roomId);
  assert.equal(state.platform, 'instagram');
  assert.equal(state.account, stack.META_IG_ID);
  await officer.waitForMessage(roomId, (c) => c.body === text);
  const before = (await sim.sends()).length;
  const reply = marker('insta-svar');
  await officer.sendText(roomId, reply);
  const [sent] = await newSends(before, 1, 'the Instagram reply');
  assert.equal(sent.recipient, igsid);
  assert.equal(sent.text, reply);
  assert.equal(sent.status, 200);

  // The windows hold on Instagram too.
  const late = person();
  await sim.message({ account: sim.instagram, person: late, text: marker('insta-i-går'), agoMs: 30 * 3600 * 1000 });
  const lateRoom = await joinSocialRoom('Instagram');
  const before2 = (await sim.sends()).length;
  await officer.sendText(lateRoom, marker('insta-sent-svar'));
  const [tagged] = await newSends(before2, 1, 'the tagged Instagram reply');
  assert.equal(tagged.recipient, late);
  assert.equal(tagged.messaging_type, 'MESSAGE_TAG');
  assert.equal(tagged.tag, 'HUMAN_AGENT');
  assert.equal(tagged.status, 200);
});

test('faults: the bridge killed while webhooks arrive, Meta retries; the Send API down: nothing lost, nothing doubled, order kept', async () => {
  const p = person();
  await sim.message({ person: p, text: 'start' });
  const roomId = await joinSocialRoom();
  await officer.waitForMessage(roomId, (c) => c.body === 'start');

  // The person writes while the bridge is killed twice; Meta retries what was not answered.
  const texts = [];
  for (let i = 0; i < 30; i++) {
    const t = `melding ${String(i).padStart(2, '0')} ${randomUUID().slice(0, 6)}`;
    texts.push(t);
    await sim.message({ person: p, text: t });
    if (i === 8 || i === 19) {
      stack.killBridge();
      await new Promise((r) => setTimeout(r, 300));
      await stack.startBridge();
    }
  }
  await eventually(async () => (await sim.deliveries()).pending === 0, { timeoutMs: 120000, what: 'Meta has delivered everything' });
  await officer.waitForMessage(roomId, (c) => c.body === texts.at(-1), { timeoutMs: 120000 });
  const inRoom = (await officer.roomHistory(roomId)).map((e) => e.getContent()?.body).filter((b) => b?.startsWith('melding '));
  assert.deepEqual(inRoom, texts, 'every message once, in order');

  // The Send API is down; the officer keeps writing; everything goes once, in order, when it is back.
  const outageMs = Number(process.env.FAULTS_OUTAGE_MS ?? 120000);
  const before = (await sim.sends()).length;
  await sim.sendOutage(503);
  const replies = [];
  for (let i = 0; i < 5; i++) {
    const t = `svar ${i} ${randomUUID().slice(0, 6)}`;
    replies.push(t);
    await officer.sendText(roomId, t);
  }
  await new Promise((r) => setTimeout(r, outageMs));
  await sim.sendOutage(0);
  const delivered = await eventually(async () => {
    const ok = (await sim.sends()).slice(before).filter((s) => s.status === 200 && s.text?.startsWith('svar '));
    return ok.length >= replies.length ? ok : undefined;
  }, { timeoutMs: 300000, what: 'the replies after the outage' });
  assert.deepEqual(delivered.map((s) => s.text), replies, 'every reply once, in order');
});

test('no message text, attachment URL, person ID or token in the bridge log or, in plain text, in its database', async () => {
  const log = stack.bridgeLog();
  assert.ok(log.length > 0);
  for (const s of secrets) {
    assert.ok(!log.includes(s), `the bridge log holds ${s.slice(0, 6)}…`);
  }
  assert.ok(!log.includes('/cdn/'), 'no attachment URL of Meta\'s CDN');
  // The deliveries, their events in the lanes and the replay digests are all sealed or keyed.
  const places = [];
  if (stack.BRIDGE_DB_URI.startsWith('postgres')) {
    places.push({ path: 'pg_dump', data: execFileSync('pg_dump', ['--data-only', stack.BRIDGE_DB_URI], { maxBuffer: 256 << 20 }) });
  } else {
    for (const suffix of ['', '-wal']) {
      if (existsSync(stack.BRIDGE_DB + suffix)) places.push({ path: stack.BRIDGE_DB + suffix, data: readFileSync(stack.BRIDGE_DB + suffix) });
    }
  }
  assert.ok(places.some((p) => p.data.includes(Buffer.from('sikkerchat_meta_event'))), 'control: the inbox\'s tables are searched');
  const found = [];
  for (const s of [...secrets, '/cdn/']) {
    for (const place of places) {
      if (place.data.includes(Buffer.from(s))) found.push(`${s.slice(0, 6)}… in ${place.path}`);
    }
  }
  assert.deepEqual(found, []);
});
