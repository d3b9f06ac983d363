// Failover: two bridges (a and b) on one PostgreSQL database behind HAProxy
// (docs/operations.md's settings), guests and officers talking both ways, one
// guest in a real Chromium page. The active bridge is killed with SIGKILL at
// random points; the standby takes over; the killed one comes back as the
// standby. Afterwards every conversation is checked message by message (zero
// lost, zero doubled, order kept), the page shows the same history as a fresh
// load, the role endpoints of both (asked at once, every 100 ms) never said
// that two processes were active at one instant (lib/roletimeline.mjs), and
// each kill made exactly one new term.
//
// Measured per kill: kill → the survivor's role says active; kill → the first
// guest message sent after the kill is in the officer's room; kill → the first
// officer message sent after the kill is on the guest's side. The figures are
// printed as "# failover: …" lines (p50 and max).
//
// Runs on PostgreSQL only (SIKKERCHAT_POSTGRES); FAILOVER_KILLS sets the
// number of kills (default 10).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openConversation } from './lib/conversation.mjs';
import { Officer } from './lib/officer.mjs';
import { startStack, eventually } from './lib/localstack.mjs';
import { Guest, newClientId } from './lib/guest.mjs';
import { launchBrowser, newPhone } from './lib/browser.mjs';
import { MetaSim } from './lib/metasim.mjs';
import { connectedGuest, checkConversation, freshRecord, sleep, talkBothWays } from './lib/delivery.mjs';
import { RoleTimeline } from './lib/roletimeline.mjs';

const KILLS = Number(process.env.FAILOVER_KILLS ?? 10);
const postgres = !!process.env.SIKKERCHAT_POSTGRES;

let stack;
let officer;
let dm;
let browser;

before(async () => {
  if (!postgres) return;
  // Every guest here comes from 127.0.0.1 through the proxy, so the per-address
  // limits (made for one phone, not for a whole test) are lifted, as the
  // benchmark does; web/ratelimit_test.go tests them.
  stack = await startStack({ basePort: 28308, extraEnv: { SIKKERCHAT_FAILOVER: '1', SIKKERCHAT_FAILOVER_LEASE: '3s', SIKKERCHAT_GUEST_RATE: '100000', SIKKERCHAT_META_SIM: '1' } });
  officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
  await officer.start();
  dm = await officer.createEncryptedDM(stack.BOT_MXID);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await officer?.stop();
  await stack?.stop();
});

// Both at once: asked one after the other, a kill between the two answers
// would show the killed one and its successor both active.
const roles = async () => {
  const [a, b] = await Promise.all([stack.role('a'), stack.role('b')]);
  return { a, b };
};
const activeOf = (r) => (r.a.status === 200 ? 'a' : r.b.status === 200 ? 'b' : '');
const quantile = (xs, q) => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const summary = (xs) => `p50 ${quantile(xs, 0.5)} ms, max ${Math.max(...xs)} ms over ${xs.length}`;

