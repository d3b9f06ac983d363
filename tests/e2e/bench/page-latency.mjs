// Officer send -> text visible on the guest page, measured (never asserted).
//
//   cd tests/e2e && node bench/page-latency.mjs [N]
import { randomUUID } from 'node:crypto';
import { openConversation } from '../lib/conversation.mjs';
import { Officer } from '../lib/officer.mjs';
import { startStack } from '../lib/localstack.mjs';
import { launchBrowser, newPhone } from '../lib/browser.mjs';

const n = Number(process.argv[2] ?? 50);
const stack = await startStack({ basePort: 28508 });
const officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
const browser = await launchBrowser();
try {
  await officer.start();
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm);
  const page = await (await newPhone(browser)).newPage();
  await page.goto(invite.url);
  await page.locator('#code').fill(invite.code);
  await page.locator('#join-btn').click();
  await page.locator('#v-chat').waitFor({ state: 'visible' });
  // The page records when each text appears, by its own clock (no polling delay).
  await page.evaluate(() => {
    window.__seen = {};
    new MutationObserver(() => {
      for (const el of document.querySelectorAll('.msg.them .text')) {
        if (!(el.textContent in window.__seen)) window.__seen[el.textContent] = performance.timeOrigin + performance.now();
      }
    }).observe(document.getElementById('log'), { childList: true, subtree: true });
  });
  const times = [];
  for (let i = 0; i < n + 2; i++) {
    const text = `m${i} ${randomUUID()}`;
    const t0 = Date.now();
    await officer.sendText(roomId, text);
    await page.locator('.msg.them', { hasText: text }).waitFor();
    const seenAt = await page.evaluate((t) => window.__seen[t], text);
    if (i >= 2) times.push(seenAt - t0);
  }
  times.sort((a, b) => a - b);
  const pct = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(1);
  console.log(`officer send -> visible on the guest page, n=${n}: p50 ${pct(0.5)} ms, p90 ${pct(0.9)} ms, max ${pct(1)} ms`);
} finally {
  await browser.close();
  await officer.stop();
  await stack.stop();
}
