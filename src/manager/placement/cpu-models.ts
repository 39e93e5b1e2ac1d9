/**
 * QEMU's named x86 CPU models (as QEMU 7.2 defines them) and the cluster baseline: the newest
 * model every host can run, so a VM started with it can live-migrate to any host of the cluster.
 *
 * Each model lists the /proc/cpuinfo flags a host needs to run it, taken from the feature words of
 * target/i386/cpu.c. The list is the instruction-set and mitigation features that tell generations
 * apart; features KVM emulates whatever the host has (x2apic, tsc_deadline_timer, arat) and bits
 * that only some kernels print (monitor, svm under nesting) are left out, because a host missing
 * them in /proc/cpuinfo can still run the model.
 */
import type { CpuIdentity } from './model.ts';

export interface CpuModel {
  /** The name QEMU accepts in `-cpu` (an alias where QEMU has one, e.g. Haswell-noTSX). */
  name: string;
  vendor: 'GenuineIntel' | 'AuthenticAMD';
  flags: readonly string[];
}

/** The fallback every x86-64 host runs; QEMU 7.2 has no x86-64-v2/v3/v4 named models. */
export const fallbackModel = 'qemu64';

const intel = 'GenuineIntel';
const amd = 'AuthenticAMD';

/**
 * Builds one vendor's line, each model written as what it adds to the one before it (`-flag`
 * for what it drops), so the table reads as the generations' history.
 */
function line(vendor: CpuModel['vendor'], steps: readonly [string, string][]): CpuModel[] {
  const out: CpuModel[] = [];
  let flags: string[] = [];
  for (const [name, change] of steps) {
    const words = change.split(' ').filter(Boolean);
    const dropped = new Set(words.filter((w) => w.startsWith('-')).map((w) => w.slice(1)));
    flags = [...flags.filter((f) => !dropped.has(f)), ...words.filter((w) => !w.startsWith('-'))];
    out.push(Object.freeze({ name, vendor, flags: Object.freeze(flags) }));
  }
  return out;
}

const base64 = 'lm nx syscall cx16 pni lahf_lm';

/**
 * Oldest first within each vendor. Icelake-Server-noTSX (v2) predates QEMU's arch-capabilities
 * bit for it; EPYC drops the Bulldozer-era FMA4/XOP/TBM.
 */
export const cpuModels: readonly CpuModel[] = Object.freeze([
  ...line(intel, [
    ['Nehalem', `${base64} ssse3 sse4_1 sse4_2 popcnt`],
    ['Westmere', 'aes pclmulqdq'],
    ['SandyBridge', 'avx xsave xsaveopt rdtscp'],
    ['IvyBridge', 'f16c rdrand fsgsbase smep erms'],
    ['Haswell-noTSX', 'fma movbe pcid abm avx2 bmi1 bmi2 invpcid'],
    ['Broadwell-noTSX', '3dnowprefetch rdseed adx smap'],
    ['Skylake-Client-noTSX-IBRS', 'xsavec xgetbv1 ibrs'],
    ['Skylake-Server-noTSX-IBRS', 'pdpe1gb clwb clflushopt avx512f avx512dq avx512bw avx512cd avx512vl pku'],
    ['Cascadelake-Server-noTSX', 'avx512_vnni ssbd arch_capabilities'],
    [
      'Icelake-Server-noTSX',
      'avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_bitalg avx512_vpopcntdq la57 wbnoinvd -arch_capabilities',
    ],
  ]),
  ...line(amd, [
    ['Opteron_G3', `${base64} popcnt rdtscp sse4a misalignsse abm`],
    ['Opteron_G4', 'ssse3 sse4_1 sse4_2 aes pclmulqdq avx xsave pdpe1gb fma4 xop 3dnowprefetch'],
    ['Opteron_G5', 'f16c fma tbm'],
    [
      'EPYC',
      '-fma4 -xop -tbm movbe rdrand mmxext fxsr_opt cr8_legacy osvw topoext fsgsbase bmi1 bmi2 avx2 smep rdseed adx smap clflushopt sha_ni xsaveopt xsavec xgetbv1',
    ],
    ['EPYC-Rome', 'perfctr_core clzero xsaveerptr wbnoinvd clwb umip rdpid xsaves'],
    ['EPYC-Milan', 'pcid erms invpcid pku fsrm'],
  ]),
]);

const byName = new Map(cpuModels.map((m) => [m.name, m]));

export function cpuModel(name: string): CpuModel | undefined {
  return byName.get(name);
}

/** The named models of one vendor, oldest first (empty for a vendor QEMU has no line for here). */
export function cpuModelsFor(vendor: string): readonly string[] {
  return cpuModels.filter((m) => m.vendor === vendor).map((m) => m.name);
}

export type ModelSupport = { ok: true } | { ok: false; missing: string[] };

const supported: ModelSupport = Object.freeze({ ok: true });

// Placement asks the same question of the same host thousands of times a second: cache the
// answer per CPU identity (hosts report a new object when their CPU changes).
const supportCache = new WeakMap<CpuIdentity, Map<string, ModelSupport>>();

