/**
 * The QMP commands of a backup's point-in-time view (agent/qemu/running-view.ts): persistent
 * dirty bitmaps read and rotated in one transaction, the copy-before-write filter and the
 * snapshot-access node over it, and the device moved onto the filter and back. Part of the
 * typed QMP layer (qmp-commands.ts holds the rest).
 */
import { TernError } from '../../errors.ts';
import type { BlockdevOptions, Monitor } from './qmp-commands.ts';

/** A dirty bitmap of a block node, as query-named-block-nodes tells it. */
export interface DirtyBitmapInfo {
  name: string;
  persistent: boolean;
  /** QEMU found it marked in use when it opened the image: not stored at an exit, untrusted. */
  inconsistent: boolean;
  recording: boolean;
  granularity: number;
  /** Dirty bytes. */
  count: number;
}

/** The named dirty bitmaps of node `node`; not_found (hypervisor_error) if there is no such node. */
export async function dirtyBitmaps(m: Monitor, node: string): Promise<DirtyBitmapInfo[]> {
  const nodes = await m.execute<unknown>('query-named-block-nodes', { flat: true });
  const found = Array.isArray(nodes)
    ? (nodes as { 'node-name'?: unknown; 'dirty-bitmaps'?: unknown }[]).find((n) => n?.['node-name'] === node)
    : undefined;
  if (!found) throw new TernError('hypervisor_error', `QEMU has no block node ${node}`);
  const list = Array.isArray(found['dirty-bitmaps'])
    ? (found['dirty-bitmaps'] as Record<string, unknown>[])
    : [];
  return list.flatMap((b) =>
    typeof b?.name === 'string'
      ? [
          {
            name: b.name,
            persistent: b.persistent === true,
            inconsistent: b.inconsistent === true,
            recording: b.recording === true,
            granularity: typeof b.granularity === 'number' ? b.granularity : 0,
            count: typeof b.count === 'number' ? b.count : 0,
          },
        ]
      : [],
  );
}

/** The virtual size of a block node's image. */
export async function nodeSize(m: Monitor, node: string): Promise<number> {
  const nodes = await m.execute<unknown>('query-named-block-nodes', { flat: true });
  const found = Array.isArray(nodes)
    ? (nodes as { 'node-name'?: unknown; image?: { 'virtual-size'?: unknown } }[]).find(
        (n) => n?.['node-name'] === node,
      )
    : undefined;
  const size = found?.image?.['virtual-size'];
  if (typeof size !== 'number')
    throw new TernError('hypervisor_error', `QEMU has no size for block node ${node}`);
  return size;
}

/** One action of a QMP transaction on dirty bitmaps: all happen at one instant, or none. */
export type BitmapAction =
  | { op: 'add'; node: string; name: string; persistent: boolean; disabled: boolean; granularity: number }
  | { op: 'enable' | 'disable'; node: string; name: string }
  | { op: 'merge'; node: string; target: string; sources: string[] };

export async function bitmapTransaction(m: Monitor, actions: readonly BitmapAction[]): Promise<void> {
  if (actions.length === 0) return;
  await m.execute('transaction', {
    actions: actions.map((a) => {
      switch (a.op) {
        case 'add':
          return {
            type: 'block-dirty-bitmap-add',
            data: {
              node: a.node,
              name: a.name,
              persistent: a.persistent,
              disabled: a.disabled,
              granularity: a.granularity,
            },
          };
        case 'enable':
        case 'disable':
          return { type: `block-dirty-bitmap-${a.op}`, data: { node: a.node, name: a.name } };
        default:
          return {
            type: 'block-dirty-bitmap-merge',
            data: { node: a.node, target: a.target, bitmaps: a.sources },
          };
      }
    }),
  });
}

/** Removes a dirty bitmap (a persistent one from the image too). */
export async function removeDirtyBitmap(m: Monitor, node: string, name: string): Promise<void> {
  await m.execute('block-dirty-bitmap-remove', { node, name });
}

/** Points a device at another block node while the guest runs (how a filter is put in and out). */
export async function setDeviceDrive(m: Monitor, deviceId: string, node: string): Promise<void> {
  await m.execute('qom-set', { path: `/machine/peripheral/${deviceId}`, property: 'drive', value: node });
}

/**
 * A copy-before-write filter over `file`: before a guest write reaches a block, the old
 * contents go to `target`. `break-snapshot`: a failed copy fails the view (its reads), never
 * the guest's write.
 */
export function copyBeforeWriteOptions(node: string, file: string, target: string): BlockdevOptions {
  return {
    driver: 'copy-before-write',
    'node-name': node,
    file,
    target,
    'on-cbw-error': 'break-snapshot',
    'cbw-timeout': 60,
  };
}

/** The point-in-time view a copy-before-write filter keeps, readable (and exportable) as a node. */
export function snapshotAccessOptions(node: string, filter: string): BlockdevOptions {
  return { driver: 'snapshot-access', 'node-name': node, file: filter };
}
