/** `tern vm migrate` and `tern vm disk move`: moving a VM between hosts, a disk between pools. */
import { TernError } from '../../errors.ts';
import { migrationRoutes } from '../../wire/api/migration.ts';
import type { MigrateVmRequest, PlacementExplanation } from '../../wire/cluster.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printJson, printTable, printText } from '../output.ts';
import { waitForTask } from '../progress.ts';

export function printExplanation(e: PlacementExplanation): void {
  printTable(
    ['HOST', 'VERDICT', 'RATING / REASON'],
    e.verdicts.map((v) => [
      v.host,
      v.host === e.host ? 'chosen' : v.eligible ? 'eligible' : `rejected (${v.filter})`,
      v.eligible ? (v.rating?.toFixed(3) ?? '') : (v.reason ?? ''),
    ]),
  );
  printText(`${e.summary}\n`);
}

export async function migrateCommand(api: ApiClient, args: string[], flags: Flags): Promise<void> {
  if (args.length !== 1) {
    throw new TernError(
      'invalid_request',
      'usage: tern vm migrate VM [--to HOST] [--quick] [--target-pool POOL] [--downtime MS] [--bandwidth MIB/S] [--timeout S] [--explain]',
    );
  }
  const vm = args[0];
  const body: MigrateVmRequest = { mode: flags.quick ? 'quick' : 'live' };
  if (flags.to) body.to = flags.to;
  if (flags['target-pool']) body.targetPool = flags['target-pool'];
  if (flags.downtime) body.downtimeMs = Number(flags.downtime);
  if (flags.bandwidth) body.bandwidthMiBps = Number(flags.bandwidth);
  if (flags.timeout) body.timeoutS = Number(flags.timeout);
  if (flags.explain) {
    const p = await api.call(migrationRoutes.migratePreview, { params: { vm }, body });
    if (flags.output === 'json') return printJson(p);
    printExplanation(p.placement);
    if (p.refused) printText(`refused: ${p.refused}\n`);
    else if (p.storage)
      printText(`storage: ${p.storage}${p.mirrored.length ? ` (copies ${p.mirrored.join(', ')})` : ''}\n`);
    return;
  }
  const r = await api.call(migrationRoutes.migrate, { params: { vm }, body });
  if (flags['no-wait']) {
    printText(`task ${r.task.id} (${r.task.kind}) accepted\n`);
    return;
  }
  const done = await waitForTask(api, r.task, flags.output === 'json');
  if (flags.output === 'json') return printJson(done);
  const o = done.result as {
    from: string;
    to: string;
    storage: string;
    downtimeMs: number;
    qemuDowntimeMs: number;
    transferredBytes: number;
    totalMs: number;
  };
  printText(
    `${vm} moved from ${o.from} to ${o.to} (${o.storage} storage) in ${(o.totalMs / 1000).toFixed(1)} s: downtime ${o.downtimeMs} ms (QEMU ${o.qemuDowntimeMs} ms), ${Math.round(o.transferredBytes / 1024 / 1024)} MiB sent\n`,
  );
}
