/**
 * The block nodes of a disk moved to another volume while the VM runs. Nodes follow the slot
 * (command-line.ts), but QEMU cannot rename nodes, so the new ones are recorded in a file of
 * the runtime directory until QEMU ends, for this agent and a later one.
 */
import fs from 'node:fs';
import { diskNodes } from './command-line.ts';

export type DiskNodes = ReturnType<typeof diskNodes>;
export type MovedNodes = Record<string, { file: string; format: string }>;

export function readMovedNodes(file: string): MovedNodes {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as MovedNodes;
  } catch {
    // No disk moved while it ran.
    return {};
  }
}

export function nodesOf(moved: MovedNodes, slot: number): DiskNodes {
  const m = moved[String(slot)];
  return m ? { ...diskNodes(slot), ...m } : diskNodes(slot);
}

/** Records (or with null forgets) the moved nodes of `slot`; returns the new record. */
export function writeMovedNodes(
  file: string,
  moved: MovedNodes,
  slot: number,
  nodes: { file: string; format: string } | null,
): MovedNodes {
  const next = { ...moved };
  if (nodes) next[String(slot)] = nodes;
  else delete next[String(slot)];
  fs.writeFileSync(`${file}.new`, JSON.stringify(next));
  fs.renameSync(`${file}.new`, file);
  return next;
}
