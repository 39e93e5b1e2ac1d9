/** What `tern vm create` asks for, read from its flags, and `--explain`: where it would go. */
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import { clusterRoutes } from '../../wire/api/cluster.ts';
import { templateRoutes } from '../../wire/api/templates.ts';
import type { CreateVmRequest, NicRequest } from '../../wire/vm.ts';
import type { ApiClient } from '../client.ts';
import { type Flags, oneOf } from '../flags.ts';
import { printJson } from '../output.ts';
import { parseSize } from '../sizes.ts';
import { printExplanation } from './migration.ts';

/**
 * One `--nic`: `user`, `bridge:BR` (a host bridge), or a managed network
 * `NETWORK[,ip=IP][,mac=MAC][,group=G]` (also spelt `network:NETWORK,…`).
 */
export function parseNic(text: string): NicRequest {
  if (text === 'user') return { mode: 'user' };
  if (/^bridge[:=]/.test(text)) return { mode: 'bridge', bridge: text.replace(/^bridge[:=]/, '') };
  const [first = '', ...options] = text.split(',');
  const nic: NicRequest & { mode: 'network' } = {
    mode: 'network',
    network: first.replace(/^network[:=]/, ''),
  };
  for (const o of options) {
    const [key, value, extra] = o.split('=');
    if (!value || extra !== undefined || (key !== 'ip' && key !== 'mac' && key !== 'group'))
      throw new TernError('invalid_request', `--nic ${text}: ${o} is not ip=IP, mac=MAC or group=G`);
    nic[key] = value;
  }
  if (!nic.network) throw new TernError('invalid_request', `--nic ${text}: which network?`);
  return nic;
}

export function createBody(flags: Flags): Omit<CreateVmRequest, 'name'> {
  const body: Omit<CreateVmRequest, 'name'> = {};
  if (flags.project) body.project = flags.project;
  if (flags.template) body.template = flags.template;
  if (flags.image) body.image = flags.image;
  if (flags.isoImage) body.iso = flags.isoImage;
  if (flags.firmware) body.firmware = oneOf(flags.firmware, ['bios', 'uefi'] as const, '--firmware');
  if (flags.boot) body.bootOrder = oneOf(flags.boot, ['cd', 'disk'] as const, '--boot');
  if (flags.full) body.full = true;
  if (flags.pool) body.pool = flags.pool;
  if (flags['cpu-mode']) {
    if (flags['cpu-mode'] !== 'compat' && flags['cpu-mode'] !== 'host')
      throw new TernError('invalid_request', '--cpu-mode is compat or host');
    body.cpuMode = flags['cpu-mode'];
  }
  if (flags.group.length > 0) body.groups = flags.group;
  if (flags.vcpus) body.vcpus = Number(flags.vcpus);
  if (flags.memory) body.memoryMiB = Math.round(parseSize(flags.memory, 'M', '--memory'));
  if (flags.disk) body.diskGiB = parseSize(flags.disk, 'G', '--disk') / 1024;
  if (flags['extra-disk'].length > 0) {
    body.extraDisksGiB = flags['extra-disk'].map((d) => parseSize(d, 'G', '--extra-disk') / 1024);
  }
  if (flags.nic.length > 0) body.nics = flags.nic.map(parseNic);
  if (flags.ip) {
    body.ip = { address: flags.ip, ...(flags.gateway ? { gateway: flags.gateway } : {}) };
    if (flags.dns.length > 0) body.ip.dns = flags.dns;
  } else if (flags.gateway || flags.dns.length > 0) {
    throw new TernError('invalid_request', '--gateway and --dns go with --ip');
  }
  if (flags['user-data']) {
    try {
      body.userData = fs.readFileSync(flags['user-data'], 'utf8');
    } catch (err) {
      throw new TernError('invalid_request', `cannot read --user-data: ${(err as Error).message}`);
    }
  }
  if (flags.start) body.start = true;
  return body;
}

/** Where `tern vm create` would put the VM, and why; nothing is created. */
export async function explainCreate(
  api: ApiClient,
  flags: Flags,
  body: Omit<CreateVmRequest, 'name'>,
): Promise<void> {
  const template = body.template
    ? await api.call(templateRoutes.show, { params: { name: body.template } })
    : null;
  const networks = [...new Set((body.nics ?? []).flatMap((n) => (n.mode === 'network' ? [n.network] : [])))];
  const e = await api.call(clusterRoutes.placement, {
    body: {
      vcpus: body.vcpus ?? template?.vcpus ?? 1,
      memoryMiB: body.memoryMiB ?? template?.memoryMiB ?? 512,
      ...(body.template ? { template: body.template } : {}),
      ...(body.image ? { image: body.image } : {}),
      ...(body.iso ? { iso: body.iso } : {}),
      ...(body.firmware ? { firmware: body.firmware } : {}),
      ...(body.pool ? { pool: body.pool } : {}),
      ...(body.cpuMode ? { cpuMode: body.cpuMode } : {}),
      ...(body.groups ? { groups: body.groups } : {}),
      ...(networks.length ? { networks } : {}),
    },
  });
  if (flags.output === 'json') return printJson(e);
  printExplanation(e);
}
