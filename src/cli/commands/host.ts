/** `tern host …`: the hosts of the cluster, how they join and leave, maintenance. */
import { TernError } from '../../errors.ts';
import type { Host, JoinToken } from '../../wire/host.ts';
import type { Task } from '../../wire/task.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { byName } from '../names.ts';
import { ago, bytes, mib, printFields, printJson, printTable } from '../output.ts';
import { waitForTask } from '../progress.ts';

const enc = encodeURIComponent;
const usage =
  'usage: tern host list | show NAME | add NAME | remove NAME | maintenance on|off NAME [--stop-unmovable]';

export async function hostCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  if (sub === 'list' || sub === undefined) {
    const items = byName((await api.request<{ items: Host[] }>('GET', '/api/v1/hosts')).items);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'STATE', 'ACCEL', 'CORES', 'MEMORY', 'VMS', 'LAST SEEN', 'ADDRESS'],
      items.map((h) => [
        h.name,
        h.state,
        h.facts?.accelerator,
        h.facts?.cores,
        h.facts ? mib(h.facts.memoryMiB) : null,
        h.vmCount,
        ago(h.lastSeen),
        h.address,
      ]),
    );
  }
  const name = args[0];
  if (sub === 'show' && name) {
    const h = await api.request<Host>('GET', `/api/v1/hosts/${enc(name)}`);
    if (flags.output === 'json') return printJson(h);
    return printFields([
      ['name', h.name],
      ['state', h.state],
      ['address', h.address],
      ['last seen', h.lastSeen],
      ['joined', h.joinedAt],
      [
        'certificate',
        h.certificate ? `${h.certificate.fingerprint} (expires ${h.certificate.expiresAt})` : null,
      ],
      [
        'cpu',
        h.facts ? `${h.facts.cpuModel} (${h.facts.cpuVendor}, ${h.facts.cpuFlags.length} flags)` : null,
      ],
      ['cores', h.facts?.cores],
      ['memory', h.facts ? mib(h.facts.memoryMiB) : null],
      ['accelerator', h.facts ? `${h.facts.accelerator} (${h.facts.acceleratorReason})` : null],
      [
        'pools',
        h.facts?.pools
          .map((p) => `${p.name} ${p.path} (${p.shared ? 'shared' : 'local'}, ${bytes(p.freeBytes)} free)`)
          .join(', '),
      ],
      [
        'versions',
        h.facts
          ? Object.entries(h.facts.versions)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ')
          : null,
      ],
      ['vms', h.vmCount],
    ]);
  }
  if (sub === 'add' && name) {
    const t = await api.request<JoinToken>('POST', '/api/v1/hosts', { name });
    if (flags.output === 'json') return printJson(t);
    process.stdout.write(
      `Join token for host ${t.host} (single use, expires ${t.expiresAt}).\nOn the host, run:\n\n  ${t.command}\n\nThe agent trusts only the cluster CA ${t.caFingerprint}.\n`,
    );
    return;
  }
  if (sub === 'remove' && name) {
    await api.request('DELETE', `/api/v1/hosts/${enc(name)}`);
    if (flags.output !== 'json') process.stdout.write(`host ${name} removed; its certificate is revoked\n`);
    return;
  }
  if (sub === 'maintenance' && (args[0] === 'on' || args[0] === 'off') && args[1]) {
    const host = args[1];
    if (args[0] === 'off') {
      const h = await api.request<Host>('DELETE', `/api/v1/hosts/${enc(host)}/maintenance`);
      if (flags.output === 'json') return printJson(h);
      process.stdout.write(`host ${h.name} is ${h.state}\n`);
      return;
    }
    const r = await api.request<{ task: Task }>('POST', `/api/v1/hosts/${enc(host)}/maintenance`, {
      stopUnmovable: flags['stop-unmovable'],
    });
    if (flags['no-wait']) {
      process.stdout.write(`task ${r.task.id} (${r.task.kind}) accepted\n`);
      return;
    }
    const done = await waitForTask(api, r.task, flags.output === 'json');
    const result = done.result as { moved: string[]; stopped: string[] } | null;
    if (flags.output === 'json') return printJson(done);
    process.stdout.write(
      `host ${host} is in maintenance: ${result?.moved.length ?? 0} VM(s) migrated away${
        result?.stopped.length ? `, stopped: ${result.stopped.join(', ')}` : ''
      }\n`,
    );
    return;
  }
  throw new TernError('invalid_request', usage);
}
