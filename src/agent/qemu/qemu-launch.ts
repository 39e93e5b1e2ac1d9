/**
 * Starting a VM's QEMU: detached in its own session so the VM outlives the agent (and an agent
 * restart), its output appended to the VM's QEMU log, until its monitor answers.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { TernError } from '../../errors.ts';
import type { VmSpec } from '../../wire/vm.ts';
import type { AcceleratorChoice } from './accelerator.ts';
import { buildCommandLine, type LaunchOptions, type ResolvedVolumes } from './command-line.ts';
import { tailFile, type VmPaths } from './process-files.ts';
import { QmpClient } from './qmp.ts';

/** Launches QEMU and connects to its monitor; throws with QEMU's last words when it exits first. */
export async function startQemu(
  binary: string,
  spec: VmSpec,
  volumes: ResolvedVolumes,
  paths: VmPaths,
  accel: AcceleratorChoice,
  launch: LaunchOptions,
): Promise<{ child: ChildProcess; qmp: QmpClient }> {
  fs.rmSync(paths.runDir, { recursive: true, force: true });
  fs.mkdirSync(paths.runDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.dirname(paths.qemuLog), { recursive: true });
  fs.writeFileSync(paths.spec, JSON.stringify(spec));
  const args = buildCommandLine(spec, volumes, paths, accel, launch);
  const logFd = fs.openSync(paths.qemuLog, 'a');
  fs.writeSync(logFd, `--- ${new Date().toISOString()} starting ${binary} ${args.join(' ')}\n`);
  const logStart = fs.fstatSync(logFd).size;
  // Detached in its own session: the VM must outlive the agent (and an agent restart).
  const child = spawn(binary, args, { detached: true, stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  child.unref();
  let exited: string | null = null;
  child.once('error', (err) => {
    exited = `cannot run ${binary}: ${err.message}`;
  });
  child.once('exit', (code, signal) => {
    exited = `QEMU exited ${signal ? `on ${signal}` : `with code ${code}`}`;
  });

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      const stderr = tailFile(paths.qemuLog, 8192).slice(-(fs.statSync(paths.qemuLog).size - logStart));
      const last = stderr.trimEnd().split('\n').slice(-5).join('\n');
      fs.rmSync(paths.runDir, { recursive: true, force: true });
      throw new TernError('hypervisor_error', `${exited} while starting: ${last || 'no output'}`, {
        stderr: last,
      });
    }
    if (fs.existsSync(paths.qmp)) {
      try {
        return { child, qmp: await QmpClient.connect(paths.qmp, 3000) };
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new TernError('timeout', 'QEMU did not open its monitor within 30 s');
    }
    await delay(25);
  }
}
