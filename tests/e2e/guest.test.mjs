// The citizen's side, end to end: Debian Chromium as the phone, matrix-js-sdk
// as the officer, the real bridge and Dendrite between them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openConversation } from './lib/conversation.mjs';
import { Officer } from './lib/officer.mjs';
import { startStack, eventually } from './lib/localstack.mjs';
import { launchBrowser, newPhone, seriousViolations } from './lib/browser.mjs';

let stack;
let officer;
let dmRoomId;
let browser;

before(async () => {
  stack = await startStack({ basePort: 28408 });
  officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
  await officer.start();
  dmRoomId = await officer.createEncryptedDM(stack.BOT_MXID);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await officer?.stop();
  await stack?.stop();
});

const newConversation = (label = '') => openConversation(officer, dmRoomId, label);

async function joinInBrowser(page, invite) {
  await page.goto(invite.url);
  await page.locator('#code').fill(invite.code);
  await page.locator('#join-btn').click();
  await page.locator('#v-chat').waitFor({ state: 'visible' });
}

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

test('a link-preview crawler fetching the link does not use it up', async () => {
  const { invite } = await newConversation();
  for (const url of [invite.url, invite.url.split('#')[0]]) {
    const res = await fetch(url, { headers: { 'User-Agent': 'facebookexternalhit/1.1' } });
    assert.equal(res.status, 200);
    await res.text();
  }
  const context = await newPhone(browser);
  const page = await context.newPage();
  await joinInBrowser(page, invite);
  await context.close();
});

