// Round trips through the real stack, measured (never asserted):
//   ghost -> officer:     test-hook POST until the officer's client has decrypted the event
//   officer -> connector: officer send until the entry is in the connector's transcript
//
//   cd tests/e2e && node bench/roundtrip.mjs [N]
import { randomUUID } from 'node:crypto';
import { openConversation } from '../lib/conversation.mjs';
import { Officer } from '../lib/officer.mjs';
import { startStack, testHook, eventually } from '../lib/localstack.mjs';

const n = Number(process.argv[2] ?? 50);
const stack = await startStack({ basePort: 28108 });
const officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
try {
  await officer.start();
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  const { invite, roomId } = await openConversation(officer, dm, 'Måling');

  const ghostToOfficer = [];
  const officerToConnector = [];
  for (let i = 0; i < n + 2; i++) {
    const text = `ghost ${i} ${randomUUID()}`;
    let t0 = performance.now();
    await testHook(stack, 'POST', `/_test/conversations/${invite.conversation_id}/guest-text`, { message_id: randomUUID(), text });
    await officer.waitForMessage(roomId, (c) => c.body === text);
    if (i >= 2) ghostToOfficer.push(performance.now() - t0); // the first two warm up Olm/Megolm sessions

    const reply = `officer ${i} ${randomUUID()}`;
    t0 = performance.now();
    const eventId = await officer.sendText(roomId, reply);
    await eventually(async () => {
      const transcript = await testHook(stack, 'GET', `/_test/conversations/${invite.conversation_id}/transcript`);
      return transcript.some((e) => e.matrix_event_id === eventId);
    }, { intervalMs: 2 });
    if (i >= 2) officerToConnector.push(performance.now() - t0);
  }
  const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(1); };
  console.log(`n=${n}`);
  console.log(`ghost -> officer (decrypted):  p50 ${pct(ghostToOfficer, 0.5)} ms  p90 ${pct(ghostToOfficer, 0.9)} ms  max ${pct(ghostToOfficer, 1)} ms`);
  console.log(`officer -> connector:          p50 ${pct(officerToConnector, 0.5)} ms  p90 ${pct(officerToConnector, 0.9)} ms  max ${pct(officerToConnector, 1)} ms`);
} finally {
  await officer.stop();
  await stack.stop();
}
