// sikkerchat's benchmark: the real bridge and a real Dendrite on this machine,
// with a direct Matrix client-to-client baseline measured in the same run.
// Run through scripts/bench.sh (which sets the open-file limit); it prints a
// table and writes JSON. Timings are reported, never asserted: the run fails
// only when something does not work.
//
//   node bench/bench.mjs [--full] [--json FILE]
import { Officer } from '../lib/officer.mjs';
import { MatrixEventEvent, RoomEvent } from 'matrix-js-sdk';
import { writeFileSync, readFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus, totalmem } from 'node:os';
import { execFileSync } from 'node:child_process';
import { openConversation, command } from '../lib/conversation.mjs';
import { startStack, testHook } from '../lib/localstack.mjs';
import { Guest, newClientId } from '../lib/guest.mjs';

const args = process.argv.slice(2);
const full = args.includes('--full');
const jsonPath = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;
const P = full
  ? { mode: 'full', messages: 500, warmup: 10, conversations: 50, perConversation: 40, sessions: [0, 1000, 5000], creates: 20 }
  : { mode: 'short', messages: 30, warmup: 3, conversations: 5, perConversation: 6, sessions: [0, 100], creates: 3 };

const log = (...a) => console.error('bench:', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function stats(xs) {
  if (!xs.length) return { n: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  return { n: s.length, p50: round(q(0.5)), p99: round(q(0.99)), max: round(s[s.length - 1]), mean: round(s.reduce((a, b) => a + b, 0) / s.length) };
}
const round = (x) => Math.round(x * 100) / 100;

/** Resolves, for each body seen in roomId (decrypted), the time it was first seen. */
function bodyWatcher(client, roomId) {
  const waiters = new Map();
  const seen = new Map();
  const check = (ev) => {
    if (ev.getRoomId() !== roomId) return;
    if (ev.isEncrypted() && !ev.getClearContent()) return;
    const body = ev.getContent()?.body;
    if (typeof body !== 'string' || seen.has(body)) return;
    const at = performance.now();
    seen.set(body, at);
    const w = waiters.get(body);
    if (w) {
      waiters.delete(body);
      w(at);
    }
  };
  client.on(MatrixEventEvent.Decrypted, check);
  client.on(RoomEvent.Timeline, check);
  return {
    wait(body, timeoutMs = 60000) {
      if (seen.has(body)) return Promise.resolve(seen.get(body));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { waiters.delete(body); reject(new Error(`not seen within ${timeoutMs} ms: ${body}`)); }, timeoutMs);
        waiters.set(body, (at) => { clearTimeout(timer); resolve(at); });
      });
    },
    off() {
      client.off(MatrixEventEvent.Decrypted, check);
      client.off(RoomEvent.Timeline, check);
    },
  };
}

/** Resolves, for each officer text the guest's stream shows, the time its frame arrived. */
function frameWatcher() {
  const waiters = new Map();
  const seen = new Map();
  return {
    onFrame(name, data, at) {
      if (name !== 'message' || data.direction !== 'to_guest' || seen.has(data.text)) return;
      seen.set(data.text, at);
      const w = waiters.get(data.text);
      if (w) {
        waiters.delete(data.text);
        w(at);
      }
    },
    wait(text, timeoutMs = 60000) {
      if (seen.has(text)) return Promise.resolve(seen.get(text));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { waiters.delete(text); reject(new Error(`not shown within ${timeoutMs} ms`)); }, timeoutMs);
        waiters.set(text, (at) => { clearTimeout(timer); resolve(at); });
      });
    },
  };
}

async function prov(stack, method, path, body) {
  const res = await fetch(`${stack.PROVISIONING_URL}/v3/sikkerchat${path}?user_id=${encodeURIComponent(stack.OFFICER_MXID)}`, {
    method,
    headers: { Authorization: `Bearer ${stack.PROVISIONING_SECRET}`, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const out = await res.json();
  if (!res.ok) throw new Error(`provisioning ${method} ${path}: ${res.status} ${JSON.stringify(out)}`);
  return out;
}

async function metric(stack, name, labels) {
  const text = await (await fetch(stack.METRICS_URL)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (want.every((w) => line.includes(w))) return Number(line.split(' ').pop());
  }
  throw new Error(`metric ${name} ${JSON.stringify(labels)} not found`);
}

const pidOf = (file) => Number(readFileSync(file, 'utf8').trim());
function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]);
}
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime + stime
}

const results = { mode: P.mode, date: new Date().toISOString(), machine: machine() };

function machine() {
  let model = cpus()[0]?.model ?? 'unknown';
  return { cpu: model.trim(), cores: cpus().length, memory_gib: round(totalmem() / 2 ** 30), node: process.version,
    kernel: execFileSync('uname', ['-sr']).toString().trim() };
}

