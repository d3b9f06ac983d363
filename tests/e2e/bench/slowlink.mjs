// sikkerchat's slow-link benchmark: the citizen's phone (Chromium, 360×740)
// on an emulated mobile link, against the real bridge and Dendrite. For each
// link it measures, with a fresh invite each time:
//   - tap → code form visible (from the navigation's start, by the page's clock),
//   - code → chat ready (the officer's greeting on screen, so the event stream is live),
//   - the bytes on the wire before the form (headers included) and the requests.
// The page is reached through a TLS-terminating proxy, as in production
// (docs/operations.md): browsers offer brotli only over HTTPS.
// Timings are reported, never asserted: the run fails only when something
// does not work.
//
//   node bench/slowlink.mjs [--full] [--json FILE]
import { createServer as createHttpsServer } from 'node:https';
import { request as httpRequest } from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, dirname } from 'node:path';
import { Officer } from '../lib/officer.mjs';
import { openConversation } from '../lib/conversation.mjs';
import { startStack } from '../lib/localstack.mjs';
import { launchBrowser, newPhone } from '../lib/browser.mjs';

const args = process.argv.slice(2);
const full = args.includes('--full');
const jsonPath = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;
const runs = full ? 7 : 1;
const log = (...a) => console.error('slowlink:', ...a);

// The links, as the figures in issue 12 were measured: "Slow 3G" is
// 400 ms round trip and 400 kbit/s both ways; "Fast 3G" is Chrome DevTools'
// classic preset (150 ms, 1.6 Mbit/s down and 750 kbit/s up, each × 0.9).
// Latency is added by Chromium to every request, as DevTools does.
const LINKS = [
  { name: 'none', latency: 0, down: -1, up: -1 },
  { name: 'Fast 3G', latency: 150, down: (1.6e6 / 8) * 0.9, up: (750e3 / 8) * 0.9 },
  { name: 'Slow 3G', latency: 400, down: 400e3 / 8, up: 400e3 / 8 },
];
const TARGETS = { slow3g_form_ms: 1500, first_paint_wire_bytes: 20000 };

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  return { n: s.length, p50: Math.round(q(0.5)), max: Math.round(s[s.length - 1]) };
}

