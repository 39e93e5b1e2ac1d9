import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emptyGuestInfo, type GuestInfo, type Vm } from '../../wire/vm.ts';
import { isWindows, leftIdentity, planSeal, sealedOs, sharedIdentityRisk } from './generalize.ts';

const linux = { id: 'debian', name: 'Debian GNU/Linux', kernelRelease: '6.1.0-18-amd64' };
const windows = { id: 'mswindows', name: 'Microsoft Windows', prettyName: 'Windows Server 2022' };

function vm(state: Vm['state'], guest: Partial<GuestInfo> = {}): Pick<Vm, 'name' | 'state' | 'guest'> {
  return { name: 'gold', state, guest: { ...emptyGuestInfo(), ...guest } };
}

const answering = { agent: 'responding' as const, os: linux };

test('a running Linux VM whose guest agent answers is generalized through it', () => {
  assert.deepEqual(planSeal(vm('running', answering), false), { method: 'guest-agent' });
  assert.deepEqual(planSeal(vm('running', answering), true), { method: 'guest-agent' });
});

test('a stopped VM is refused with the way out, or sealed as it is with force and the risk', () => {
  assert.throws(
    () => planSeal(vm('stopped', { os: linux }), false),
    (e: Error & { code: string }) =>
      e.code === 'conflict' &&
      /VM gold is stopped/.test(e.message) &&
      /start the VM so its guest agent can generalize it, or use --force to seal it as it is/.test(e.message),
  );
  assert.deepEqual(planSeal(vm('stopped'), true), { method: 'none', risk: sharedIdentityRisk });
});

test('a running VM whose guest agent does not answer is refused unless forced', () => {
  for (const agent of ['not-responding', 'unknown'] as const) {
    assert.throws(
      () => planSeal(vm('running', { agent, os: linux }), false),
      /guest agent of VM gold does not/,
    );
    assert.deepEqual(planSeal(vm('running', { agent }), true).method, 'none');
  }
});

test('Windows is refused with sysprep as the fix, running or stopped, unless forced', () => {
  for (const state of ['running', 'stopped'] as const) {
    assert.throws(
      () => planSeal(vm(state, { agent: 'responding', os: windows }), false),
      /runs Windows.*sysprep \/generalize \/oobe \/shutdown.*then seal it with --force/,
    );
    assert.deepEqual(planSeal(vm(state, { agent: 'responding', os: windows }), true), {
      method: 'none',
      risk: sharedIdentityRisk,
    });
  }
  assert.equal(isWindows({ name: 'Microsoft Windows' }), true);
  assert.equal(isWindows(linux), false);
  assert.equal(isWindows(null), false);
});

test('a VM made from a Windows template is refused even before its guest agent ever reported', () => {
  assert.throws(() => planSeal(vm('stopped'), false, 'windows'), /runs Windows.*sysprep/);
  assert.throws(() => planSeal(vm('running', { agent: 'responding' }), false, 'windows'), /sysprep/);
  assert.deepEqual(planSeal(vm('running', answering), false, 'linux'), { method: 'guest-agent' });
});

test('the sealed template says Linux once generalized, Windows when the guest said so, else its own', () => {
  const none = { method: 'none', risk: sharedIdentityRisk } as const;
  assert.equal(sealedOs({ method: 'guest-agent' }, linux, null), 'linux');
  assert.equal(sealedOs(none, windows, null), 'windows');
  assert.equal(sealedOs(none, null, 'windows'), 'windows');
  assert.equal(sealedOs(none, null, null), null);
});

test('a VM in between (paused, unreachable, creating) is refused even with force', () => {
  for (const state of ['paused', 'unreachable', 'creating', 'crashed', 'unknown'] as const)
    assert.throws(() => planSeal(vm(state, answering), true), new RegExp(`VM gold is ${state}`));
});

test('what the guest shows after generalizing: only an empty machine id and no host key pass', () => {
  assert.deepEqual(leftIdentity('machine-id-bytes=0\n'), []);
  assert.deepEqual(leftIdentity('machine-id-bytes=33\n'), ['/etc/machine-id still holds 33 bytes']);
  assert.deepEqual(leftIdentity('machine-id-bytes=\n'), ['/etc/machine-id is missing']);
  assert.deepEqual(leftIdentity(''), ['the guest did not report /etc/machine-id']);
  assert.deepEqual(
    leftIdentity(
      'machine-id-bytes=0\nhost-key=/etc/ssh/ssh_host_ed25519_key\nhost-key=/etc/ssh/ssh_host_rsa_key\ndbus-machine-id=file\n',
    ),
    [
      'SSH host keys left: /etc/ssh/ssh_host_ed25519_key, /etc/ssh/ssh_host_rsa_key',
      '/var/lib/dbus/machine-id is left',
    ],
  );
  // Untrusted output stays bounded in what it puts into a message.
  const [long] = leftIdentity(`machine-id-bytes=${'9'.repeat(10_000)}\n`);
  assert.ok(long.length < 100);
});