log(`mode ${P.mode}: starting Dendrite and sikkerchat (log level info, rate limits lifted)`);
const stack = await startStack({ basePort: 29408, extraEnv: { SIKKERCHAT_LOG_LEVEL: 'info', SIKKERCHAT_GUEST_RATE: '10000000' } });
const officer = await Officer.login(stack.HS_URL, stack.OFFICER_MXID, stack.OFFICER_PASSWORD);
const peer = await Officer.login(stack.HS_URL, stack.OFFICER2_MXID, stack.OFFICER2_PASSWORD);
const bridgePid = () => pidOf(stack.BRIDGE_PID_FILE);
const hsPid = () => pidOf(stack.HS_PID_FILE);
const openStreams = [];
try {
  await officer.start();
  await peer.start();
  const dm = await officer.createEncryptedDM(stack.BOT_MXID);

  // --- 1. Latency, bridged and direct, interleaved -----------------------------
  log(`latency: ${P.messages} messages each way, bridged and direct, interleaved`);
  const { invite, roomId } = await openConversation(officer, dm, 'Måling');
  const guest = await Guest.join(stack.GUEST_URL, invite);
  const frames = frameWatcher();
  openStreams.push(await guest.openStream({ onFrame: frames.onFrame }));
  const bridgedAtOfficer = bodyWatcher(officer.client, roomId);

  // createEncryptedDM resolves once the other side has joined.
  const directRoomP = officer.createEncryptedDM(peer.userId);
  await peer.joinRoom(await peer.waitForInvite());
  const directRoom = await directRoomP;
  const directAtOfficer = bodyWatcher(officer.client, directRoom);
  const directAtPeer = bodyWatcher(peer.client, directRoom);

  const lat = { guestToOfficer: [], officerToGuest: [], peerToOfficer: [], officerToPeer: [] };
  for (let i = 0; i < P.warmup + P.messages; i++) {
    const measure = i >= P.warmup;
    if (i === P.warmup) await testHook(stack, 'POST', '/_test/timings');
    // guest -> officer: POST until the officer's client has the decrypted text
    let text = `g${i} ${newClientId()}`;
    let t0 = performance.now();
    const res = await guest.send(text);
    if (res.status !== 202) throw new Error(`guest send answered ${res.status}`);
    let t1 = await bridgedAtOfficer.wait(text);
    if (measure) lat.guestToOfficer.push(t1 - t0);
    // direct peer -> officer
    text = `p${i} ${newClientId()}`;
    t0 = performance.now();
    await peer.sendText(directRoom, text);
    t1 = await directAtOfficer.wait(text);
    if (measure) lat.peerToOfficer.push(t1 - t0);
    // officer -> guest: send until the guest's event stream has it
    text = `o${i} ${newClientId()}`;
    t0 = performance.now();
    await officer.sendText(roomId, text);
    t1 = await frames.wait(text);
    if (measure) lat.officerToGuest.push(t1 - t0);
    // direct officer -> peer
    text = `d${i} ${newClientId()}`;
    t0 = performance.now();
    await officer.sendText(directRoom, text);
    t1 = await directAtPeer.wait(text);
    if (measure) lat.officerToPeer.push(t1 - t0);
  }
  const share = await testHook(stack, 'GET', '/_test/timings');
  results.latency_ms = {
    guest_to_officer: stats(lat.guestToOfficer),
    direct_to_officer: stats(lat.peerToOfficer),
    officer_to_guest: stats(lat.officerToGuest),
    direct_officer_to_client: stats(lat.officerToPeer),
  };
  const L = results.latency_ms;
  results.ratio_p50 = {
    guest_to_officer: round(L.guest_to_officer.p50 / L.direct_to_officer.p50),
    officer_to_guest: round(L.officer_to_guest.p50 / L.direct_officer_to_client.p50),
  };
  results.bridge_share_ms = {
    guest_post_to_homeserver_send: stats(share.guest_to_homeserver ?? []),
    transaction_to_sse_frame: stats(share.transaction_to_guest ?? []),
  };
  bridgedAtOfficer.off();
  directAtOfficer.off();
  directAtPeer.off();

  // --- 2. Throughput with concurrent conversations ------------------------------
  log(`throughput: ${P.conversations} conversations, ${P.perConversation} messages each, all at once`);
  const guests = [];
  for (let c = 0; c < P.conversations; c++) {
    const created = await prov(stack, 'POST', '/conversations', {});
    guests.push(await Guest.join(stack.GUEST_URL, created['no.sikkerchat.invite']));
  }
  const total = P.conversations * P.perConversation;
  const before = await metric(stack, 'sikkerchat_messages_total', { direction: 'to_room', kind: 'text' });
  const cpu0 = { bridge: cpuSeconds(bridgePid()), hs: cpuSeconds(hsPid()) };
  let t0 = performance.now();
  await Promise.all(guests.map(async (g, c) => {
    for (let i = 0; i < P.perConversation; i++) {
      const res = await g.send(`t${c}.${i} ${newClientId()}`);
      if (res.status !== 202) throw new Error(`throughput send answered ${res.status}`);
    }
  }));
  const storedMs = performance.now() - t0;
  let delivered = 0;
  for (;;) {
    delivered = (await metric(stack, 'sikkerchat_messages_total', { direction: 'to_room', kind: 'text' })) - before;
    if (delivered >= total) break;
    if (performance.now() - t0 > 600000) throw new Error(`only ${delivered}/${total} delivered in 10 min`);
    await sleep(20);
  }
  const deliveredMs = performance.now() - t0;
  const cpu1 = { bridge: cpuSeconds(bridgePid()), hs: cpuSeconds(hsPid()) };
  // The same number of sends straight to Dendrite by plain clients, same concurrency.
  const plainRooms = [];
  for (let c = 0; c < P.conversations; c++) {
    plainRooms.push((await peer.client.createRoom({ preset: 'private_chat' })).room_id);
  }
  const token = peer.client.getAccessToken();
  const cpu2 = { bridge: cpuSeconds(bridgePid()), hs: cpuSeconds(hsPid()) };
  t0 = performance.now();
  await Promise.all(plainRooms.map(async (room, c) => {
    for (let i = 0; i < P.perConversation; i++) {
      const res = await fetch(`${stack.HS_URL}/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/${newClientId()}`, {
        method: 'PUT', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ msgtype: 'm.text', body: `plain ${c}.${i}` }),
      });
      if (!res.ok) throw new Error(`direct send: ${res.status}`);
      await res.arrayBuffer();
    }
  }));
  const directMs = performance.now() - t0;
  const cpu3 = { bridge: cpuSeconds(bridgePid()), hs: cpuSeconds(hsPid()) };
  const secs = deliveredMs / 1000;
  results.throughput = {
    conversations: P.conversations,
    messages: total,
    stored_per_s: round(total / (storedMs / 1000)),
    delivered_per_s: round(total / secs),
    direct_sends_per_s: round(total / (directMs / 1000)),
    bridge_cpu_percent: round(((cpu1.bridge - cpu0.bridge) / secs) * 100),
    homeserver_cpu_percent: round(((cpu1.hs - cpu0.hs) / secs) * 100),
    direct_homeserver_cpu_percent: round(((cpu3.hs - cpu2.hs) / (directMs / 1000)) * 100),
  };

  // --- 3. Memory per idle guest page -------------------------------------------
  log(`memory: bridge RSS with ${P.sessions.join(', ')} idle event streams`);
  for (const s of openStreams.splice(0)) s.close();
  await sleep(500);
  results.memory = [];
  let made = [];
  const cookieName = (await testHook(stack, 'POST', '/_test/bench-sessions', { count: 1 })).cookie_name;
  for (const n of P.sessions) {
    while (made.length < n) {
      const batch = Math.min(500, n - made.length);
      const { sessions } = await testHook(stack, 'POST', '/_test/bench-sessions', { count: batch });
      made.push(...sessions);
    }
    const target = n;
    while (openStreams.length < target) {
      const slice = made.slice(openStreams.length, Math.min(target, openStreams.length + 200));
      const opened = await Promise.all(slice.map((cookie) => new Guest(stack.GUEST_URL, `${cookieName}=${cookie}`).openStream()));
      openStreams.push(...opened);
    }
    await sleep(3000);
    const mem = await testHook(stack, 'GET', '/_test/memory');
    await sleep(500);
    const rss = rssKiB(bridgePid());
    const streams = await metric(stack, 'sikkerchat_guest_streams', {});
    if (streams !== n) throw new Error(`expected ${n} open streams, the bridge counts ${streams}`);
    results.memory.push({ sessions: n, rss_kib: rss, heap_inuse_kib: Math.round(mem.heap_inuse / 1024), stack_inuse_kib: Math.round(mem.stack_inuse / 1024), goroutines: mem.goroutines });
    log(`  ${n} streams: RSS ${rss} KiB, ${mem.goroutines} goroutines`);
  }
  const m0 = results.memory[0];
  const mN = results.memory[results.memory.length - 1];
  const perSession = (mN.rss_kib - m0.rss_kib) / Math.max(1, mN.sessions);
  results.memory_per_session_kib = round(perSession);
  results.sessions_per_gib = Math.round((1024 * 1024) / Math.max(perSession, 0.001));
  for (const s of openStreams.splice(0)) s.close();

  // --- 4. Creating a conversation vs a bare createRoom ------------------------------
  log(`create: ${P.creates} conversations (!sc new and provisioning) vs createRoom by the officer's client`);
  const create = { sc_new: [], provisioning: [], create_room: [] };
  for (let i = 0; i < P.creates; i++) {
    let t = performance.now();
    await command(officer, dm, '!sc new', { timeoutMs: 60000 });
    create.sc_new.push(performance.now() - t);
    t = performance.now();
    await prov(stack, 'POST', '/conversations', {});
    create.provisioning.push(performance.now() - t);
    t = performance.now();
    await officer.client.createRoom({
      preset: 'private_chat',
      invite: [peer.userId],
      initial_state: [
        { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
        { type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } },
        { type: 'm.room.guest_access', state_key: '', content: { guest_access: 'forbidden' } },
      ],
    });
    create.create_room.push(performance.now() - t);
  }
  results.create_ms = { sc_new_command: stats(create.sc_new), provisioning_create: stats(create.provisioning), bare_create_room: stats(create.create_room) };
  results.create_ratio_p50 = round(results.create_ms.provisioning_create.p50 / results.create_ms.bare_create_room.p50);

  // --- Report -------------------------------------------------------------------
  const T = results;
  results.targets = {
    latency_ratio_p50_at_most_1_3: T.ratio_p50.guest_to_officer <= 1.3 && T.ratio_p50.officer_to_guest <= 1.3,
    bridge_share_p99_at_most_5_ms: (T.bridge_share_ms.guest_post_to_homeserver_send.p99 ?? Infinity) <= 5 && (T.bridge_share_ms.transaction_to_sse_frame.p99 ?? Infinity) <= 5,
    sessions_per_gib_at_least_35000: T.sessions_per_gib >= 35000,
    create_at_most_2x_create_room: T.create_ratio_p50 <= 2,
    messages_per_s_at_least_200: T.throughput.delivered_per_s >= 200,
  };
  const row = (name, s) => `| ${name.padEnd(44)} | ${String(s.p50).padStart(8)} | ${String(s.p99).padStart(8)} | ${String(s.n).padStart(5)} |`;
  const lines = [
    `sikkerchat benchmark, ${P.mode} mode, ${T.date}`,
    `machine: ${T.machine.cpu}, ${T.machine.cores} cores, ${T.machine.memory_gib} GiB, ${T.machine.kernel}, Node ${T.machine.node}`,
    '',
    `| latency (ms)                                 |      p50 |      p99 |     n |`,
    `|----------------------------------------------|---------:|---------:|------:|`,
    row('guest → officer (bridged)', L.guest_to_officer),
    row('client → officer (direct Matrix)', L.direct_to_officer),
    row('officer → guest (bridged)', L.officer_to_guest),
    row('officer → client (direct Matrix)', L.direct_officer_to_client),
    row('bridge share: guest POST → homeserver send', T.bridge_share_ms.guest_post_to_homeserver_send),
    row('bridge share: AS transaction → SSE frame', T.bridge_share_ms.transaction_to_sse_frame),
    '',
    `bridged/direct at p50: guest → officer ${T.ratio_p50.guest_to_officer}, officer → guest ${T.ratio_p50.officer_to_guest}`,
    `throughput: ${T.throughput.delivered_per_s} msg/s delivered (${T.throughput.stored_per_s} msg/s stored) over ${T.throughput.conversations} conversations; ` +
      `direct sends ${T.throughput.direct_sends_per_s} msg/s; CPU bridge ${T.throughput.bridge_cpu_percent} %, Dendrite ${T.throughput.homeserver_cpu_percent} % (direct run: Dendrite ${T.throughput.direct_homeserver_cpu_percent} %)`,
    `memory: ${T.memory.map((m) => `${m.sessions} streams ${Math.round(m.rss_kib / 1024)} MiB`).join(', ')}; ${T.memory_per_session_kib} KiB per idle stream = ${T.sessions_per_gib} per GiB`,
    `create: !sc new p50 ${T.create_ms.sc_new_command.p50} ms, provisioning p50 ${T.create_ms.provisioning_create.p50} ms, bare createRoom p50 ${T.create_ms.bare_create_room.p50} ms (ratio ${T.create_ratio_p50})`,
    '',
    `targets (full mode): ${Object.entries(T.targets).map(([k, v]) => `${k} ${v ? 'met' : 'MISSED'}`).join('; ')}`,
  ];
  console.log(lines.join('\n'));
  if (jsonPath) {
    mkdirSync(dirname(jsonPath), { recursive: true });
    writeFileSync(jsonPath, JSON.stringify(results, null, 2) + '\n');
    log(`JSON written to ${jsonPath}`);
  }
} finally {
  for (const s of openStreams) s.close();
  await officer.stop().catch(() => {});
  await peer.stop().catch(() => {});
  await stack.stop();
}
