// Nothing lost: conversations driven both ways while the bridge is killed with
// SIGKILL at random points, while the homeserver is down, with appservice
// transactions replayed and duplicated, and with a guest retrying a POST whose
// answer was lost. After each, the guest-side record is checked message by
// message against the Matrix room: zero lost, zero doubled, order kept.
//
// FAULTS_LONG=1 runs the long mode (100 kills, a 10-minute outage).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { openConversation } from './lib/conversation.mjs';
import { Officer } from './lib/officer.mjs';
import { startStack } from './lib/localstack.mjs';
import { Guest, newClientId } from './lib/guest.mjs';
import { connectedGuest, checkConversation, sleep, talkBothWays } from './lib/delivery.mjs';
import { launchBrowser, newPhone } from './lib/browser.mjs';

const LONG = !!process.env.FAULTS_LONG;
const KILLS = Number(process.env.FAULTS_KILLS ?? (LONG ? 100 : 20));
const OUTAGE_MS = Number(process.env.FAULTS_OUTAGE_MS ?? (LONG ? 10 * 60000 : 2 * 60000));

let stack;
let officer;
let dm;
const counts = {};

before(async () => {
  stack = await startStack({ basePort: 29608 });
  officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
  await officer.start();
  dm = await officer.createEncryptedDM(stack.BOT_MXID);
});

after(async () => {
  console.log(`# fault counts: ${JSON.stringify(counts)}`);
  await officer?.stop();
  await stack?.stop();
});

test(`kill -9 of the bridge at ${KILLS} random points while both sides talk: nothing lost, nothing doubled, order kept`, { timeout: (LONG ? 60 : 15) * 60000 }, async () => {
  const convs = [];
  for (const label of ['Feil A', 'Feil B']) {
    const { invite, roomId } = await openConversation(officer, dm, label);
    const g = await connectedGuest(stack, invite);
    convs.push({ roomId, guest: g.guest, stopGuest: g.stop, guestSent: [], officerSent: [] });
  }
  // Dendrite is up: every officer's send is accepted.
  const talk = talkBothWays(officer, convs, { guestPause: [20, 80], officerPause: [30, 120] });
  const kills = [];
  for (let k = 0; k < KILLS; k++) {
    await sleep(150 + Math.random() * 1500);
    kills.push(stack.killBridge());
    await sleep(Math.random() * 300); // the guest keeps retrying into a dead bridge
    await stack.startBridge();
  }
  await sleep(1000);
  const { retries } = await talk.stop();
  let guestTotal = 0;
  let officerTotal = 0;
  try {
    for (const [i, c] of convs.entries()) {
      const r = await checkConversation(stack, officer, `conversation ${i}`, c);
      guestTotal += r.guest;
      officerTotal += r.officer;
    }
  } finally {
    // The guests' reconnecting event streams must end, or a failed check
    // would keep the test process alive until its timeout.
    await Promise.all(convs.map((c) => c.stopGuest()));
  }
  assert.equal(new Set(kills).size, KILLS, 'each kill hit a fresh bridge process');
  counts.kill9 = { kills: KILLS, guest_messages: guestTotal, officer_messages: officerTotal, guest_retries: retries, lost: 0, doubled: 0 };
  console.log(`# kill -9 ×${KILLS}: ${guestTotal} guest and ${officerTotal} officer messages, ${retries} guest retries, none lost or doubled`);
});

