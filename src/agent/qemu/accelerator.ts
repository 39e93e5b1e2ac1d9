/** Chooses KVM only where it can really work, TCG otherwise, and says why. */
import fs from 'node:fs';
import type { Accelerator } from '../../wire/host.ts';

export interface AcceleratorChoice {
  accelerator: Extract<Accelerator, 'kvm' | 'tcg'>;
  reason: string;
}

export type KvmDevice = 'usable' | 'missing' | 'no-access';

/** Pure decision: a /dev/kvm node alone is not enough, the CPU must expose vmx or svm. */
export function chooseAccelerator(cpuFlags: readonly string[], kvmDevice: KvmDevice): AcceleratorChoice {
  const virt = cpuFlags.includes('vmx') || cpuFlags.includes('svm');
  if (!virt) {
    return { accelerator: 'tcg', reason: 'the CPU exposes no vmx/svm flag: software emulation (TCG)' };
  }
  if (kvmDevice === 'missing')
    return { accelerator: 'tcg', reason: '/dev/kvm is missing (load kvm_intel or kvm_amd)' };
  if (kvmDevice === 'no-access')
    return { accelerator: 'tcg', reason: '/dev/kvm is not accessible to this user' };
  return { accelerator: 'kvm', reason: 'hardware virtualization available' };
}

export interface CpuFacts {
  model: string;
  vendor: string;
  flags: string[];
  cores: number;
}

export function readCpuFacts(cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8')): CpuFacts {
  const first = cpuinfo.split('\n\n')[0] ?? '';
  const field = (name: string) => first.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm'))?.[1]?.trim() ?? '';
  const processors = cpuinfo.match(/^processor\s*:/gm)?.length ?? 1;
  return {
    model: field('model name') || 'unknown',
    vendor: field('vendor_id') || 'unknown',
    flags: field('flags').split(/\s+/).filter(Boolean),
    cores: processors,
  };
}

export function probeKvmDevice(): KvmDevice {
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
    return 'usable';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'no-access';
  }
}

export function detectAccelerator(): AcceleratorChoice {
  return chooseAccelerator(readCpuFacts().flags, probeKvmDevice());
}
