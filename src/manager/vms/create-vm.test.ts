import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TernError } from '../../errors.ts';
import { type CreateVmDeps, createVm } from './create-vm.ts';

/** Services that record what was done and undone; the task engine refuses the task. */
function services(log: string[]): CreateVmDeps {
  return {
    placer: {
      snapshot: async () => ({ hosts: [], facts: new Map() }),
      chooseStopped: async () => 'host-1',
      release: (id: string) => log.push(`release ${id.length}`),
    },
    projects: { choose: async () => null },
    networks: { freeMac: async () => '02:74:6e:00:00:01', release: () => {} },
    networkSync: { settled: async () => {} },
    store: {
      insert: async (row: { name: string }) => {
        log.push(`insert ${row.name}`);
        return { name: row.name };
      },
      remove: async () => log.push('remove'),
    },
    secrets: {
      put: async () => log.push('secret'),
      removeFor: async () => log.push('secrets removed'),
    },
    tasks: {
      submit: async () => {
        throw new TernError('unavailable', 'the manager is shutting down');
      },
    },
    kinds: { vmCreate: { kind: 'vm.create' } },
  } as unknown as CreateVmDeps;
}

test('a creation refused at its task leaves nothing behind: room, secret and row are undone', async () => {
  const log: string[] = [];
  const who = { userId: null, seesAllVms: true, member: async () => null };
  await assert.rejects(
    createVm(services(log), { name: 'web-1', diskGiB: 1, userData: '#cloud-config\n' } as never, who),
    /shutting down/,
  );
  assert.deepEqual(log, ['insert web-1', 'secret', 'release 36', 'secrets removed', 'remove']);
});

test('self-service users may not ask for placement groups or bridges', async () => {
  const log: string[] = [];
  const who = { userId: 'u1', seesAllVms: false, member: async () => null };
  await assert.rejects(
    createVm(services(log), { name: 'web-1', groups: ['g'] } as never, who),
    /operator work/,
  );
  assert.deepEqual(log, []);
});