/** A TLS-terminating proxy in front of the guest listener, like the reverse proxy in production. */
async function startTLSProxy(target, port) {
  const dir = mkdtempSync(join(tmpdir(), 'sikkerchat-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const upstream = new URL(target);
  const server = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
    const headers = { ...req.headers, 'x-forwarded-for': req.socket.remoteAddress, 'x-forwarded-proto': 'https' };
    const up = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => { res.destroy(); });
    req.pipe(up);
    res.on('close', () => up.destroy());
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  rmSync(dir, { recursive: true, force: true });
  return { url: `https://localhost:${server.address().port}`, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
}

const basePort = 29708;
const proxyPort = basePort + 6;
const stack = await startStack({
  basePort,
  extraEnv: { SIKKERCHAT_GUEST_RATE: '10000000', SIKKERCHAT_PUBLIC_URL: `https://localhost:${proxyPort}` },
});
const officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
const browser = await launchBrowser();
const proxy = await startTLSProxy(stack.GUEST_URL, proxyPort);
const results = { date: new Date().toISOString(), mode: full ? 'full' : 'short', machine: { cpu: cpus()[0]?.model, cores: cpus().length }, links: {} };
try {
  await officer.start();
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);
  for (const link of LINKS) {
    const form = [];
    const chat = [];
    let wire = null;
    for (let i = 0; i < runs; i++) {
      const { invite, roomId } = await openConversation(officer, dm);
      const greeting = `Hei, dette er politiet (${link.name} ${i}).`;
      await officer.sendText(roomId, greeting);
      const url = invite.url;
      const context = await newPhone(browser, { ignoreHTTPSErrors: true });
      const page = await context.newPage();
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      await cdp.send('Network.emulateNetworkConditions', {
        offline: false, latency: link.latency, downloadThroughput: link.down, uploadThroughput: link.up,
      });
      const requests = new Map();
      cdp.on('Network.requestWillBeSent', (e) => requests.set(e.requestId, { url: new URL(e.request.url).pathname }));
      cdp.on('Network.responseReceived', (e) => {
        const r = requests.get(e.requestId);
        if (r) r.encoding = e.response.headers['content-encoding'] || e.response.headers['Content-Encoding'] || '';
      });
      cdp.on('Network.loadingFinished', (e) => {
        const r = requests.get(e.requestId);
        if (r) r.bytes = e.encodedDataLength;
      });

      // The tap: navigation starts; the page's clock starts with it.
      await page.goto(url, { waitUntil: 'commit' });
      const formAt = await (await page.waitForFunction(() => {
        const f = document.getElementById('join-form');
        return f && f.offsetParent !== null && f.getBoundingClientRect().height > 0 ? performance.now() : false;
      }, null, { polling: 'raf', timeout: 60000 })).jsonValue();
      form.push(formAt);
      // Whatever the first view loaded has arrived by now; the citizen reads.
      await page.waitForTimeout(500 + link.latency * 2);
      const first = [...requests.values()].filter((r) => r.bytes !== undefined);
      if (i === 0) {
        wire = {
          bytes: first.reduce((a, r) => a + r.bytes, 0),
          requests: first.map((r) => `${r.url} ${r.bytes} B${r.encoding ? ` (${r.encoding})` : ''}`),
        };
      }

      await page.locator('#code').fill(invite.code);
      const submitAt = await page.evaluate(() => performance.now());
      await page.locator('#join-btn').click();
      const readyAt = await (await page.waitForFunction((text) => {
        for (const el of document.querySelectorAll('.msg.them .text')) if (el.textContent === text) return performance.now();
        return false;
      }, greeting, { polling: 'raf', timeout: 60000 })).jsonValue();
      chat.push(readyAt - submitAt);
      await context.close();
    }
    results.links[link.name] = { tap_to_form_ms: stats(form), code_to_chat_ms: stats(chat), first_paint: wire };
    log(`${link.name}: form p50 ${stats(form).p50} ms, chat p50 ${stats(chat).p50} ms, first paint ${wire.bytes} B in ${wire.requests.length} requests`);
  }
  const slow = results.links['Slow 3G'];
  results.targets = {
    slow3g_form_visible_at_most_1500_ms: slow.tap_to_form_ms.p50 <= TARGETS.slow3g_form_ms,
    first_paint_wire_bytes_at_most_20000: slow.first_paint.bytes <= TARGETS.first_paint_wire_bytes,
  };
  const lines = [
    `sikkerchat slow-link benchmark, ${results.mode} mode (${runs} run(s) per link), ${results.date}`,
    '',
    '| link     | tap → form p50 (max) | code → chat p50 (max) | first paint on the wire |',
    '|----------|---------------------:|----------------------:|------------------------:|',
    ...LINKS.map((l) => {
      const r = results.links[l.name];
      return `| ${l.name.padEnd(8)} | ${`${r.tap_to_form_ms.p50} ms (${r.tap_to_form_ms.max})`.padStart(20)} | ${`${r.code_to_chat_ms.p50} ms (${r.code_to_chat_ms.max})`.padStart(21)} | ${`${r.first_paint.bytes} B, ${r.first_paint.requests.length} requests`.padStart(23)} |`;
    }),
    '',
    `first paint (Slow 3G): ${slow.first_paint.requests.join('; ')}`,
    `targets: ${Object.entries(results.targets).map(([k, v]) => `${k} ${v ? 'met' : 'MISSED'}`).join('; ')}`,
  ];
  console.log(lines.join('\n'));
  if (jsonPath) {
    mkdirSync(dirname(jsonPath), { recursive: true });
    writeFileSync(jsonPath, JSON.stringify(results, null, 2) + '\n');
    log(`JSON written to ${jsonPath}`);
  }
} finally {
  await browser.close().catch(() => {});
  await proxy.close().catch(() => {});
  await officer.stop().catch(() => {});
  await stack.stop();
}
