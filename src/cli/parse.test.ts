import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TernError } from '../errors.ts';
import { registry } from './commands/index.ts';
import { type Parsed, parseCommandLine } from './parse.ts';

const parse = (...argv: string[]) => parseCommandLine(registry, argv);

function run(...argv: string[]): Extract<Parsed, { kind: 'run' }> {
  const p = parse(...argv);
  assert.equal(p.kind, 'run', argv.join(' '));
  return p as Extract<Parsed, { kind: 'run' }>;
}

function usageError(argv: string[], message: RegExp): void {
  assert.throws(
    () => parse(...argv),
    (err: unknown) => err instanceof TernError && err.code === 'invalid_request' && message.test(err.message),
    argv.join(' '),
  );
}

test('--iso names an ISO in vm commands and stays a switch of image import', () => {
  const vm = run('vm', 'create', 'x', '--iso', 'inst', '--boot', 'cd', '--firmware', 'uefi');
  assert.equal(vm.flags.isoImage, 'inst');
  assert.equal(vm.command.path, 'vm create');
  assert.deepEqual(vm.args, ['x']);
  const img = run('image', 'import', 'inst', '--path', '/tmp/x.iso', '--iso');
  assert.equal(img.flags.iso, true);
  assert.equal(img.command.path, 'image import');
  assert.deepEqual(img.args, ['inst']);
  const json = run('-o', 'json', 'vm', 'create', 'y', '--iso', 'inst');
  assert.equal(json.flags.isoImage, 'inst');
  assert.equal(json.flags.output, 'json');
});

test('a command is its longest run of known words; flags stand anywhere; -- ends them', () => {
  const exec = run('vm', 'exec', 'g1', '--timeout', '1', '--', 'sh', '-c', 'exit 3');
  assert.equal(exec.command.path, 'vm exec');
  assert.deepEqual(exec.args, ['g1', 'sh', '-c', 'exit 3']);
  assert.equal(exec.flags.timeout, '1');
  const orphans = run('host', 'orphans', 'h1');
  assert.equal(orphans.command.path, 'host orphans');
  assert.deepEqual(orphans.args, ['h1']);
  assert.equal(run('host', 'orphans', 'remove', 'h1', 'x', '--force').command.path, 'host orphans remove');
  assert.equal(
    run('host', 'maintenance', 'on', 'h1', '--stop-unmovable').command.path,
    'host maintenance on',
  );
  assert.deepEqual(run('vm', 'create', 'a', '--nic', 'user', '--nic', 'bridge:br0').flags.nic, [
    'user',
    'bridge:br0',
  ]);
  // Flags not given hold their "not given" value, whether or not the command takes them.
  const list = run('vm', 'list');
  assert.equal(list.flags.force, false);
  assert.deepEqual(list.flags.group, []);
  assert.equal(list.flags.output, 'table');
});

test('a group alone runs its default command, or is a usage mistake that shows its help', () => {
  assert.equal(run('cluster').command.path, 'cluster show');
  assert.equal(run('user', 'group').command.path, 'user group list');
  assert.deepEqual(parse('vm'), { kind: 'help', path: ['vm'], error: true });
  assert.deepEqual(parse('vm', '--help'), { kind: 'help', path: ['vm'], error: false });
  assert.deepEqual(parse('cluster', '--help'), { kind: 'help', path: ['cluster'], error: false });
  assert.deepEqual(parse('vm', 'create', '-h'), { kind: 'help', path: ['vm', 'create'] });
  assert.deepEqual(parse(), { kind: 'help', path: [], error: false });
  assert.deepEqual(parse('--version'), { kind: 'version' });
});

