/**
 * A VM's spec as it leaves the database: the `spec` column is JSON text, parsed and checked
 * against the wire `VmSpec` here and nowhere else, so a damaged row is one clear error rather
 * than a wrong field read somewhere downstream.
 */
import { Value } from 'typebox/value';
import { TernError } from '../../errors.ts';
import { VmSpec } from '../../wire/vm.ts';

export function vmSpecOf(row: { spec: string; id?: string; name?: string }): VmSpec {
  let value: unknown;
  try {
    value = JSON.parse(row.spec);
  } catch {
    value = undefined;
  }
  if (Value.Check(VmSpec, value)) return value;
  const first = value === undefined ? null : Value.Errors(VmSpec, value)[0];
  const where = first ? `: ${first.instancePath || '/'} ${first.message}` : ': not JSON';
  throw new TernError('internal', `the stored spec of VM ${row.name ?? row.id ?? '?'} is damaged${where}`);
}
