/**
 * What a previous agent left of a VM in its runtime directory, read when this agent starts: a
 * QEMU that still runs (VmProcess.attach reconnects to it), one that ended on purpose while no
 * agent ran (stopped, or released to another host), or one that ended unasked (crashed).
 */
import fs from 'node:fs';
import type { Logger } from '../../log.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { type MovedNodes, readMovedNodes } from './moved-nodes.ts';
import { qemuRuns, readBoots, readPid, readQuitting, type VmPaths } from './process-files.ts';

export type LeftBehind =
  /** Nothing to report: a VM released to another host, or a directory without a readable spec. */
  | { kind: 'nothing' }
  | { kind: 'stopped'; spec: VmSpec }
  | { kind: 'crashed'; spec: VmSpec; nodes: MovedNodes; startedAt: string | null }
  | {
      kind: 'running';
      spec: VmSpec;
      nodes: MovedNodes;
      startedAt: string | null;
      pid: number;
      boots: number;
    };

/** Reads the runtime directory at `paths`; one whose QEMU ended is removed. */
export function leftBehind(paths: VmPaths, log: Logger): LeftBehind {
  let spec: VmSpec;
  try {
    spec = JSON.parse(fs.readFileSync(paths.spec, 'utf8')) as VmSpec;
  } catch {
    log.warn({ dir: paths.runDir }, 'runtime directory without a readable spec; removed');
    fs.rmSync(paths.runDir, { recursive: true, force: true });
    return { kind: 'nothing' };
  }
  const nodes = readMovedNodes(paths.nodes);
  const pid = readPid(paths.pidfile);
  const startedAt = fs.existsSync(paths.pidfile) ? fs.statSync(paths.pidfile).mtime.toISOString() : null;
  if (!qemuRuns(pid, paths.qmp)) {
    const quitting = readQuitting(paths.quitting);
    if (quitting === null) return { kind: 'crashed', spec, nodes, startedAt };
    fs.rmSync(paths.runDir, { recursive: true, force: true });
    return quitting === 'released' ? { kind: 'nothing' } : { kind: 'stopped', spec };
  }
  // Boots while no agent ran went unseen: a reboot waiting for one fails rather than guesses.
  return { kind: 'running', spec, nodes, startedAt, pid, boots: readBoots(paths.boots) };
}
