/** `tern doctor`: what this machine lacks to run Tern, each with the command that fixes it. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { ovmf, ovmfPresent } from '../../agent/firmware.ts';
import { detectCapabilities } from '../../agent/network/capabilities.ts';
import { chooseAccelerator, probeKvmDevice, readCpuFacts } from '../../agent/qemu/accelerator.ts';
import { dataDir } from '../../allinone/config.ts';
import type { Flags } from '../flags.ts';
import { printJson, printTable } from '../output.ts';
import type { Command } from '../registry.ts';

interface Check {
  check: string;
  ok: boolean;
  detail: string;
  fix: string;
  /** A warning does not stop Tern from working. */
  required: boolean;
}

function binary(name: string, args: string[]): string | null {
  try {
    return execFileSync(name, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')[0]
      .trim();
  } catch {
    return null;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export async function doctor(flags: Flags): Promise<number> {
  const checks: Check[] = [];
  const tool = (check: string, name: string, args: string[], pkg: string) => {
    const v = binary(name, args);
    checks.push({
      check,
      ok: v !== null,
      detail: v ?? `${name} not found`,
      fix: `apt-get install -y ${pkg}`,
      required: true,
    });
  };
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  checks.push({
    check: 'node',
    ok: nodeMajor >= 24,
    detail: `Node ${process.versions.node}`,
    fix: 'npm install (puts Node 24 from the node package first on the PATH of npm scripts)',
    required: true,
  });
  tool('qemu', 'qemu-system-x86_64', ['--version'], 'qemu-system-x86');
  tool('qemu-img', 'qemu-img', ['--version'], 'qemu-utils');
  tool('seed images', 'genisoimage', ['--version'], 'genisoimage');
  const uefi = ovmfPresent();
  checks.push({
    check: 'uefi firmware',
    ok: uefi,
    detail: uefi ? `OVMF at ${ovmf.code}` : `${ovmf.code} not found: VMs boot with BIOS only`,
    fix: uefi ? '' : 'apt-get install -y ovmf',
    required: false,
  });
  // Managed networks: what the kernel and tools here can realize (probed in a scratch namespace).
  const net = await detectCapabilities();
  checks.push({
    check: 'networks',
    ok: net.reasons.length === 0,
    detail:
      net.reasons.length === 0
        ? 'bridge, nat, isolated, overlay (VXLAN) and VLAN tags'
        : net.reasons.join('; '),
    fix:
      !net.nftables || !net.dnsmasq
        ? 'apt-get install -y nftables dnsmasq-base'
        : `${[
            ...(net.vlan ? [] : ['a kernel with 8021q and bridge VLAN filtering for VLAN tags']),
            ...(net.vxlan ? [] : ['a kernel with vxlan for overlays']),
          ].join('; ')}; the other network types work meanwhile`,
    required: false,
  });
  const cpu = readCpuFacts();
  const accel = chooseAccelerator(cpu.flags, probeKvmDevice());
  checks.push({
    check: 'accelerator',
    ok: accel.accelerator === 'kvm',
    detail: `${accel.accelerator}: ${accel.reason}`,
    fix:
      accel.accelerator === 'kvm'
        ? ''
        : 'enable VT-x/AMD-V (or nested virtualization) and modprobe kvm_intel or kvm_amd; VMs run slower under TCG meanwhile',
    required: false,
  });
  const dir = dataDir();
  let probe = dir;
  while (!fs.existsSync(probe)) probe = probe.slice(0, probe.lastIndexOf('/')) || '/';
  const s = fs.statfsSync(probe);
  const freeGiB = (s.bavail * s.bsize) / 1024 ** 3;
  checks.push({
    check: 'disk space',
    ok: freeGiB >= 2,
    detail: `${freeGiB.toFixed(1)} GiB free for ${dir}`,
    fix: 'free space there or set TERN_HOME to a larger filesystem',
    required: true,
  });
  for (const [what, port] of [
    ['manager port', Number(flags.port ?? 7410)],
    ['agent port', Number(flags['agent-port'] ?? 7411)],
    ['cluster port', Number(flags['cluster-port'] ?? 7412)],
  ] as const) {
    const free = await portFree(port);
    checks.push({
      check: what,
      ok: free,
      detail: free ? `${port} free` : `${port} in use (Tern already running?)`,
      fix: free
        ? ''
        : `stop what listens on ${port} (ss -ltnp 'sport = :${port}') or pick --port/--agent-port`,
      required: false,
    });
  }
  if (flags.output === 'json') printJson(checks);
  else {
    printTable(
      ['CHECK', 'STATUS', 'DETAIL', 'FIX'],
      checks.map((c) => [
        c.check,
        c.ok ? 'ok' : c.required ? 'MISSING' : 'warning',
        c.detail,
        c.ok ? '' : c.fix,
      ]),
    );
  }
  return checks.some((c) => !c.ok && c.required) ? 1 : 0;
}

export const doctorCommands: Command[] = [
  {
    path: 'doctor',
    summary: "check this machine's prerequisites",
    flags: [
      ['port', 'the manager port to check'],
      ['agent-port', 'the agent port to check'],
      ['cluster-port', 'the cluster port to check'],
    ],
    run: ({ flags }) => doctor(flags),
  },
];