export function supportsModel(cpu: CpuIdentity, model: string): ModelSupport {
  let answers = supportCache.get(cpu);
  if (answers === undefined) {
    answers = new Map();
    supportCache.set(cpu, answers);
  }
  let answer = answers.get(model);
  if (answer === undefined) {
    answer = checkModel(cpu, model);
    answers.set(model, answer);
  }
  return answer;
}

function checkModel(cpu: CpuIdentity, name: string): ModelSupport {
  if (name === fallbackModel || name === 'kvm64') return supported;
  const m = byName.get(name);
  if (m === undefined) return { ok: false, missing: [`unknown CPU model ${name}`] };
  const have = new Set(cpu.flags);
  const missing = m.flags.filter((f) => !have.has(f));
  if (cpu.vendor !== m.vendor) missing.unshift(`vendor ${m.vendor} (host is ${cpu.vendor || 'unknown'})`);
  return missing.length === 0 ? supported : { ok: false, missing };
}

const checkers = new Map<string, (cpu: CpuIdentity) => boolean>();

/**
 * `supportsModel(cpu, model).ok` for one model, as a function with its own per-host cache: a
 * decision looks the model up once and then pays one WeakMap lookup per host.
 */
export function modelChecker(model: string): (cpu: CpuIdentity) => boolean {
  let check = checkers.get(model);
  if (check === undefined) {
    const answers = new WeakMap<CpuIdentity, boolean>();
    check = (cpu) => {
      let ok = answers.get(cpu);
      if (ok === undefined) {
        ok = supportsModel(cpu, model).ok;
        answers.set(cpu, ok);
      }
      return ok;
    };
    checkers.set(model, check);
  }
  return check;
}

const identityKeys = new WeakMap<CpuIdentity, number>();
const keyBySignature = new Map<string, number>();

/**
 * A small number equal for two identities with the same vendor, model string and flag set
 * (flag order aside), so "same CPU as" is one comparison per host.
 */
export function cpuIdentityKey(cpu: CpuIdentity): number {
  let key = identityKeys.get(cpu);
  if (key === undefined) {
    const signature = `${cpu.vendor}\n${cpu.model}\n${[...new Set(cpu.flags)].sort().join(' ')}`;
    key = keyBySignature.get(signature);
    if (key === undefined) {
      key = keyBySignature.size + 1;
      keyBySignature.set(signature, key);
    }
    identityKeys.set(cpu, key);
  }
  return key;
}

/** What differs between two CPU identities, for a rejection reason; empty when they are the same. */
export function cpuDifference(host: CpuIdentity, wanted: CpuIdentity): string {
  const parts: string[] = [];
  if (host.vendor !== wanted.vendor) parts.push(`vendor ${host.vendor}, not ${wanted.vendor}`);
  if (host.model !== wanted.model) parts.push(`model "${host.model}", not "${wanted.model}"`);
  const have = new Set(host.flags);
  const want = new Set(wanted.flags);
  const missing = [...want].filter((f) => !have.has(f));
  const extra = [...have].filter((f) => !want.has(f));
  if (missing.length > 0) parts.push(`lacks ${missing.join(' ')}`);
  if (extra.length > 0) parts.push(`also has ${extra.join(' ')}`);
  return parts.join('; ');
}

/**
 * The newest named model of the hosts' common vendor that every host supports. Mixed vendors, an
 * unknown vendor or no common model give `qemu64`, which any x86-64 host runs.
 */
export function clusterBaseline(cpus: readonly CpuIdentity[]): { model: string; reason: string } {
  if (cpus.length === 0) return { model: fallbackModel, reason: 'no hosts to compare; qemu64 runs anywhere' };
  const vendors = [...new Set(cpus.map((c) => c.vendor))];
  if (vendors.length > 1) {
    return {
      model: fallbackModel,
      reason: `hosts of different vendors (${vendors.sort().join(', ')}) share no named model; qemu64 is the common x86-64 model`,
    };
  }
  const line = cpuModels.filter((m) => m.vendor === vendors[0]);
  if (line.length === 0) {
    return { model: fallbackModel, reason: `no named models for vendor ${vendors[0]}; qemu64 runs anywhere` };
  }
  for (let i = line.length - 1; i >= 0; i--) {
    if (cpus.every((c) => supportsModel(c, line[i].name).ok)) {
      const newer = line[i + 1];
      if (newer === undefined) {
        return {
          model: line[i].name,
          reason: `every host supports ${line[i].name}, the newest ${vendors[0]} model known`,
        };
      }
      const lacking = cpus.filter((c) => !supportsModel(c, newer.name).ok);
      const missing = supportsModel(lacking[0], newer.name) as { ok: false; missing: string[] };
      return {
        model: line[i].name,
        reason:
          `every host supports ${line[i].name}; ${lacking.length} of ${cpus.length} lack ${newer.name} ` +
          `(e.g. "${lacking[0].model}" lacks ${missing.missing.join(' ')})`,
      };
    }
  }
  const missing = supportsModel(cpus.find((c) => !supportsModel(c, line[0].name).ok)!, line[0].name) as {
    ok: false;
    missing: string[];
  };
  return {
    model: fallbackModel,
    reason: `not every host supports ${line[0].name}, the oldest ${vendors[0]} model known (missing ${missing.missing.join(' ')}); qemu64 runs anywhere`,
  };
}
