// The role endpoints of a failover stack (GET /_sikkerchat/role on bridges a
// and b) laid on one time line, so that "never two active at once" is checked
// on what the processes themselves said and when, not on when the test
// happened to read it.
//
// Both endpoints are asked at the same moment, every 100 ms. Every "active"
// answer is kept as a claim with its term, the term's start (since: the term
// row's wall-clock ms, written by the process that took the term, before it
// began to act) and the instant the process made the answer (at: its wall
// clock, read before it looked at its role; the bridges run on the test's
// host, so all three share one clock). A claim says: at `at` or a little
// later, this process held this term.
//
// check() asserts:
//  * a term is claimed by one process, and a process claims one term;
//  * terms only grow: a newer term began later, and along the time line of
//    the claims the term never goes down;
//  * no two terms overlap: no process claims a term at an instant after the
//    next term began (a process that did would have acted beside the next
//    active, a split brain).
// Two answers of 200 in one sample are not in themselves two actives: the
// older one may have been made before a kill and the newer after the
// takeover. check() says which, with the instants.
import assert from 'node:assert/strict';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const iso = (ms) => new Date(ms).toISOString();

export class RoleTimeline {
  constructor(stack, { intervalMs = 100 } = {}) {
    this.stack = stack;
    this.intervalMs = intervalMs;
    this.claims = [];
    this.samples = 0;
    this.bothActive = [];
    this.kills = [];
    this.running = false;
  }

  /** Asks both role endpoints at once; records and returns {a, b}. */
  async sample() {
    const [a, b] = await Promise.all([this.stack.role('a'), this.stack.role('b')]);
    this.samples++;
    for (const [proc, r] of [['a', a], ['b', b]]) {
      if (r.status !== 200) continue;
      assert.ok(Number.isInteger(r.term) && Number.isInteger(r.since) && Number.isInteger(r.at),
        `the role answer of ${proc} carries term, since and at: ${JSON.stringify(r)}`);
      this.claims.push({ proc, instance: r.instance, term: r.term, since: r.since, at: r.at });
    }
    if (a.status === 200 && b.status === 200) this.bothActive.push({ a, b });
    return { a, b };
  }

  /** Samples in the background until stop(). */
  start() {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        await this.sample();
        await sleep(this.intervalMs);
      }
    })();
  }

  async stop() {
    this.running = false;
    await this.loop;
  }

  /** Notes that the test killed proc (SIGKILL) at the wall-clock instant at: the end of its term. */
  noteKill(proc, at) {
    this.kills.push({ proc, at });
  }

  /** The terms seen, oldest first: {term, proc, instance, since, first, last, killed}. */
  terms() {
    const byTerm = new Map();
    for (const c of this.claims) {
      const t = byTerm.get(c.term) ?? { term: c.term, proc: c.proc, instances: new Set(), since: c.since, first: c.at, last: c.at };
      t.instances.add(c.instance);
      t.first = Math.min(t.first, c.at);
      t.last = Math.max(t.last, c.at);
      byTerm.set(c.term, t);
    }
    const terms = [...byTerm.values()].sort((x, y) => x.term - y.term);
    for (const t of terms) {
      t.instance = [...t.instances].join(', ');
      t.killed = this.kills.find((k) => k.proc === t.proc && k.at >= t.first)?.at;
    }
    return terms;
  }

  /** The time line, one line per term, for a failure message. */
  describe() {
    return this.terms().map((t) =>
      `  term ${t.term}: ${t.proc} (${t.instance}) from ${iso(t.since)}, claimed ${iso(t.first)} … ${iso(t.last)}` +
      (t.killed ? `, killed ${iso(t.killed)}` : '')).join('\n');
  }

  /** Asserts the rules above; returns a summary for the test's output. */
  check() {
    const terms = this.terms();
    const timeline = () => `\nthe role time line:\n${this.describe()}`;
    const instanceTerms = new Map();
    for (const c of this.claims) instanceTerms.set(c.instance, new Set([...(instanceTerms.get(c.instance) ?? []), c.term]));
    for (const t of terms) {
      assert.equal(t.instances.size, 1, `term ${t.term} was claimed by more than one process (${t.instance})${timeline()}`);
      assert.ok(this.claims.filter((c) => c.term === t.term).every((c) => c.since === t.since), `term ${t.term} has one start${timeline()}`);
    }
    for (const [instance, set] of instanceTerms) {
      assert.equal(set.size, 1, `the process ${instance} claimed more than one term (${[...set].join(', ')})${timeline()}`);
    }
    for (let i = 1; i < terms.length; i++) {
      const [older, newer] = [terms[i - 1], terms[i]];
      assert.ok(newer.since >= older.since, `terms only grow: term ${newer.term} began at ${iso(newer.since)}, before term ${older.term} (${iso(older.since)})${timeline()}`);
      // at and since are whole milliseconds: at > since means the claim was
      // made strictly after the next term began.
      assert.ok(older.last <= newer.since,
        `split brain: ${older.proc} claimed term ${older.term} at ${iso(older.last)}, ${older.last - newer.since} ms after term ${newer.term} began on ${newer.proc} at ${iso(newer.since)}${timeline()}`);
    }
    const byInstant = [...this.claims].sort((x, y) => x.at - y.at || x.term - y.term);
    for (let i = 1; i < byInstant.length; i++) {
      const [earlier, later] = [byInstant[i - 1], byInstant[i]];
      assert.ok(later.term >= earlier.term,
        `terms only grow: ${later.proc} claimed term ${later.term} at ${iso(later.at)}, after ${earlier.proc} had claimed term ${earlier.term} at ${iso(earlier.at)}${timeline()}`);
    }
    // Both answered 200 in one sample: by the rules above, the older answer
    // was made before the newer term began; say by how much.
    const between = this.bothActive.map(({ a, b }) => {
      const [older, newer] = a.term < b.term ? [a, b] : [b, a];
      return `term ${older.term} answered at ${iso(older.at)}, term ${newer.term} began at ${iso(newer.since)} (${newer.since - older.at} ms later)`;
    });
    return { terms: terms.length, samples: this.samples, claims: this.claims.length, bothActive: between };
  }
}