test('unknown commands and flags are usage errors naming the nearest', () => {
  usageError(['vm', 'lst'], /^unknown command vm lst; did you mean tern vm list\?$/);
  usageError(['vn', 'list'], /^unknown command vn; did you mean tern vm\?$/);
  usageError(['vm', 'disk', 'ad', 'x', '1G'], /did you mean tern vm disk add\?/);
  usageError(['nosuch'], /^unknown command nosuch \(tern help lists them\)$/);
  usageError(['vm', 'list', '--colour'], /^unknown flag --colour for tern vm list \(tern vm list --help/);
  usageError(['vm', 'create', 'x', '--templte', 'tiny'], /did you mean --template\?$/);
  // A flag of another command is not taken.
  usageError(['vm', 'list', '--template', 'tiny'], /unknown flag --template for tern vm list/);
  usageError(['vm', 'shutdown', 'x', '--timeout', 'soon'], /^--timeout takes a whole number$/);
  usageError(['vm', 'list', '-o', 'yaml'], /^--output is table or json$/);
  usageError(['vm', 'create', 'x', '--template'], /argument missing/);
});

test('every command line the tests and docs use still parses to its command', () => {
  const forms: [string[], string][] = [
    [['vm', 'create', 'big', '--template', 'sim', '--vcpus', '4', '--project', 'dev'], 'vm create'],
    [['vm', 'create', 'cli-1', '--template', 'tiny', '--memory', '384M', '--vcpus', '2'], 'vm create'],
    [['vm', 'delete', 'cli-1', '--no-wait', '-o', 'json'], 'vm delete'],
    [['vm', 'delete', 't-1', 't-2', 't-{3..9}'], 'vm delete'],
    [['vm', 'reboot', 'p1', '--force'], 'vm reboot'],
    [['vm', 'shutdown', 'p1', '--timeout', '2'], 'vm shutdown'],
    [['vm', 'cdrom', 'eject', 'cli-vm'], 'vm cdrom eject'],
    [['vm', 'cdrom', 'insert', 'cli-vm', 'inst'], 'vm cdrom insert'],
    [['vm', 'disk', 'resize', 'g1', '0', '1G', '--grow-fs'], 'vm disk resize'],
    [['vm', 'exec', 'g1', '--input', '-', '--', 'tr', 'a-z', 'A-Z'], 'vm exec'],
    [['vm', 'file', 'get', 'g1', '/etc/hostname', '--out', 'f'], 'vm file get'],
    [['image', 'upload', 'cli-up', 'f.qcow2', '--compress'], 'image upload'],
    [['image', 'export', 'digest', '--out', 'f'], 'image export'],
    [['image', 'show', 'cli-up', '-o', 'json'], 'image show'],
    [['template', 'create', 'cli-tpl', '--from-image', 'deb', '--firmware', 'uefi'], 'template create'],
    [['template', 'list', '-o', 'json'], 'template list'],
    [['doctor', '-o', 'json'], 'doctor'],
    [['login', '--url', 'https://m', '--ca', 'ca.pem', '--user', 'alice'], 'login'],
    [
      ['user', 'create', 'alice', '--role', 'user', '--display-name', 'Alice', '--password-stdin'],
      'user create',
    ],
    [['secret', 'set', 'db-password', '--kind', 'password', '--object', 'vm:small'], 'secret set'],
    [['audit', 'list', '--actor', 'alice', '--result', 'denied', '-o', 'json'], 'audit list'],
    [['keys', 'backup', '--out', 'f'], 'keys backup'],
    [['project', 'quota', 'dev', '--vcpus', 'none'], 'project quota'],
    [['project', 'quota', 'dev', '--vms', '5', '--vcpus', '3'], 'project quota'],
    [['project', 'add', 'dev', 'user', 'alice'], 'project add'],
    [['project', 'delete', 'p-{1..2}', 'p-nosuch', 'p-10'], 'project delete'],
    [['token', 'list', '--all', '-o', 'json'], 'token list'],
    [
      ['token', 'create', 'x', '--expires-in-days', '3', '--scope', 'vm.read', '--scope', 'vm.create'],
      'token create',
    ],
    [['task', 'wait', 'abc'], 'task wait'],
    [['up', '--data-dir', 'd', '--port', '1', '--import-dir', 'a', '--import-dir', 'b'], 'up'],
    [
      ['ha', 'settings', '--enable', '--timeout', '30', '--strict', '--statefile-pool', 'shared'],
      'ha settings',
    ],
    [
      ['vm', 'ha', 'x', '--restart', 'best-effort', '--priority', 'high', '--order', '2', '--delay', '5'],
      'vm ha',
    ],
    [['cluster', 'capacity', '--size', '2cpu,4G,20G', '--tolerate', '1'], 'cluster capacity'],
    [['cluster', 'settings', '--strategy', 'pack', '--downtime', '300'], 'cluster settings'],
    [['group', 'create', 'g', '--anti-affinity'], 'group create'],
    [
      [
        'pool',
        'create',
        'p',
        '--template',
        't',
        '--size',
        '3',
        '--persistent',
        '--max-unavailable',
        '50',
        '--start',
      ],
      'pool create',
    ],
    [['pool', 'version', 'promote', 'p', '2'], 'pool version promote'],
    [
      [
        'vm',
        'migrate',
        'x',
        '--to',
        'h2',
        '--quick',
        '--target-pool',
        'p',
        '--bandwidth',
        '100',
        '--explain',
      ],
      'vm migrate',
    ],
    [
      ['ldap', 'set', '--url', 'ldap://x', '--bind-dn', 'a', '--user-base', 'b', '--user-filter', 'c'],
      'ldap set',
    ],
    [['user', 'set', 'bob', '--no-role', '--disable'], 'user set'],
    [['user', 'group', 'create', 'ops', '--role', 'operator', '--ldap-group', 'ops'], 'user group create'],
    [['vm', 'console', 'x', '--bytes', '100', '--raw'], 'vm console'],
    [['host', 'list'], 'host list'],
    [['whoami', '-o', 'json'], 'whoami'],
    [['completion', 'bash'], 'completion'],
    [['help', 'vm', 'create'], 'help'],
  ];
  for (const [argv, path] of forms) assert.equal(run(...argv).command.path, path, argv.join(' '));
});
