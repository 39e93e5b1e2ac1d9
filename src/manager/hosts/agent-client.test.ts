import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TernError } from '../../errors.ts';
import { emptyGuestInfo } from '../../wire/vm.ts';
import { AgentClient } from './agent-client.ts';

const id = '0b6c2d1e-1f2a-4b3c-8d4e-5f6a7b8c9d0e';
const vm = {
  id,
  name: 'web-1',
  state: 'running',
  reason: null,
  pid: 42,
  vncPort: null,
  startedAt: null,
  guest: emptyGuestInfo(),
};

/** An agent answering every request with `answer`, remembering what it was asked. */
function agentAnswering(answer: unknown) {
  const asked: string[] = [];
  const client = new AgentClient('https://agent.test/', async (url, init) => {
    asked.push(`${init?.method} ${url}`);
    return new Response(JSON.stringify(answer), { headers: { 'content-type': 'application/json' } });
  });
  return { client, asked };
}

test('requests are built from the declared routes', async () => {
  const { client, asked } = agentAnswering({ vm });
  await client.act(id, 'reset');
  await client.getVm(id);
  assert.deepEqual(asked, [
    `POST https://agent.test/agent/v1/vms/${id}/actions/reset`,
    `GET https://agent.test/agent/v1/vms/${id}`,
  ]);
  const volumes = agentAnswering(undefined);
  await volumes.client.deleteVolume({ pool: 'local', path: 'vms/a b/disk0.qcow2' }).catch(() => {});
  assert.deepEqual(volumes.asked, [
    'DELETE https://agent.test/agent/v1/volumes?pool=local&path=vms%2Fa+b%2Fdisk0.qcow2',
  ]);
});

test('an answer the protocol does not allow is a protocol error, not a wrong value read later', async () => {
  const { client } = agentAnswering({ vms: [{ ...vm, state: 'dancing' }] });
  await assert.rejects(
    client.listVms(),
    (e: unknown) =>
      e instanceof TernError &&
      e.code === 'protocol_error' &&
      /answered GET \/agent\/v1\/vms with what the protocol does not allow: \/vms\/0\/state/.test(e.message),
  );
  assert.equal((await agentAnswering({ vms: [vm] }).client.listVms())[0].name, 'web-1');
});
