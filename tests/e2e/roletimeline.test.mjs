// The check of lib/roletimeline.mjs on scripted role answers (no stack): a
// kill between two answers is not two actives; a process that claims its
// term after the next one began is, and the failure says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RoleTimeline } from './lib/roletimeline.mjs';

const T0 = Date.UTC(2026, 11, 7, 12);
const active = (term, since, at, instance) => ({ status: 200, role: 'active', term, since, at, instance });
const standby = (at, instance) => ({ status: 503, role: 'standby', at, instance });

/** A timeline over a stack whose role endpoints answer from a script of {a, b} samples. */
async function replay(samples) {
  let sample;
  const timeline = new RoleTimeline({ role: async (proc) => sample[proc] });
  for (sample of samples) await timeline.sample();
  return timeline;
}

test('a kill between the two answers of one sample is not two actives', async () => {
  const timeline = await replay([
    { a: active(1, T0, T0 + 1000, 'host/1'), b: standby(T0 + 1000, 'host/2') },
    // a answered before its kill, b after its takeover at T0 + 2100.
    { a: active(1, T0, T0 + 2000, 'host/1'), b: active(2, T0 + 2100, T0 + 2300, 'host/2') },
    { a: { status: 0 }, b: active(2, T0 + 2100, T0 + 2400, 'host/2') },
  ]);
  const summary = timeline.check();
  assert.equal(summary.terms, 2);
  assert.equal(summary.bothActive.length, 1);
  assert.match(summary.bothActive[0], /term 2 began at .* \(100 ms later\)/);
});

test('a term claimed after the next term began is a split brain', async () => {
  const timeline = await replay([
    { a: active(1, T0, T0 + 1000, 'host/1'), b: standby(T0 + 1000, 'host/2') },
    { a: active(1, T0, T0 + 2200, 'host/1'), b: active(2, T0 + 2100, T0 + 2200, 'host/2') },
  ]);
  assert.throws(() => timeline.check(), /split brain: a claimed term 1 at .*, 100 ms after term 2 began on b/);
});

test('a stale claim in a later sample is a split brain too, and terms must only grow', async () => {
  const timeline = await replay([
    { a: standby(T0 + 1000, 'host/1'), b: active(2, T0 + 900, T0 + 1000, 'host/2') },
    { a: active(1, T0, T0 + 1500, 'host/1'), b: { status: 0 } },
  ]);
  assert.throws(() => timeline.check(), /split brain/);
});

test('one term, one process; one process, one term', async () => {
  const twoHolders = await replay([
    { a: active(3, T0, T0 + 10, 'host/1'), b: active(3, T0, T0 + 10, 'host/2') },
  ]);
  assert.throws(() => twoHolders.check(), /term 3 was claimed by more than one process/);
  const twoTerms = await replay([
    { a: active(3, T0, T0 + 10, 'host/1'), b: standby(T0 + 10, 'host/2') },
    { a: active(4, T0 + 20, T0 + 30, 'host/1'), b: standby(T0 + 30, 'host/2') },
  ]);
  assert.throws(() => twoTerms.check(), /the process host\/1 claimed more than one term/);
});

test('an answer without its instants is refused', async () => {
  await assert.rejects(replay([{ a: { status: 200, role: 'active', term: 1, instance: 'old' }, b: standby(T0, 'host/2') }]), /carries term, since and at/);
});