test('the citizen talks with the officer: text, files, typing, read state, reload, single use, quick exit', async () => {
  const { invite, roomId } = await newConversation('Nettsak');
  const context = await newPhone(browser);
  const page = await context.newPage();
  await joinInBrowser(page, invite);
  assert.equal(new URL(page.url()).hash, '', 'the token is gone from the address bar');

  // The room is told that the guest has joined.
  await officer.waitForMessage(roomId, (c) => c.msgtype === 'm.notice' && /åpnet samtalen/.test(c.body));

  // Guest -> officer text.
  const guestText = `Hei, jeg trenger hjelp ${randomUUID().slice(0, 8)}`;
  await page.locator('#text').fill(guestText);
  await page.locator('#send').click();
  const fromGuest = await officer.waitForMessage(roomId, (c) => c.body === guestText);
  assert.equal(fromGuest.type, 'm.room.encrypted');
  assert.deepEqual(fromGuest.content['m.mentions'], {}, 'what the guest typed mentions nobody');
  await page.locator('.msg.me', { hasText: guestText }).locator('.st-delivered, .st-read').waitFor();

  // Officer reads it: the page shows "read".
  await officer.sendReadReceipt(roomId, fromGuest.eventId);
  await page.locator('.msg.me', { hasText: guestText }).locator('.st-read').waitFor();

  // Officer -> guest text, live; the guest's page reads it and the officer sees the receipt.
  const officerText = `Hei! Du snakker med politiet ${randomUUID().slice(0, 8)}`;
  const officerEventId = await officer.sendText(roomId, officerText);
  await page.locator('.msg.them', { hasText: officerText }).waitFor();
  const guestMxid = (await officer.getState(roomId, 'no.sikkerchat.conversation')).guest;
  await officer.waitForReadReceipt(roomId, guestMxid, officerEventId);

  // Edits and deletions show on the page in place.
  const typo = `Skrivefeil ${randomUUID().slice(0, 8)}`;
  const typoId = await officer.sendText(roomId, typo);
  await page.locator('.msg.them', { hasText: typo }).waitFor();
  const fixed = `Rettet ${randomUUID().slice(0, 8)}`;
  await officer.editText(roomId, typoId, fixed);
  await page.locator('.msg.them', { hasText: fixed }).waitFor();
  assert.equal(await page.locator('.msg.them', { hasText: typo }).count(), 0, 'the old text is gone');
  // Deletions are covered by the handler tests: Dendrite v0.15.2 does not hand
  // redactions to the appservice here (see the issue notes).

  // A reply quotes what it answers.
  const answer = `Svar på det ${randomUUID().slice(0, 8)}`;
  await officer.sendMessage(roomId, { msgtype: 'm.text', body: answer, 'm.relates_to': { 'm.in_reply_to': { event_id: fromGuest.eventId } } });
  await page.locator('.msg.them', { hasText: answer }).locator('.quote', { hasText: guestText.slice(0, 20) }).waitFor();

  // Typing both ways.
  await page.locator('#text').fill('skriver');
  await officer.waitForTyping(roomId, guestMxid, true);
  await page.locator('#text').fill('');
  await officer.sendTyping(roomId, true);
  await eventually(async () => (await page.locator('#typing').textContent())?.trim().length > 0, { what: 'the officer typing on the page' });
  await officer.sendTyping(roomId, false);

  // Files guest -> officer: a PNG and a PDF arrive with the same bytes.
  const dir = mkdtempSync(join(tmpdir(), 'sikkerchat-files-'));
  const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000' +
    '1f15c4890000000d49444154789c63f80f00000101000518d84e0000000049454e44ae426082', 'hex');
  const pdf = Buffer.from('%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n');
  for (const [name, data] of [['skjermbilde.png', png], ['anmeldelse.pdf', pdf]]) {
    writeFileSync(join(dir, name), data);
    await page.locator('#file').setInputFiles(join(dir, name));
    const msg = await officer.waitForMessage(roomId, (c) => c.body === name && c['no.sikkerchat.sha256']);
    assert.equal(msg.type, 'm.room.encrypted');
    assert.equal(msg.content['no.sikkerchat.sha256'], sha256(data));
    assert.deepEqual(msg.content['m.mentions'], {});
    assert.ok(msg.content.file?.url, `an encrypted attachment: ${JSON.stringify(msg.content)}`);
    const downloaded = await officer.downloadAttachment(msg.content);
    assert.equal(sha256(downloaded), sha256(data), `${name}: the room has the original bytes`);
  }

  // Files officer -> guest: the page offers them for download with the same bytes.
  for (const [name, data, mimetype] of [['svar.png', png, 'image/png'], ['info.pdf', pdf, 'application/pdf']]) {
    await officer.sendFile(roomId, { name, data, mimetype });
    const link = page.locator('.msg.them a.file-link', { hasText: name });
    await link.waitFor();
    const href = await link.getAttribute('href');
    const bytes = await page.evaluate(async (u) => Array.from(new Uint8Array(await (await fetch(u)).arrayBuffer())), href);
    assert.equal(sha256(Buffer.from(bytes)), sha256(data), `${name}: the guest gets the original bytes`);
  }

  // Reload: the same history, nothing missing, nothing doubled.
  const before = await page.locator('#log .msg').allTextContents();
  await page.reload();
  await page.locator('.msg.them', { hasText: officerText }).waitFor();
  await eventually(async () => (await page.locator('#log .msg').count()) === before.length, { what: 'the same number of messages after reload' });
  assert.equal((await page.locator('.msg.me', { hasText: guestText }).count()), 1, 'not doubled');

  // A bridge restart: the reloaded page shows the same history, and talk goes on.
  await stack.restartBridge();
  await page.reload();
  await page.locator('.msg.them', { hasText: officerText }).waitFor();
  await eventually(async () => (await page.locator('#log .msg').count()) === before.length, { what: 'the same history after a bridge restart' });
  const afterRestart = `Etter omstart ${randomUUID().slice(0, 8)}`;
  await officer.sendText(roomId, afterRestart);
  await page.locator('.msg.them', { hasText: afterRestart }).waitFor();

  // A second browser with the same link is refused.
  const other = await newPhone(browser);
  const otherPage = await other.newPage();
  await otherPage.goto(invite.url);
  await otherPage.locator('#code').fill(invite.code);
  await otherPage.locator('#join-btn').click();
  await otherPage.locator('#join-fatal, #join-err').filter({ hasText: /allerede brukt/ }).first().waitFor();
  await other.close();

  // Nothing of what was said, sent or typed reaches the bridge log.
  const log = stack.bridgeLog();
  for (const secret of [guestText, officerText, invite.code, invite.url.split('#')[1], 'skjermbilde.png', 'anmeldelse.pdf', 'svar.png']) {
    assert.ok(!log.includes(secret), `the bridge log must not contain ${secret}`);
  }

  // Small screens and zoom: no sideways scrolling at 320 px, nor at 200 % zoom.
  for (const width of [320, 160]) {
    await page.setViewportSize({ width, height: 640 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `no horizontal scroll at ${width} px (${overflow} px too wide)`);
  }
  await page.setViewportSize({ width: 360, height: 740 });

  // Quick exit: away to the neutral site, and the page shows nothing afterwards.
  await page.route('https://www.yr.no/**', (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<title>Været</title>' }));
  await page.locator('#exit').click();
  await page.waitForURL(/yr\.no/);
  await page.goto(stack.GUEST_URL);
  await page.locator('#v-none').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#log .msg').count(), 0, 'no conversation in the new page');
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
  await context.close();
});

test('keyboard only: join and send without a pointer', async () => {
  const { invite, roomId } = await newConversation();
  const context = await newPhone(browser);
  const page = await context.newPage();
  await page.goto(invite.url);
  await page.locator('#v-join').waitFor({ state: 'visible' });
  let focused = '';
  for (let i = 0; i < 10 && focused !== 'code'; i++) {
    await page.keyboard.press('Tab');
    focused = await page.evaluate(() => document.activeElement?.id);
  }
  assert.equal(focused, 'code', 'the code field is reachable with Tab');
  await page.keyboard.type(invite.code);
  await page.keyboard.press('Enter');
  await page.locator('#v-chat').waitFor({ state: 'visible' });
  for (let i = 0; i < 15 && focused !== 'text'; i++) {
    await page.keyboard.press('Tab');
    focused = await page.evaluate(() => document.activeElement?.id);
  }
  assert.equal(focused, 'text', 'the message field is reachable with Tab');
  const text = `Med tastatur ${randomUUID().slice(0, 8)}`;
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
  await officer.waitForMessage(roomId, (c) => c.body === text);
  await context.close();
});

test('accessibility: no serious or critical axe violations (join, chat, ended; bokmål and English)', async () => {
  for (const locale of ['nb-NO', 'en-GB']) {
    const { invite } = await newConversation();
    const context = await newPhone(browser, { locale });
    const page = await context.newPage();
    await page.goto(invite.url);
    await page.locator('#v-join').waitFor({ state: 'visible' });
    assert.deepEqual(await seriousViolations(page), [], `join (${locale})`);
    await page.locator('#code').fill(invite.code);
    await page.locator('#join-btn').click();
    await page.locator('#v-chat').waitFor({ state: 'visible' });
    assert.deepEqual(await seriousViolations(page), [], `chat (${locale})`);
    await page.locator('#text').fill('hei');
    await page.locator('#send').click();
    await page.locator('.msg.me .st-delivered, .msg.me .st-read').first().waitFor();
    // Ended: the officer makes a new link, which ends this browser's session.
    const statusId = await officer.sendText(invite.room_id, '!sc reissue');
    await officer.waitForMessage(invite.room_id, (c) => c['m.relates_to']?.['m.in_reply_to']?.event_id === statusId);
    await page.locator('#v-ended').waitFor({ state: 'visible' });
    assert.deepEqual(await seriousViolations(page), [], `ended (${locale})`);
    await context.close();
  }
});

test('first load stays small', async () => {
  const context = await newPhone(browser);
  const page = await context.newPage();
  let bytes = 0;
  const seen = [];
  page.on('response', async (res) => {
    try {
      const body = await res.body();
      bytes += body.length;
      seen.push(`${new URL(res.url()).pathname} ${body.length}`);
    } catch { /* redirects have no body */ }
  });
  await page.goto(stack.GUEST_URL, { waitUntil: 'load' });
  await page.locator('#v-none').waitFor({ state: 'visible' });
  await page.waitForTimeout(500);
  console.log(`# first load: ${bytes} bytes uncompressed (${seen.join(', ')})`);
  assert.ok(bytes < 64 * 1024, `first load is ${bytes} bytes: ${seen.join(', ')}`);
  await context.close();
});
