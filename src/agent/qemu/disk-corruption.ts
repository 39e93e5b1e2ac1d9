/**
 * A disk image QEMU found corrupt: BLOCK_IMAGE_CORRUPTED as it happens, or, for a corruption
 * found before anyone listened, a disk left with no medium. When fatal QEMU stops using the
 * image and the guest sees I/O errors, so a VM that still runs says so, and the manager raises
 * a critical alert. Pure decisions: the VM process feeds them what QEMU reported.
 */
import { diskSlot, type VmSpec } from '../../wire/vm.ts';
import type { DiskNodes } from './moved-nodes.ts';

type NodesOf = (slot: number) => DiskNodes;

/** The reason a running VM carries for the corrupt image behind block node `node`. */
export function corruptReason(spec: VmSpec, nodesOf: NodesOf, node: string, detail: string): string {
  const i = spec.disks.findIndex((d, n) => {
    const nodes = nodesOf(diskSlot(d, n));
    return nodes.format === node || nodes.file === node;
  });
  const disk = spec.disks[i];
  const which = disk ? `disk ${i} (${disk.volume.pool}:${disk.volume.path})` : `block node ${node}`;
  return `disk image corrupt: ${which}: ${detail.slice(0, 300)}`;
}

/** What BLOCK_IMAGE_CORRUPTED says: the block node and why. */
export function corruptEvent(data: Record<string, unknown>): { node: string; detail: string } {
  const d = data as { device?: unknown; 'node-name'?: unknown; msg?: unknown; fatal?: unknown };
  const node = typeof d['node-name'] === 'string' ? d['node-name'] : String(d.device ?? '?');
  const msg = typeof d.msg === 'string' ? d.msg : 'no detail';
  return { node, detail: d.fatal === false ? msg : `${msg} (QEMU stopped using the image)` };
}

/**
 * When the monitor connects: a disk QEMU found corrupt before anyone listened (QEMU reads the
 * boot disk while it starts) or while no agent ran has no medium any more, which is what
 * QEMU does with an image it stopped using; its log (`logTail`) says why.
 */
export function corruptDisksFound(
  spec: VmSpec,
  nodesOf: NodesOf,
  devices: unknown,
  logTail: () => string,
): { node: string; detail: string }[] {
  if (!Array.isArray(devices)) return [];
  const found: { node: string; detail: string }[] = [];
  for (const [i, disk] of spec.disks.entries()) {
    const nodes = nodesOf(diskSlot(disk, i));
    const device = (devices as { qdev?: unknown; inserted?: unknown }[]).find(
      (d) => typeof d.qdev === 'string' && d.qdev.includes(`/peripheral/${nodes.device}/`),
    );
    if (device && !device.inserted) {
      const said = [...logTail().matchAll(/Marking image as corrupt: ([^\n]*?);? further/g)].pop();
      found.push({
        node: nodes.format,
        detail: `${said?.[1] ?? 'QEMU found it corrupt'} (QEMU stopped using the image)`,
      });
    }
  }
  return found;
}
