/**
 * Honest power actions against a simulated host, through the CLI as a user runs them: a reboot
 * is done only when the host has seen the guest boot again and its guest agent answer again; a
 * guest whose power-off is broken (a systemd guest without logind) makes reboot and shutdown
 * fail with the guest agent's own message, and `--force` resets it.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { SimDriver } from '../src/agent/sim/driver.ts';
import type { Vm } from '../src/wire/vm.ts';
import { runTern, type TestApi } from './harness.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

const bootDelayMs = 300;
let cluster: SimCluster;
let api: TestApi;
const tern = (...args: string[]) => runTern(args, { env: api.cliEnv });
const vm = (name: string) => api.request<Vm>('GET', `/api/v1/vms/${name}`);
const driverOf = (v: Vm): SimDriver => cluster.sim.host(v.host!).driver;
const consoleOf = async (name: string) =>
  (await api.request<{ text: string }>('GET', `/api/v1/vms/${name}/console`)).text;

before(async () => {
  cluster = await startSimCluster(1, { driver: { bootDelayMs } });
  api = cluster.api;
  const t = await api.task('POST', '/api/v1/vms', { name: 'p1', template: 'sim', start: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await api.waitVm('p1', (v) => v.guest.agent === 'responding', 10_000, 'booted');
});

after(async () => {
  await cluster?.close();
});

test('vm reboot ends when the guest has booted again and its agent answers, and says so', async () => {
  const before = await vm('p1');
  assert.equal(before.guest.boots, 1);
  const started = Date.now();
  const r = await tern('vm', 'reboot', 'p1');
  assert.equal(r.code, 0, r.stderr);
  // The guest takes the boot delay to come back: a reboot reported at once did not see it.
  assert.ok(Date.now() - started >= bootDelayMs, `done after ${Date.now() - started} ms`);
  assert.match(
    r.stdout,
    /^p1 rebooted through its guest agent: a new boot seen and its guest agent answering after [\d.]+ s\n$/,
  );
  const after = await vm('p1');
  assert.equal(after.state, 'running');
  assert.equal(after.guest.boots, 2);
  assert.equal(after.guest.agent, 'responding');
  assert.match(await consoleOf('p1'), /TERN-GUEST-READY hostname=p1 instance=\S+ boot=2/);
  assert.notEqual(after.guest.bootId, before.guest.bootId);
  const show = await tern('vm', 'show', 'p1');
  assert.match(show.stdout, /^boots seen: +2$/m);
  assert.match(show.stdout, new RegExp(`^guest boot id: +${after.guest.bootId}$`, 'm'));
});

test("a guest whose agent cannot power off: reboot fails with the agent's message, shutdown names it, --force resets", async () => {
  const v = await vm('p1');
  const boots = v.guest.boots;
  driverOf(v).setGuestPowerOffFails(v.id, 'child process has failed to shutdown');
  try {
    const reboot = await tern('vm', 'reboot', 'p1');
    assert.equal(reboot.code, 1);
    assert.match(
      reboot.stderr,
      /p1 did not reboot: guest agent error: child process has failed to shutdown; use --force to reset the VM/,
    );
    assert.doesNotMatch(reboot.stdout, /rebooted/);

    const shutdown = await tern('vm', 'shutdown', 'p1', '--timeout', '2');
    assert.equal(shutdown.code, 1);
    assert.match(
      shutdown.stderr,
      /did not shut down within 2 s: no reaction to the ACPI power button, and its guest agent could not \(guest agent error: child process has failed to shutdown\); use --force/,
    );
    const still = await vm('p1');
    assert.equal(still.state, 'running');
    assert.equal(still.guest.boots, boots, 'no reboot happened');

    const forced = await tern('vm', 'reboot', 'p1', '--force');
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(
      forced.stdout,
      /^p1 rebooted by a hard reset: a new boot seen and its guest agent answering after/,
    );
    const back = await vm('p1');
    assert.equal(back.guest.agent, 'responding');
    assert.equal(back.guest.boots, boots + 1);
  } finally {
    driverOf(v).setGuestPowerOffFails(v.id, null);
  }
});

test('a reboot without an answering guest agent or of a paused VM is refused with the fix; the API bounds the wait', async () => {
  const v = await vm('p1');
  driverOf(v).setGuestHung(v.id, true);
  try {
    await api.waitVm('p1', (x) => x.guest.agent === 'not-responding', 10_000, 'its agent silent');
    const r = await tern('vm', 'reboot', 'p1');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /guest agent of p1 does not answer.*use --force to reset the VM/);
    // A reset of a guest whose agent stays silent is done at the new boot: there was no agent to wait for.
    const forced = await api.task('POST', '/api/v1/vms/p1/reboot', { force: true, timeoutSeconds: 30 });
    assert.equal(forced.state, 'succeeded', JSON.stringify(forced.error));
    assert.deepEqual(
      { ...(forced.result as object), seconds: 0 },
      { method: 'reset', boots: v.guest.boots + 1, guestAgent: false, seconds: 0 },
    );
  } finally {
    driverOf(v).setGuestHung(v.id, false);
  }
  const paused = await api.task('POST', '/api/v1/vms/p1/pause');
  assert.equal(paused.state, 'succeeded', JSON.stringify(paused.error));
  const refused = await api.task('POST', '/api/v1/vms/p1/reboot', { force: true });
  assert.equal(refused.state, 'failed');
  assert.match(refused.error?.message ?? '', /VM p1 is paused: resume it to reboot it/);
  assert.equal((await api.task('POST', '/api/v1/vms/p1/resume')).state, 'succeeded');
  await api.waitVm('p1', (x) => x.guest.agent === 'responding', 10_000, 'its agent back');
  const bad = await api.raw('POST', '/api/v1/vms/p1/reboot', {
    body: JSON.stringify({ timeoutSeconds: 0 }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(bad.status, 400);
});

test('a guest that reboots but whose agent does not come back fails the reboot at its timeout, saying so', async () => {
  const v = await vm('p1');
  const driver = driverOf(v);
  // The moment the guest goes down for its reboot, its next boot is made to come up without an agent.
  const onVm = (x: { id: string; guest: { boots: number } }) => {
    if (x.id !== v.id || x.guest.boots <= v.guest.boots) return;
    driver.events.off('vm', onVm);
    driver.setGuestHung(v.id, true);
  };
  driver.events.on('vm', onVm);
  try {
    const t = await api.task('POST', '/api/v1/vms/p1/reboot', { timeoutSeconds: 2 });
    assert.equal(t.state, 'failed');
    assert.equal(t.error?.message, 'p1 booted again but its guest agent did not answer within 2 s');
  } finally {
    driver.events.off('vm', onVm);
    driver.setGuestHung(v.id, false);
  }
  await api.waitVm('p1', (x) => x.guest.agent === 'responding', 10_000, 'its agent back');
});