test(`failover: the active bridge killed ${KILLS} times while both sides talk; the standby takes over; nothing lost, nothing doubled, order kept`, { skip: !postgres && 'needs SIKKERCHAT_POSTGRES', timeout: 30 * 60000 }, async () => {
  // One guest in Chromium (the page must reconnect by itself), two through the API.
  const page = await (await newPhone(browser)).newPage();
  const convs = [];
  {
    const { invite, roomId } = await openConversation(officer, dm, 'Failover side');
    await page.goto(invite.url);
    await page.locator('#code').fill(invite.code);
    await page.locator('#join-btn').click();
    await page.locator('#v-chat').waitFor({ state: 'visible' });
    const cookie = (await page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
    convs.push({ invite, roomId, guest: new Guest(stack.GUEST_URL, cookie), stopGuest: async () => {}, guestSent: [], officerSent: [] });
  }
  for (const label of ['Failover A', 'Failover B', 'Failover probe']) {
    const { invite, roomId } = await openConversation(officer, dm, label);
    const g = await connectedGuest(stack, invite);
    convs.push({ invite, roomId, guest: g.guest, stopGuest: g.stop, guestSent: [], officerSent: [] });
  }
  // The last conversation carries only the timed probes, one each way per kill.
  const probe = convs.at(-1);
  const talking = convs.slice(0, -1);

  // Never two active at once; every term seen.
  const timeline = new RoleTimeline(stack);
  timeline.start();

  const talk = talkBothWays(officer, talking, { guestPause: [50, 150], officerPause: [80, 200] });

  const start = await roles();
  const firstTerm = (start.a.status === 200 ? start.a : start.b).term;
  assert.ok(activeOf(start), 'one bridge is active at the start');
  const takeover = [];
  const guestToOfficer = [];
  const officerToGuest = [];
  for (let k = 0; k < KILLS; k++) {
    await sleep(1000 + Math.random() * 3000);
    const active = activeOf(await roles());
    assert.ok(active, `kill ${k + 1}: an active bridge to kill`);
    const survivor = active === 'a' ? 'b' : 'a';
    const killedAt = Date.now();
    stack.killBridge(active);
    timeline.noteKill(active, killedAt);
    // The first messages sent after the kill, one each way, timed to arrival.
    const guestProbe = `probe gjest ${k} ${randomUUID()}`;
    const officerProbe = `probe politi ${k} ${randomUUID()}`;
    const guestArrived = (async () => {
      await probe.guest.sendUntilStored(guestProbe, newClientId(), { retryMs: 100 });
      probe.guestSent.push(guestProbe);
      await officer.waitForMessage(probe.roomId, (c) => c.body === guestProbe, { timeoutMs: 120000 }).catch((err) => {
        err.message = `kill ${k + 1} (${active} killed): the guest probe in the room: ${err.message}`;
        throw err;
      });
      return Date.now() - killedAt;
    })();
    const officerArrived = (async () => {
      await officer.sendText(probe.roomId, officerProbe);
      probe.officerSent.push(officerProbe);
      await eventually(() => probe.guest.entries().some((e) => e.text === officerProbe), { timeoutMs: 120000, intervalMs: 25, what: `kill ${k + 1} (${active} killed): the officer probe on the guest side` });
      return Date.now() - killedAt;
    })();
    await eventually(async () => (await stack.role(survivor)).status === 200, { timeoutMs: 60000, intervalMs: 20, what: `${survivor} to take over` });
    takeover.push(Date.now() - killedAt);
    guestToOfficer.push(await guestArrived);
    officerToGuest.push(await officerArrived);
    console.log(`# kill ${k + 1}: ${active} killed, ${survivor} active after ${takeover.at(-1)} ms; guest probe in the room after ${guestToOfficer.at(-1)} ms, officer probe on the guest side after ${officerToGuest.at(-1)} ms`);
    // The killed one comes back, as the standby.
    await stack.startBridge(active);
    assert.equal((await stack.role(active)).status, 503, `kill ${k + 1}: ${active} came back as the standby`);
  }
  await sleep(1000);
  const { retries } = await talk.stop();
  await timeline.stop();

  let guestTotal = 0;
  let officerTotal = 0;
  try {
    for (const [i, c] of convs.entries()) {
      const r = await checkConversation(stack, officer, `conversation ${i}`, c);
      guestTotal += r.guest;
      officerTotal += r.officer;
    }
    // The page reconnected by itself and shows what a fresh load shows.
    const record = (await freshRecord(stack, convs[0].guest)).filter((e) => e.text).map((e) => e.text);
    await eventually(async () => {
      const shown = await page.locator('#log .msg:not(.note) .text').allTextContents();
      return shown.length === record.length && shown.every((t, i) => t === record[i]);
    }, { timeoutMs: 120000, intervalMs: 500, what: 'the open page to show the same history as a fresh load' });
  } finally {
    await Promise.all(convs.map((c) => c.stopGuest()));
  }
  const roleCheck = timeline.check(); // never two active bridges at once
  const final = await roles();
  const lastTerm = (final.a.status === 200 ? final.a : final.b).term;
  assert.equal(lastTerm, firstTerm + KILLS, `one new term per kill\n${timeline.describe()}`);
  assert.equal(roleCheck.terms, KILLS + 1, `every term was seen once active\n${timeline.describe()}`);
  assert.equal(probe.guestSent.length, KILLS);

  // The shared key folder: a conversation created under the first term is
  // closed by whichever bridge is active now, and its key is destroyed.
  const keyFile = (c) => join(stack.STACK_DIR, 'bridge', 'keys', `${c.invite.conversation_id}.key`);
  assert.ok(convs.every((c) => existsSync(keyFile(c))), 'every open conversation has its key in the shared folder');
  const closing = convs[1];
  const closeId = await officer.sendText(closing.roomId, '!sc close');
  await officer.waitForMessage(closing.roomId, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === closeId || /Samtalen er avsluttet/.test(c.body ?? ''), { timeoutMs: 60000 });
  await eventually(async () => !existsSync(keyFile(closing)), { what: 'the closed conversation\'s key destroyed by the active bridge' });
  assert.ok(existsSync(keyFile(convs[2])), 'the others keep theirs');
  const after = (await closing.guest.send('etter lukking', newClientId())).status;
  assert.ok([401, 410].includes(after), `the closed conversation takes nothing more (${after})`);

  console.log(`# failover: ${KILLS} kills; ${guestTotal} guest and ${officerTotal} officer messages, ${retries} guest retries, none lost or doubled`);
  logRoleCheck(roleCheck);
  console.log(`# failover: kill → the standby active: ${summary(takeover)}`);
  console.log(`# failover: kill → first guest message in the room: ${summary(guestToOfficer)}`);
  console.log(`# failover: kill → first officer message on the guest side: ${summary(officerToGuest)}`);
});

/** Prints what the role time line saw; samples in which both answered 200 are listed with their instants. */
function logRoleCheck({ terms, samples, claims, bothActive }) {
  console.log(`# failover: role endpoints: ${samples} samples, ${claims} active answers, ${terms} terms, no two at one instant`);
  for (const line of bothActive) console.log(`# failover: both answered 200 in one sample, the older before the newer term began: ${line}`);
}

/** Whether a process runs (a zombie, or a process that is gone, does not). */
function running(pid) {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

test('a paused active (SIGSTOP past its lease) loses the role; woken, it exits and nothing is lost or doubled', { skip: !postgres && 'needs SIKKERCHAT_POSTGRES', timeout: 10 * 60000 }, async () => {
  const { invite, roomId } = await openConversation(officer, dm, 'Pause');
  const g = await connectedGuest(stack, invite);
  const conv = { roomId, guest: g.guest, guestSent: [], officerSent: [] };
  const talk = talkBothWays(officer, [conv], { guestPause: [100, 100], officerPause: [150, 150] });
  // The woken former active must not say it is active once the survivor's
  // term has begun, not even in the moment before it exits.
  const timeline = new RoleTimeline(stack);
  timeline.start();
  try {
    await sleep(1500);
    const before = await roles();
    const paused = activeOf(before);
    const survivor = paused === 'a' ? 'b' : 'a';
    const pid = Number(readFileSync(paused === 'b' ? stack.BRIDGE_B_PID_FILE : stack.BRIDGE_PID_FILE, 'utf8').trim());
    process.kill(pid, 'SIGSTOP');
    try {
      // The database ends the paused process's idle lock session after the
      // lease (3 s here); the standby takes over.
      await eventually(async () => (await stack.role(survivor)).status === 200, { timeoutMs: 60000, intervalMs: 50, what: `${survivor} to take over from the paused ${paused}` });
      await sleep(2000); // both sides keep talking, to the new active
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // Woken, the former active finds its lease gone and exits at once.
    await eventually(async () => !running(pid), { timeoutMs: 30000, what: `the woken ${paused} to exit` });
    const log = readFileSync(paused === 'b' ? stack.BRIDGE_B_LOG : stack.BRIDGE_LOG, 'utf8');
    assert.match(log, /Lost the active role; exiting/);
    await stack.startBridge(paused);
    assert.equal((await stack.role(paused)).status, 503, `${paused} came back as the standby`);
    await sleep(1000);
  } finally {
    await talk.stop();
    await timeline.stop();
  }
  logRoleCheck(timeline.check());
  try {
    const r = await checkConversation(stack, officer, 'pause', conv);
    console.log(`# failover: paused active: ${r.guest} guest and ${r.officer} officer messages, none lost or doubled`);
  } finally {
    await g.stop();
  }
});

const META_KILLS = Number(process.env.FAILOVER_META_KILLS ?? 4);

test(`the patrol inbox across failover: a person on Messenger and the officer write while the active is killed ${META_KILLS} times; Meta retries its webhooks; nothing lost, nothing doubled, order kept both ways`, { skip: !postgres && 'needs SIKKERCHAT_POSTGRES', timeout: 15 * 60000 }, async () => {
  const sim = new MetaSim(stack);
  const person = `70${Date.now()}`.slice(0, 16);
  await sim.message({ person, text: 'start' });
  const roomId = await officer.waitForInvite({ timeoutMs: 60000, predicate: (_, room) => room.name?.startsWith('Messenger:') });
  await officer.joinRoom(roomId, { timeoutMs: 60000 });
  await officer.waitForMessage(roomId, (c) => c.body === 'start', { timeoutMs: 60000 });
  const sendsBefore = (await sim.sends()).length;

  // Meta's webhooks come through the proxy to whichever bridge is active; the
  // officer's replies go out through the Send API.
  let running = true;
  const texts = [];
  const replies = [];
  const timeline = new RoleTimeline(stack);
  timeline.start();
  const loops = [
    (async () => {
      for (let n = 0; running; n++) {
        const text = `melding ${String(n).padStart(3, '0')} ${randomUUID().slice(0, 8)}`;
        await sim.message({ person, text });
        texts.push(text);
        await sleep(100 + Math.random() * 200);
      }
    })(),
    (async () => {
      for (let n = 0; running; n++) {
        const text = `svar ${String(n).padStart(3, '0')} ${randomUUID().slice(0, 8)}`;
        await officer.sendText(roomId, text);
        replies.push(text);
        await sleep(150 + Math.random() * 250);
      }
    })(),
  ];
  try {
    for (let k = 0; k < META_KILLS; k++) {
      await sleep(1000 + Math.random() * 2000);
      const active = activeOf(await roles());
      assert.ok(active, `kill ${k + 1}: an active bridge to kill`);
      const survivor = active === 'a' ? 'b' : 'a';
      const killedAt = Date.now();
      stack.killBridge(active);
      timeline.noteKill(active, killedAt);
      await eventually(async () => (await stack.role(survivor)).status === 200, { timeoutMs: 60000, intervalMs: 20, what: `${survivor} to take over` });
      await stack.startBridge(active);
    }
    await sleep(1000);
  } finally {
    running = false;
    await Promise.all(loops);
    await timeline.stop();
  }
  logRoleCheck(timeline.check());

  // Every webhook was taken in the end (Meta retried what a killed bridge did
  // not answer), and the room has each message once, in Meta's order.
  await eventually(async () => (await sim.deliveries()).pending === 0, { timeoutMs: 120000, what: 'Meta has delivered every webhook' });
  await officer.waitForMessage(roomId, (c) => c.body === texts.at(-1), { timeoutMs: 120000 });
  const inRoom = (await officer.roomHistory(roomId)).map((e) => e.getContent()?.body).filter((b) => b?.startsWith('melding '));
  assert.deepEqual(inRoom, texts, 'every message from Messenger once, in order');

  // Every reply reached Meta once, in order: one whose answer a kill lost
  // waits for Meta's echo instead of going again (up to 90 s).
  const accepted = async () => (await sim.sends()).slice(sendsBefore).filter((x) => x.status === 200 && x.text?.startsWith('svar ')).map((x) => x.text);
  await eventually(async () => (await accepted()).length >= replies.length, { timeoutMs: 240000, intervalMs: 500, what: 'every reply at Meta' });
  await sleep(2000); // a doubled send would come now
  assert.deepEqual(await accepted(), replies, 'every reply once, in order');
  const retried = (await sim.deliveries()).deliveries.filter((d) => d.attempts > 1).length;
  console.log(`# failover: patrol inbox: ${META_KILLS} kills; ${texts.length} messages from Messenger (${retried} ${retried === 1 ? 'webhook' : 'webhooks'} retried by Meta) and ${replies.length} replies, none lost or doubled`);
});

test('a second bridge on one SQLite database refuses to start', { skip: postgres && 'the SQLite run checks this' }, async () => {
  // The stack of another file is not needed: start one here.
  const sqlite = await startStack({ basePort: 28308 });
  try {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const bin = `${sqlite.dir}/bin/sikkerchat`;
    let failed;
    try {
      await promisify(execFile)(bin, ['-c', sqlite.BRIDGE_CONFIG, '-r', `${sqlite.dir}/bridge/registration.yaml`, '-n'], { cwd: `${sqlite.dir}/bridge`, timeout: 30000 });
    } catch (err) {
      failed = err;
    }
    assert.ok(failed, 'the second process exited');
    assert.equal(failed.code, 60, `exit code 60 (got ${failed.code})`);
    const log = sqlite.bridgeLog();
    assert.match(log, /another sikkerchat process is using this SQLite database/);
    // The first one still serves.
    const res = await fetch(`${sqlite.GUEST_URL}/healthz`);
    assert.equal(res.status, 200);
  } finally {
    await sqlite.stop();
  }
});
