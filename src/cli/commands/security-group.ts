/** `tern security-group …`: rule sets for NICs on managed networks. */
import { TernError } from '../../errors.ts';
import { securityGroupRoutes } from '../../wire/api/security-groups.ts';
import { Direction, Protocol, type SecurityGroup, type SecurityRule, Verdict } from '../../wire/network.ts';
import { deleteEach } from '../bulk.ts';
import type { ApiClient } from '../client.ts';
import { type Flags, isOneOf, oneOf, wordList, wordsOf } from '../flags.ts';
import { printList, printObject } from '../output.ts';
import { type Command, type FlagUse, viaGroup } from '../registry.ts';

const directions = wordsOf(Direction);
const protocols = wordsOf(Protocol);
const verdicts = wordsOf(Verdict);
const either = verdicts.join('|');

const usage = `usage: tern security-group list | show NAME | delete NAME...
       tern security-group create NAME [--inbound ${either}] [--outbound ${either}] [--rule RULE]...
       tern security-group set NAME [--inbound ${either}] [--outbound ${either}] [--rule RULE]...
RULE: "${directions.join('|')} ${protocols.join('|')} [PORT|FROM-TO] [CIDR|group:NAME]", e.g. "in tcp 22", "in tcp 5432 group:web"`;

/** One rule as written on the command line. */
export function parseRule(text: string): SecurityRule {
  const words = text.trim().split(/\s+/);
  const bad = (why: string) => new TernError('invalid_request', `--rule "${text}": ${why}\n${usage}`);
  const [dir, proto, ...rest] = words;
  if (!isOneOf(dir, directions)) throw bad(`it starts with ${wordList(directions)}`);
  if (!isOneOf(proto, protocols)) throw bad(`the protocol is ${wordList(protocols)}`);
  const rule: SecurityRule = { direction: dir, protocol: proto };
  for (const w of rest) {
    const ports = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(w);
    if (ports && !rule.ports) {
      rule.ports = { from: Number(ports[1]), to: Number(ports[2] ?? ports[1]) };
    } else if (/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(w) && !rule.peer) {
      rule.peer = { cidr: w };
    } else if (w.startsWith('group:') && !rule.peer) {
      rule.peer = { group: w.slice('group:'.length) };
    } else throw bad(`${w} is neither ports, an address range nor group:NAME`);
  }
  return rule;
}

export const ruleText = (r: SecurityRule): string =>
  [
    r.direction,
    r.protocol,
    r.ports ? (r.ports.from === r.ports.to ? `${r.ports.from}` : `${r.ports.from}-${r.ports.to}`) : null,
    r.peer ? ('cidr' in r.peer ? r.peer.cidr : `group:${r.peer.group}`) : null,
  ]
    .filter(Boolean)
    .join(' ');

/** What a group does with traffic no rule names: rules only open a deny. */
function verdictText(v: 'allow' | 'deny'): string {
  return v === 'deny' ? 'deny unless a rule allows' : 'allow';
}

function defaults(flags: Flags) {
  return {
    ...(flags.inbound ? { inbound: oneOf(flags.inbound, verdicts, '--inbound') } : {}),
    ...(flags.outbound ? { outbound: oneOf(flags.outbound, verdicts, '--outbound') } : {}),
  };
}

function showGroup(group: SecurityGroup, flags: Flags): void {
  printObject(flags.output, group, (g) => [
    ['name', g.name],
    ['inbound', verdictText(g.inbound)],
    ['outbound', verdictText(g.outbound)],
    ['rules', g.rules.map(ruleText).join('; ') || 'none'],
    ['created', g.createdAt],
  ]);
}

export async function securityGroupCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const name = args[0] ?? '';
  if ((sub === 'list' || sub === undefined) && args.length === 0) {
    const { items } = await api.call(securityGroupRoutes.list);
    return printList(flags.output, items, ['NAME', 'INBOUND', 'OUTBOUND', 'RULES'], (g) => [
      g.name,
      g.inbound,
      g.outbound,
      g.rules.map(ruleText).join('; '),
    ]);
  }
  if (sub === 'show' && args.length === 1)
    return showGroup(await api.call(securityGroupRoutes.show, { params: { group: name } }), flags);
  if (sub === 'create' && args.length === 1) {
    const body = { name, ...defaults(flags), rules: flags.rule.map(parseRule) };
    return showGroup(await api.call(securityGroupRoutes.create, { body }), flags);
  }
  if (sub === 'set' && args.length === 1) {
    const body = { ...defaults(flags), ...(flags.rule.length ? { rules: flags.rule.map(parseRule) } : {}) };
    if (!Object.keys(body).length) throw new TernError('invalid_request', usage);
    return showGroup(await api.call(securityGroupRoutes.update, { params: { group: name }, body }), flags);
  }
  if (sub === 'delete' && args.length > 0)
    return deleteEach(
      args,
      'usage: tern security-group delete NAME...',
      'security group',
      flags.output,
      (group) => api.call(securityGroupRoutes.remove, { params: { group } }),
    );
  throw new TernError('invalid_request', usage);
}

const securityGroup = viaGroup(securityGroupCommand);
const ruleFlags: FlagUse[] = ['inbound', 'outbound', 'rule'];

export const securityGroupCommands: Command[] = [
  { path: 'security-group list', summary: 'security groups', groupDefault: true, run: securityGroup },
  { path: 'security-group show', args: 'NAME', summary: 'one security group', run: securityGroup },
  {
    path: 'security-group create',
    args: 'NAME',
    summary: 'a security group (inbound denied, outbound allowed, unless said otherwise)',
    details:
      'Every NIC on a managed network may send only from its own MAC and address; a group adds allow rules on top.',
    flags: ruleFlags,
    run: securityGroup,
  },
  {
    path: 'security-group set',
    args: 'NAME',
    summary: "change a group's defaults, or replace its rules",
    flags: ruleFlags,
    run: securityGroup,
  },
  {
    path: 'security-group delete',
    args: 'NAME...',
    summary: 'delete groups no NIC uses',
    run: securityGroup,
  },
];
