/**
 * Turns raw guest agent replies into bounded, well-typed guest facts. Pure: the guest is
 * untrusted, so anything oversized is truncated and anything malformed is dropped, and each
 * such finding is returned as a note for the host log instead of failing.
 */
import type { GuestInterface, GuestOs } from '../../wire/vm.ts';

export const guestLimits = { text: 256, interfaces: 32, addresses: 16 } as const;

export interface Sanitized<T> {
  value: T;
  notes: string[];
}

function text(raw: unknown, field: string, notes: string[]): string | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'string') {
    notes.push(`${field}: not a string, ignored`);
    return undefined;
  }
  // Control characters would garble tables and logs; they have no place in these fields.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  let s = raw.replace(/[\u0000-\u001f\u007f]/g, '');
  if (s.length > guestLimits.text) {
    notes.push(`${field}: ${raw.length} characters, truncated to ${guestLimits.text}`);
    s = s.slice(0, guestLimits.text);
  }
  return s;
}

/**
 * A message from the guest (a guest agent's error) fit to show: control characters (line
 * breaks, terminal escapes) become spaces, and it is cut to `guestLimits.text` characters.
 * Null when it is not a string or says nothing.
 */
export function guestMessage(raw: unknown): string | null {
  if (typeof raw !== 'string') return null;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  const s = raw.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim();
  if (s === '') return null;
  return s.length > guestLimits.text ? `${s.slice(0, guestLimits.text)}…` : s;
}

export function sanitizeOsInfo(raw: unknown): Sanitized<GuestOs | null> {
  const notes: string[] = [];
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { value: null, notes: ['os info: not an object, ignored'] };
  }
  const r = raw as Record<string, unknown>;
  const os: GuestOs = {};
  const fields: [keyof GuestOs, string][] = [
    ['id', 'id'],
    ['name', 'name'],
    ['prettyName', 'pretty-name'],
    ['version', 'version-id'],
    ['kernelRelease', 'kernel-release'],
    ['machine', 'machine'],
  ];
  for (const [key, wire] of fields) {
    const v = text(r[wire], `os ${wire}`, notes);
    if (v !== undefined) os[key] = v;
  }
  return { value: os, notes };
}

export function sanitizeHostname(raw: unknown): Sanitized<string | null> {
  const notes: string[] = [];
  const name = (raw as { 'host-name'?: unknown } | null)?.['host-name'];
  return { value: text(name, 'host-name', notes) ?? null, notes };
}

export function sanitizeInterfaces(raw: unknown): Sanitized<GuestInterface[]> {
  const notes: string[] = [];
  if (!Array.isArray(raw)) return { value: [], notes: ['network interfaces: not a list, ignored'] };
  if (raw.length > guestLimits.interfaces) {
    notes.push(`network interfaces: ${raw.length} reported, kept ${guestLimits.interfaces}`);
  }
  const result: GuestInterface[] = [];
  for (const item of raw.slice(0, guestLimits.interfaces)) {
    if (typeof item !== 'object' || item === null) continue;
    const i = item as Record<string, unknown>;
    const name = text(i.name, 'interface name', notes);
    if (!name) continue;
    const mac = text(i['hardware-address'], 'hardware-address', notes);
    const addresses: string[] = [];
    const list = Array.isArray(i['ip-addresses']) ? i['ip-addresses'] : [];
    for (const a of list.slice(0, guestLimits.addresses)) {
      const ip = text((a as { 'ip-address'?: unknown } | null)?.['ip-address'], 'ip-address', notes);
      const prefix = (a as { prefix?: unknown } | null)?.prefix;
      if (ip && /^[0-9a-fA-F:.%a-z]+$/.test(ip)) {
        addresses.push(typeof prefix === 'number' && Number.isInteger(prefix) ? `${ip}/${prefix}` : ip);
      }
    }
    result.push({ name, ...(mac ? { mac } : {}), addresses });
  }
  return { value: result, notes };
}

/** guest-get-disks: the whole disks (not partitions) the guest sees, by device name. */
export function sanitizeDisks(raw: unknown): Sanitized<string[]> {
  const notes: string[] = [];
  if (!Array.isArray(raw)) return { value: [], notes: ['disks: not a list, ignored'] };
  const names: string[] = [];
  for (const d of raw.slice(0, guestLimits.interfaces)) {
    const r = d as { name?: unknown; partition?: unknown } | null;
    if (r?.partition === true) continue;
    const name = text(r?.name, 'disk name', notes);
    if (name && /^\/dev\/[A-Za-z0-9]+$/.test(name)) names.push(name);
  }
  return { value: names.sort(), notes };
}

/** A guest-file-read reply of /etc/machine-id: 32 hex digits, or nothing. */
export function sanitizeMachineId(raw: unknown): Sanitized<string | null> {
  const b64 = (raw as { 'buf-b64'?: unknown } | null)?.['buf-b64'];
  if (typeof b64 !== 'string' || b64.length > 128)
    return { value: null, notes: ['machine-id: malformed reply'] };
  const text = Buffer.from(b64, 'base64').toString('latin1').trim();
  if (!/^[0-9a-f]{32}$/.test(text)) return { value: null, notes: ['machine-id: not 32 hex digits'] };
  return { value: text, notes: [] };
}

/** The guest kernel's boot id, a UUID, read with guest-file-read. */
export function sanitizeBootId(raw: unknown): Sanitized<string | null> {
  const b64 = (raw as { 'buf-b64'?: unknown } | null)?.['buf-b64'];
  if (typeof b64 !== 'string' || b64.length > 128)
    return { value: null, notes: ['boot id: malformed reply'] };
  const text = Buffer.from(b64, 'base64').toString('latin1').trim();
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(text))
    return { value: null, notes: ['boot id: not a UUID'] };
  return { value: text, notes: [] };
}

/** The addresses worth showing to people: not loopback, not link-local. */
export function usefulAddresses(interfaces: GuestInterface[]): string[] {
  const out: string[] = [];
  for (const i of interfaces) {
    if (i.name === 'lo') continue;
    for (const a of i.addresses) {
      const ip = a.split('/')[0];
      if (ip.startsWith('127.') || ip === '::1' || ip.toLowerCase().startsWith('fe80')) continue;
      out.push(ip);
    }
  }
  return out;
}