test(`the homeserver down for ${Math.round(OUTAGE_MS / 1000)} s while the guest keeps sending: shown as not yet delivered, then delivered in order`, { timeout: OUTAGE_MS + 10 * 60000 }, async () => {
  const { invite, roomId } = await openConversation(officer, dm, 'Utfall');
  const browser = await launchBrowser();
  try {
    const page = await (await newPhone(browser)).newPage();
    await page.goto(invite.url);
    await page.locator('#code').fill(invite.code);
    await page.locator('#join-btn').click();
    await page.locator('#v-chat').waitFor({ state: 'visible' });
    const guestSent = [];
    const sendOnPage = async (text) => {
      await page.locator('#text').fill(text);
      await page.locator('#send').click();
      await page.locator('.msg.me', { hasText: text }).locator('.st-stored, .st-delivered, .st-read').waitFor();
      guestSent.push(text);
    };
    await sendOnPage(`før utfallet ${randomUUID()}`);
    await stack.stopHomeserver();
    const started = Date.now();
    const during = [];
    try {
      while (Date.now() - started < OUTAGE_MS) {
        const text = `under utfallet ${during.length} ${randomUUID()}`;
        await sendOnPage(text);
        during.push(text);
        await sleep(Math.min(5000, OUTAGE_MS / 20));
      }
      // Stored by the bridge, shown as sent but not delivered while Dendrite is away.
      for (const text of during) {
        const msg = page.locator('.msg.me', { hasText: text });
        assert.equal(await msg.locator('.st-stored').count(), 1, 'shown as sent, not yet delivered');
      }
    } finally {
      await stack.startHomeserver();
    }
    await sendOnPage(`etter utfallet ${randomUUID()}`);
    for (const text of guestSent) {
      await page.locator('.msg.me', { hasText: text }).locator('.st-delivered, .st-read').waitFor({ timeout: 180000 });
    }
    const guest = new Guest(stack.GUEST_URL, (await page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; '));
    const r = await checkConversation(stack, officer, 'outage', { roomId, guest, guestSent, officerSent: [] });
    counts.outage = { seconds: Math.round(OUTAGE_MS / 1000), guest_messages: r.guest, sent_during_outage: during.length, lost: 0, doubled: 0 };
  } finally {
    await browser.close();
  }
});

test('replayed and duplicated appservice transactions add nothing', async () => {
  const { invite, roomId } = await openConversation(officer, dm, 'Gjentak');
  const { guest, stop } = await connectedGuest(stack, invite);
  try {
    const officerSent = [];
    for (let i = 0; i < 3; i++) {
      const text = `politi gjentak ${i} ${randomUUID()}`;
      await officer.sendText(roomId, text);
      officerSent.push(text);
    }
    await checkConversation(stack, officer, 'before replay', { roomId, guest, guestSent: [], officerSent });
    // The events as the homeserver sent them (encrypted), straight from Dendrite.
    const res = await fetch(`${stack.HS_URL}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=50`, {
      headers: { Authorization: `Bearer ${officer.client.getAccessToken()}` },
    });
    const events = (await res.json()).chunk.filter((e) => e.sender === officer.userId && e.type === 'm.room.encrypted').reverse();
    assert.equal(events.length, 3);
    const put = async (txnId, evts) => {
      const r = await fetch(`${stack.AS_URL}/_matrix/app/v1/transactions/${txnId}`, {
        method: 'PUT',
        headers: { Authorization: `Bearer ${stack.HS_TOKEN}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ events: evts }),
      });
      assert.equal(r.status, 200, `transaction ${txnId} answered`);
    };
    // The same transaction ID twice, the same events under new IDs, in another
    // order, and again after a restart (when the bridge's memory of IDs is gone).
    await put('replay-1', events);
    await put('replay-1', events);
    await put('replay-2', events);
    await put('replay-3', [...events].reverse());
    await stack.restartBridge();
    await put('replay-1', events);
    await put('replay-4', events);
    const last = `politi etter gjentak ${randomUUID()}`;
    await officer.sendText(roomId, last);
    officerSent.push(last);
    await checkConversation(stack, officer, 'after replay', { roomId, guest, guestSent: [], officerSent });
    counts.replay = { transactions: 6, events_each: 3, doubled: 0 };
  } finally {
    await stop();
  }
});

test('a guest retrying a POST whose answer was lost gets one message in the room', async () => {
  const { invite, roomId } = await openConversation(officer, dm, 'Tapt svar');
  const guest = await Guest.join(stack.GUEST_URL, invite);
  const guestSent = [];
  for (let i = 0; i < 5; i++) {
    const text = `tapt svar ${i} ${randomUUID()}`;
    const clientId = newClientId();
    // The request reaches the bridge; the answer never reaches the guest.
    const ac = new AbortController();
    const first = guest.send(text, clientId, { signal: ac.signal }).catch((err) => err);
    await sleep(i * 3);
    ac.abort();
    await first;
    // The page sends again with the same client_id, twice at once for good measure.
    const [a, b] = await Promise.all([guest.send(text, clientId), guest.send(text, clientId)]);
    assert.ok([200, 202].includes(a.status) && [200, 202].includes(b.status), `retries accepted: ${a.status} ${b.status}`);
    assert.equal(a.body.seq, b.body.seq, 'both retries name the same message');
    guestSent.push(text);
  }
  // Different text under a used client_id is refused, not delivered.
  const ownId = newClientId();
  const own = `egen ${randomUUID()}`;
  assert.equal((await guest.send(own, ownId)).status, 202);
  guestSent.push(own);
  assert.equal((await guest.send('noe annet', ownId)).status, 409);
  await checkConversation(stack, officer, 'lost answers', { roomId, guest, guestSent, officerSent: [] });
  counts.lost_answer = { retried_posts: 15, messages: 6, doubled: 0 };
});
