/**
 * Which Tern roles a directory user's groups give. Pure: the directory answers with group DNs
 * in whatever spelling it keeps (`CN=Tern-Ops, OU=Groups,DC=example,DC=org`), and an operator
 * writes the mapping by hand, as a full DN or just the group's cn, so both sides are parsed and
 * compared in one canonical form rather than as strings.
 */

export interface LdapGroupMapping {
  /** A group DN, or the cn of a group. */
  ldapGroup: string;
  role: string;
}

/** An RDN component as (lower-case attribute, raw value). */
type Ava = [string, string];

/**
 * Parses a DN (RFC 4514) into RDNs, or null when it is not one. Values are unescaped
 * (`\,`, `\2C`, multi-byte `\C3\A9`), so two spellings of one DN parse to the same thing.
 */
export function parseDn(dn: string): Ava[][] | null {
  const rdns: Ava[][] = [];
  let i = 0;
  const n = dn.length;
  const skipSpaces = () => {
    while (i < n && dn[i] === ' ') i++;
  };
  skipSpaces();
  if (i === n) return null;
  for (;;) {
    const rdn: Ava[] = [];
    for (;;) {
      skipSpaces();
      const start = i;
      while (i < n && /[A-Za-z0-9.-]/.test(dn[i])) i++;
      const attr = dn.slice(start, i).toLowerCase();
      if (!attr) return null;
      skipSpaces();
      if (dn[i] !== '=') return null;
      i++;
      skipSpaces();
      const bytes: number[] = [];
      // Spaces are kept as they come and trailing unescaped ones cut off at the end.
      let keep = 0;
      while (i < n && dn[i] !== ',' && dn[i] !== '+' && dn[i] !== ';') {
        if (dn[i] === '\\') {
          const hex = dn.slice(i + 1, i + 3);
          if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
            bytes.push(Number.parseInt(hex, 16));
            i += 3;
          } else if (i + 1 < n) {
            bytes.push(...Buffer.from(dn[i + 1], 'utf8'));
            i += 2;
          } else return null;
          keep = bytes.length;
        } else {
          bytes.push(...Buffer.from(dn[i], 'utf8'));
          i++;
          if (dn[i - 1] !== ' ') keep = bytes.length;
        }
      }
      rdn.push([attr, Buffer.from(bytes.slice(0, keep)).toString('utf8')]);
      if (dn[i] === '+') {
        i++;
        continue;
      }
      break;
    }
    rdns.push(rdn);
    if (i === n) return rdns;
    i++; // ',' or ';'
  }
}

function whitespaceNormalised(s: string): string {
  return s.trim().replace(/\s+/g, ' ').toLowerCase();
}

/** One spelling per DN: case folded, spaces around separators gone, AVAs of an RDN sorted. */
export function normaliseDn(dn: string): string | null {
  const rdns = parseDn(dn);
  if (!rdns) return null;
  return rdns
    .map((rdn) =>
      rdn
        .map(([a, v]) => `${a}=${JSON.stringify(whitespaceNormalised(v))}`)
        .sort()
        .join('+'),
    )
    .join(',');
}

/** The cn that names a group: its DN's first RDN, or the string itself when it is no DN. */
export function groupCn(group: string): string | null {
  const rdns = parseDn(group);
  if (!rdns) return group.includes('=') ? null : whitespaceNormalised(group) || null;
  const cn = rdns[0].find(([a]) => a === 'cn' || a === '2.5.4.3');
  return cn ? whitespaceNormalised(cn[1]) : null;
}

/** The roles the groups give, each once, in the order of the mapping. */
export function rolesFromGroups(groups: string[], mapping: LdapGroupMapping[]): string[] {
  const dns = new Set<string>();
  const cns = new Set<string>();
  for (const g of groups) {
    const dn = normaliseDn(g);
    if (dn) dns.add(dn);
    const cn = groupCn(g);
    if (cn) cns.add(cn);
  }
  const roles: string[] = [];
  for (const m of mapping) {
    const wanted = m.ldapGroup.trim();
    if (!wanted) continue;
    const dn = parseDn(wanted) ? normaliseDn(wanted) : null;
    const hit = dn ? dns.has(dn) : cns.has(whitespaceNormalised(wanted));
    if (hit && !roles.includes(m.role)) roles.push(m.role);
  }
  return roles;
}
