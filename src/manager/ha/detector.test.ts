import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type DetectorInput,
  detect,
  detectHost,
  failAfterMs,
  type HostSignals,
  silentAfterMs,
} from './detector.ts';

// T_fence 30 s: silent after 15 s, failed after 30 + 7.5 s.
const T = 30;
const FAIL = 33_000;
const START = 1_000_000;

const at = (nowMs: number, hosts: HostSignals[], over: Partial<DetectorInput> = {}): DetectorInput => ({
  nowMs,
  timeoutS: T,
  watchingSinceMs: START,
  statefileReadAtMs: nowMs - 500,
  hosts,
  ...over,
});

const one = (nowMs: number, net: number | null, lease: number | null, over: Partial<DetectorInput> = {}) =>
  detectHost({ hostId: 'h', networkOkAtMs: net, leaseOkAtMs: lease }, at(nowMs, [], over));

test('T_fail is T_fence plus the larger of 2 s and 10%', () => {
  assert.equal(failAfterMs(10), 12_000);
  assert.equal(failAfterMs(20), 22_000);
  assert.equal(failAfterMs(30), FAIL);
  assert.equal(failAfterMs(600), 660_000);
  assert.equal(silentAfterMs(30), 15_000);
  for (const t of [10, 11, 29, 30, 120, 600]) assert.ok(failAfterMs(t) - t * 1000 >= 2000);
});

test('both signals fresh: healthy', () => {
  const now = START + 100_000;
  const d = one(now, now - 2000, now - 3000);
  assert.equal(d.state, 'healthy');
  assert.equal(d.networkSilentMs, 2000);
  assert.equal(d.leaseSilentMs, 2500); // up to the last read, not now
  assert.equal(d.failAtMs, null);
});

test('network silent, lease renewed: isolated, however long', () => {
  const now = START + 1_000_000;
  assert.equal(one(now, now - 15_000, now - 1000).state, 'isolated');
  assert.equal(one(now, now - 14_999, now - 1000).state, 'healthy');
  assert.equal(one(now, now - 900_000, now - 1000).state, 'isolated');
});

test('lease silent, network fine: storage-lost', () => {
  const now = START + 1_000_000;
  const d = one(now, now - 1000, now - 600_000);
  assert.equal(d.state, 'storage-lost');
  assert.equal(d.failAtMs, null);
});

test('both silent: suspect until both reach T_fail, then failed', () => {
  const lost = START + 500_000;
  const at = (now: number) => one(now, lost, lost);
  assert.equal(at(lost + 14_999).state, 'healthy');
  assert.equal(at(lost + 15_000 + 500).state, 'suspect');
  assert.equal(at(lost + 15_000 + 500).failAtMs, lost + FAIL);
  // The last read started 500 ms ago: it must itself be T_fail after the last change.
  assert.equal(at(lost + FAIL).state, 'suspect');
  assert.equal(at(lost + FAIL + 499).state, 'suspect');
  const failed = at(lost + FAIL + 500);
  assert.equal(failed.state, 'failed');
  assert.equal(failed.failAtMs, lost + FAIL);
});

test('failed needs both signals silent for T_fail: the later one counts', () => {
  const now = START + 500_000;
  assert.equal(one(now, now - 100_000, now - FAIL - 500).state, 'failed');
  assert.equal(one(now, now - 100_000, now - FAIL).state, 'suspect'); // read 500 ms ago
  assert.equal(one(now, now - FAIL + 1, now - 100_000).state, 'suspect');
  assert.equal(one(now, now - FAIL + 1, now - 100_000).failAtMs, now + 1);
});

test('a manager that just started declares nothing failed before watching for T_fail', () => {
  // Its first read saw the host's lease (unchanged since: the host is dead), its heartbeat never
  // came: silence counts from the start, not from zero.
  assert.equal(one(START + 20_000, null, START).state, 'suspect');
  assert.equal(one(START + FAIL, null, START).state, 'suspect');
  assert.equal(one(START + FAIL + 500, null, START).state, 'failed');
  // Observations older than the start (a previous leader's) do not count either.
  assert.equal(one(START + 10_000, START - 600_000, START - 600_000).state, 'healthy');
});

test('a host whose lease was never seen is never failed: it may not be enforcing HA', () => {
  // E.g. HA just turned on and the host never got its duties (its heartbeats fail).
  const d = one(START + 600_000, null, null);
  assert.equal(d.state, 'suspect');
  assert.equal(d.failAtMs, null);
  assert.equal(one(START + 600_000, START + 1000, null).state, 'suspect');
});

test('a host that enforces a longer timeout than the setting is failed by its own', () => {
  const lost = START + 500_000;
  const d = (now: number) =>
    detectHost(
      { hostId: 'h', networkOkAtMs: lost, leaseOkAtMs: lost, timeoutS: 60 },
      at(now, [], { timeoutS: 10, statefileReadAtMs: now }),
    );
  assert.equal(d(lost + failAfterMs(10)).state, 'suspect');
  assert.equal(d(lost + failAfterMs(60) - 1).state, 'suspect');
  assert.equal(d(lost + failAfterMs(60)).state, 'failed');
});

test('a manager that cannot read the statefile takes no lease for silent', () => {
  const now = START + 1_000_000;
  const lost = now - 600_000;
  // Its own storage path is down: the last read that worked was long ago.
  const stale = one(now, lost, lost, { statefileReadAtMs: lost + 2000 });
  assert.equal(stale.state, 'isolated');
  assert.equal(stale.leaseSilentMs, 2000);
  // Never read since it started: no lease is known silent at all.
  assert.equal(one(now, lost, lost, { statefileReadAtMs: null }).state, 'isolated');
});

test('a frozen manager does not wake up to declare hosts failed', () => {
  // Heard everything until it froze for 10 minutes; its last read was before the freeze.
  const frozeAt = START + 100_000;
  const now = frozeAt + 600_000;
  const d = one(now, frozeAt - 1000, frozeAt - 1000, { statefileReadAtMs: frozeAt - 500 });
  assert.notEqual(d.state, 'failed');
  assert.notEqual(d.state, 'suspect');
});

test('two hosts, the link between them drops: neither failed, both still renew', () => {
  // The manager runs next to host a; b is cut off from a and from the manager, not from storage.
  const now = START + 1_000_000;
  const r = detect(
    at(now, [
      { hostId: 'a', networkOkAtMs: now - 1000, leaseOkAtMs: now - 2000 },
      { hostId: 'b', networkOkAtMs: now - 300_000, leaseOkAtMs: now - 2000 },
    ]),
  );
  assert.deepEqual(
    r.map((d) => [d.hostId, d.state]),
    [
      ['a', 'healthy'],
      ['b', 'isolated'],
    ],
  );
  assert.ok(r.every((d) => d.state !== 'failed'));
});

test('10 s timeout: failed after 12 s of silence on both', () => {
  const lost = START + 500_000;
  const d = (now: number) => one(now, lost, lost, { timeoutS: 10, statefileReadAtMs: now });
  assert.equal(d(lost + 4_999).state, 'healthy');
  assert.equal(d(lost + 5_000).state, 'suspect');
  assert.equal(d(lost + 11_999).state, 'suspect');
  assert.equal(d(lost + 12_000).state, 'failed');
});

test('silentAfterMs can be set, but never above T_fail', () => {
  const lost = START + 500_000;
  assert.equal(one(lost + 3000, lost, lost - 10_000, { silentAfterMs: 2000 }).state, 'suspect');
  assert.equal(one(lost + FAIL + 500, lost, lost, { silentAfterMs: 10 ** 9 }).state, 'failed');
});
