// Starts and stops a private copy of the local stack (scripts/stack.sh) for a
// test file: its own state folder and ports, the bridge built with the test
// hooks, and the facts from stack.env.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readStackEnv } from './stack.mjs';

const run = promisify(execFile);
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const stackScript = join(repoRoot, 'scripts', 'stack.sh');

/**
 * @param {object} opts
 * @param {number} opts.basePort  HS on basePort, appservice +1, guest +2, metrics +3
 * @param {boolean} [opts.encryption=true]
 * @returns {Promise<object>} the stack.env facts plus stop(), bridgeLog()
 */
export async function startStack({ basePort, encryption = true, extraEnv = {} }) {
  const dir = mkdtempSync(join(tmpdir(), 'sikkerchat-e2e-'));
  const env = {
    ...process.env,
    STACK_DIR: dir,
    HS_PORT: String(basePort),
    AS_PORT: String(basePort + 1),
    GUEST_PORT: String(basePort + 2),
    METRICS_PORT: String(basePort + 3),
    META_PORT: String(basePort + 4),
    METASIM_PORT: String(basePort + 5),
    SIKKERCHAT_BUILD_TAGS: 'sikkerchat_testhooks',
    SIKKERCHAT_ENCRYPTION: encryption ? 'true' : 'false',
    ...extraEnv,
  };
  try {
    await run('bash', [stackScript, 'up'], { env, maxBuffer: 16 << 20 });
  } catch (err) {
    const out = existsSync(join(dir, 'bridge', 'bridge.out')) ? readFileSync(join(dir, 'bridge', 'bridge.out'), 'utf8') : '';
    await run('bash', [stackScript, 'down'], { env }).catch(() => {});
    throw new Error(`stack did not start: ${err.stderr || err.message}\n${out.slice(-4000)}`);
  }
  const facts = readStackEnv(join(dir, 'stack.env'));
  return {
    ...facts,
    dir,
    env,
    bridgeLog: () => (existsSync(facts.BRIDGE_LOG) ? readFileSync(facts.BRIDGE_LOG, 'utf8') : ''),
    /** Stops the bridge alone. */
    async stopBridge() {
      await run('bash', [stackScript, 'stop-bridge'], { env });
    },
    /**
     * Starts the bridge again after stopBridge. With SIKKERCHAT_FAILOVER,
     * instance 'a' or 'b' alone (resolves once it answers, as active or standby).
     */
    async startBridge(instance = '') {
      await run('bash', [stackScript, 'start-bridge', instance], { env });
    },
    /** Kills the bridge (or failover instance 'b') with SIGKILL: no shutdown, whatever it was doing stops there. */
    killBridge(instance = 'a') {
      const pid = Number(readFileSync(instance === 'b' ? facts.BRIDGE_B_PID_FILE : facts.BRIDGE_PID_FILE, 'utf8').trim());
      process.kill(pid, 'SIGKILL');
      return pid;
    },
    /** A failover instance's role endpoint: {status, role, term, instance}; status 0 when nothing answers. */
    async role(instance) {
      try {
        const res = await fetch(instance === 'b' ? facts.ROLE_B_URL : facts.ROLE_A_URL, { signal: AbortSignal.timeout(2000) });
        return { status: res.status, ...(await res.json()) };
      } catch {
        return { status: 0 };
      }
    },
    /** Stops Dendrite alone (an outage); the bridge keeps running. */
    async stopHomeserver() {
      await run('bash', [stackScript, 'stop-homeserver'], { env });
    },
    /** Starts Dendrite again after stopHomeserver. */
    async startHomeserver() {
      await run('bash', [stackScript, 'start-homeserver'], { env });
    },
    /** Stops and starts the bridge alone (Dendrite keeps running). */
    async restartBridge() {
      await run('bash', [stackScript, 'stop-bridge'], { env });
      await run('bash', [stackScript, 'start-bridge'], { env });
    },
    /** Stops the bridge (first) and Dendrite, and removes the state folder unless KEEP_STACK is set. */
    async stop() {
      await run('bash', [stackScript, 'down'], { env });
      if (!process.env.KEEP_STACK) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Calls a test hook on the guest listener (only present in sikkerchat_testhooks builds). */
export async function testHook(stack, method, path, body) {
  const res = await fetch(stack.GUEST_URL + path, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** Polls fn until it returns a truthy value or the timeout passes. */
export async function eventually(fn, { timeoutMs = 30000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  let lastError;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      // A service that is restarting answers nothing for a moment: try again.
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)}${lastError ? `; last error: ${lastError.message}` : ''}`);
}

/** Starts a bare Dendrite (no bridge) in a temporary folder; returns {HS_URL, REGISTRATION_SHARED_SECRET, stop()}. */
export async function startHomeserver({ port }) {
  const dir = mkdtempSync(join(tmpdir(), 'sikkerchat-hs-'));
  const env = { ...process.env, HS_DIR: dir, HS_PORT: String(port) };
  const script = join(repoRoot, 'scripts', 'homeserver.sh');
  await run('bash', [script, 'start'], { env });
  return {
    HS_URL: `http://127.0.0.1:${port}`,
    REGISTRATION_SHARED_SECRET: readFileSync(join(dir, 'shared_secret'), 'utf8').trim(),
    async stop() {
      await run('bash', [script, 'stop'], { env });
      if (!process.env.KEEP_STACK) rmSync(dir, { recursive: true, force: true });
    },
  };
}
