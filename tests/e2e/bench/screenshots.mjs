// Phone-size screenshots of the guest page (bokmål) from the real stack, for
// the docs: join and chat.
//
//   cd tests/e2e && node bench/screenshots.mjs ../../docs/img
import { join } from 'node:path';
import { openConversation } from '../lib/conversation.mjs';
import { Officer } from '../lib/officer.mjs';
import { startStack } from '../lib/localstack.mjs';
import { launchBrowser, newPhone } from '../lib/browser.mjs';

const out = process.argv[2] ?? '.';
const stack = await startStack({ basePort: 28608 });
const officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
const browser = await launchBrowser();
try {
  await officer.start();
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm);
  const page = await (await newPhone(browser)).newPage();
  await page.goto(invite.url);
  await page.locator('#v-join').waitFor({ state: 'visible' });
  await page.locator('#code').fill(invite.code);
  await page.screenshot({ path: join(out, 'guest-join-nb.png') });
  await page.locator('#join-btn').click();
  await page.locator('#v-chat').waitFor({ state: 'visible' });
  await officer.sendText(roomId, 'Hei! Du snakker med Nettpatruljen. Fortell gjerne hva som har skjedd, i ditt eget tempo.');
  await page.locator('.msg.them').first().waitFor();
  await page.locator('#text').fill('Hei. Noen truer med å dele bilder av meg.');
  await page.locator('#send').click();
  const sent = await officer.waitForMessage(roomId, (c) => c.body?.startsWith('Hei. Noen truer'));
  await officer.sendReadReceipt(roomId, sent.eventId);
  await page.locator('.msg.me .st-read').waitFor();
  await officer.sendText(roomId, 'Takk for at du sier fra. Det er ikke din feil. Ikke betal, og ikke slett noe ennå.');
  await page.locator('.msg.them').nth(1).waitFor();
  await officer.sendTyping(roomId, true);
  await page.waitForTimeout(1500);
  await page.screenshot({ path: join(out, 'guest-chat-nb.png') });
  console.log('screenshots written to', out);
} finally {
  await browser.close();
  await officer.stop();
  await stack.stop();
}
