import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import {
  clusterBaseline,
  cpuIdentityKey,
  cpuModel,
  cpuModels,
  cpuModelsFor,
  supportsModel,
} from './cpu-models.ts';
import type { CpuIdentity } from './model.ts';

const host = (vendor: string, model: string, flags: readonly string[]): CpuIdentity => ({
  vendor,
  model,
  flags: [...flags],
});
const intelModel = (name: string) => host('GenuineIntel', name, cpuModel(name)!.flags);
const amdModel = (name: string) => host('AuthenticAMD', name, cpuModel(name)!.flags);

/** This machine's CPU, as an agent would report it. */
function localCpu(): CpuIdentity | null {
  try {
    const text = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const field = (name: string) => text.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm'))?.[1] ?? '';
    return { vendor: field('vendor_id'), model: field('model name'), flags: field('flags').split(/\s+/) };
  } catch {
    return null;
  }
}

test('the table names the models the brief lists, per vendor, oldest first', () => {
  assert.deepEqual(cpuModelsFor('GenuineIntel'), [
    'Nehalem',
    'Westmere',
    'SandyBridge',
    'IvyBridge',
    'Haswell-noTSX',
    'Broadwell-noTSX',
    'Skylake-Client-noTSX-IBRS',
    'Skylake-Server-noTSX-IBRS',
    'Cascadelake-Server-noTSX',
    'Icelake-Server-noTSX',
  ]);
  assert.deepEqual(cpuModelsFor('AuthenticAMD'), [
    'Opteron_G3',
    'Opteron_G4',
    'Opteron_G5',
    'EPYC',
    'EPYC-Rome',
    'EPYC-Milan',
  ]);
  assert.deepEqual(cpuModelsFor('HygonGenuine'), []);
  // EPYC is not a Bulldozer: it must not ask for FMA4/XOP/TBM.
  for (const f of ['fma4', 'xop', 'tbm']) assert.ok(!cpuModel('EPYC')!.flags.includes(f));
  assert.ok(!cpuModel('Haswell-noTSX')!.flags.includes('rtm'));
});

test('every model name is one QEMU knows', {
  skip: !fs.existsSync('/usr/bin/qemu-system-x86_64'),
}, async () => {
  const { execFileSync } = await import('node:child_process');
  const help = execFileSync('qemu-system-x86_64', ['-cpu', 'help'], { encoding: 'utf8' });
  const known = new Set(help.split('\n').map((l) => l.trim().split(/\s+/)[1]));
  for (const m of cpuModels) assert.ok(known.has(m.name), `${m.name} is not in qemu -cpu help`);
  assert.ok(known.has('qemu64'));
});

test('supportsModel checks vendor and flags and lists what is missing', () => {
  const broadwell = intelModel('Broadwell-noTSX');
  assert.deepEqual(supportsModel(broadwell, 'Haswell-noTSX'), { ok: true });
  assert.deepEqual(supportsModel(broadwell, 'Broadwell-noTSX'), { ok: true });
  const sky = supportsModel(broadwell, 'Skylake-Client-noTSX-IBRS');
  assert.equal(sky.ok, false);
  assert.deepEqual(!sky.ok && sky.missing, ['xsavec', 'xgetbv1', 'ibrs']);
  const onAmd = supportsModel(amdModel('EPYC-Milan'), 'Haswell-noTSX');
  assert.equal(onAmd.ok, false);
  assert.match(!onAmd.ok ? onAmd.missing[0] : '', /vendor GenuineIntel \(host is AuthenticAMD\)/);
  assert.deepEqual(supportsModel(amdModel('Opteron_G3'), 'qemu64'), { ok: true });
  assert.equal(supportsModel(broadwell, 'Pentium-MMX').ok, false);
});

test('the answer is cached per CPU identity and stays correct', () => {
  const cpu = intelModel('IvyBridge');
  const first = supportsModel(cpu, 'Haswell-noTSX');
  assert.equal(supportsModel(cpu, 'Haswell-noTSX'), first);
  assert.equal(supportsModel(intelModel('Haswell-noTSX'), 'Haswell-noTSX').ok, true);
});

test("this machine's /proc/cpuinfo gives a named model of its vendor", { skip: localCpu() === null }, () => {
  const cpu = localCpu()!;
  const { model, reason } = clusterBaseline([cpu]);
  if (cpuModelsFor(cpu.vendor).length > 0 && cpu.flags.includes('sse4_2')) {
    assert.notEqual(model, 'qemu64', reason);
    assert.ok(cpuModelsFor(cpu.vendor).includes(model));
    assert.equal(supportsModel(cpu, model).ok, true);
  }
  assert.match(reason, new RegExp(model));
});

test('a mixed Intel/AMD cluster falls back to qemu64 and says why', () => {
  const b = clusterBaseline([intelModel('Icelake-Server-noTSX'), amdModel('EPYC-Milan')]);
  assert.equal(b.model, 'qemu64');
  assert.match(b.reason, /different vendors \(AuthenticAMD, GenuineIntel\)/);
});

test('an older host lowers the baseline', () => {
  const newer = [intelModel('Icelake-Server-noTSX'), intelModel('Icelake-Server-noTSX')];
  assert.equal(clusterBaseline(newer).model, 'Icelake-Server-noTSX');
  const mixed = clusterBaseline([...newer, intelModel('Broadwell-noTSX')]);
  assert.equal(mixed.model, 'Broadwell-noTSX');
  assert.match(mixed.reason, /1 of 3 lack Skylake-Client-noTSX-IBRS/);
  const epyc = clusterBaseline([amdModel('EPYC-Milan'), amdModel('EPYC-Rome'), amdModel('EPYC-Milan')]);
  assert.equal(epyc.model, 'EPYC-Rome');
});

test('a host below the oldest model, or no hosts, gives qemu64', () => {
  const ancient = host('GenuineIntel', 'Core 2', ['lm', 'nx', 'sse2', 'ssse3']);
  const b = clusterBaseline([intelModel('Haswell-noTSX'), ancient]);
  assert.equal(b.model, 'qemu64');
  assert.match(b.reason, /oldest GenuineIntel model known \(missing /);
  assert.equal(clusterBaseline([]).model, 'qemu64');
});

test('identity keys match for the same CPU in any flag order and differ otherwise', () => {
  const a = host('GenuineIntel', 'Xeon', ['sse2', 'avx2', 'aes']);
  const b = host('GenuineIntel', 'Xeon', ['aes', 'sse2', 'avx2']);
  assert.equal(cpuIdentityKey(a), cpuIdentityKey(b));
  assert.notEqual(cpuIdentityKey(a), cpuIdentityKey(host('GenuineIntel', 'Xeon', ['sse2', 'avx2'])));
  assert.notEqual(cpuIdentityKey(a), cpuIdentityKey(host('GenuineIntel', 'Xeon 2', ['sse2', 'avx2', 'aes'])));
});
