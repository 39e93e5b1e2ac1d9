/**
 * `tern`: the command line of Tern. Tables for people, `-o json` for scripts; waits on tasks
 * with progress unless `--no-wait`; any failure is one line on stderr and a non-zero exit.
 */
import fs from 'node:fs';
import path from 'node:path';
import { dataDir } from '../allinone/config.ts';
import { asTernError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { ApiClient } from './client.ts';
import { auditCommand } from './commands/audit.ts';
import { clusterCommand, groupCommand } from './commands/cluster.ts';
import { doctor } from './commands/doctor.ts';
import { haCommand } from './commands/ha.ts';
import { hostCommand } from './commands/host.ts';
import {
  ldapCommand,
  loginCommand,
  logoutCommand,
  tokenCommand,
  userCommand,
  whoamiCommand,
} from './commands/identity.ts';
import { imageCommand } from './commands/image.ts';
import { alertCommand, taskCommand, templateCommand } from './commands/inventory.ts';
import { poolCommand } from './commands/pool.ts';
import { projectCommand } from './commands/project.ts';
import { keysCommand, secretCommand } from './commands/secret.ts';
import { vmCommand } from './commands/vm.ts';
import { vmExecCommand } from './commands/vm-guest.ts';
import { parseCommandLine } from './flags.ts';
import { printable } from './output.ts';

const usage = `tern: manage VMs on KVM/QEMU hosts

  tern up [--data-dir DIR] [--port 7410] [--agent-port 7411] [--cluster-port 7412]
          [--import-dir DIR]... [--audit-retention-days N]
                                       run all-in-one (manager + local host); image import --path
                                       reads only from import dirs (default DATA-DIR/import);
                                       audit records are kept N days (0, the default: for ever)
  tern doctor                                                   check this machine's prerequisites
  tern vm list [--state S] [--host H] [--name PREFIX] [--limit N] [--cursor C]
  tern vm create NAME... [--template T | --image IMG] [--full] [--vcpus N] [--memory 512M] [--disk 10G]
                      [--iso ISO [--boot cd|disk]] [--firmware bios|uefi]   (ISO: a CD-ROM to install from)
                      [--extra-disk 5G] [--nic user|bridge:BR] [--ip CIDR [--gateway IP] [--dns IP]]
                      [--user-data FILE] [--pool P] [--start]          (NAME may be a range: web-{1..20})
                      [--cpu-mode compat|host] [--group G] [--explain]  (--explain: where it would go, and why)
                      [--project P]                  (the project whose quota it counts against)
  tern vm show NAME
  tern vm cdrom insert VM ISO | eject VM [--force]   change the CD-ROM's medium (--force: a locked tray)
  tern vm console NAME [--bytes N] [--raw]      the serial console's output (--raw: escape sequences too)
  tern vm start|stop|pause|resume NAME...                      (any NAME... may hold ranges: t-{1..100})
  tern vm shutdown NAME... [--timeout SECONDS] [--force]
  tern vm reboot NAME... [--timeout SECONDS] [--force]
  tern vm delete NAME... [--keep-disks] [--force]
  tern vm disk add VM SIZE|POOL:PATH | remove VM INDEX [--keep-disks] | resize VM INDEX SIZE [--grow-fs]
                                   (hot-plugged when the VM runs; --grow-fs: partition and filesystem too)
  tern vm exec VM [--timeout S] [--input FILE|-] [--max-bytes N] [--raw] -- CMD ARGS...
                      run a command in the guest (qemu-ga); its output, and its exit code as tern's
                      (124: still running at the timeout)
  tern vm file get VM PATH [--out FILE] [--max-bytes N] [--raw]   read a file of the guest (qemu-ga)
  tern vm snapshot list VM | create|revert|delete VM NAME
  tern task list|show|wait|cancel [ID]
  tern alert list [--all]
  tern pool list | show POOL | rollback POOL
  tern pool create POOL --template T --size N [--persistent] [--max-unavailable PCT] [--start]
  tern pool version create POOL | test|promote|delete POOL N
  tern host list|show NAME
  tern host add NAME          prints the join token and the agent command that joins the host
  tern host remove NAME       revokes the host's certificate (the host must have no VMs)
  tern host maintenance on|off NAME [--stop-unmovable]   evacuates by live migration, then takes no VMs
  tern host orphans [HOST]    QEMU processes and VM volumes a host holds for VMs the inventory does not know
  tern host orphans adopt HOST ID | remove HOST ID [--force]   --force: also kill a running orphan
  tern vm migrate VM [--to HOST] [--quick] [--target-pool P] [--downtime MS] [--bandwidth MIB/S] [--explain]
  tern vm disk move VM INDEX POOL                         storage migration (live when the VM runs)
  tern cluster show | settings [--cpu-overcommit N] [--memory-overcommit N] [--storage-overcommit N] [--strategy spread|pack]
  tern cluster capacity --size 2cpu,4G,20G [--tolerate K]  VMs that still fit with K hosts failed
  tern group list | create NAME --affinity|--anti-affinity | delete NAME...
  tern ha status | plan | check                            hosts as HA sees them, the restart plan, readiness
  tern ha settings [--enable|--disable] [--timeout S] [--tolerate K] [--strict] [--statefile-pool P]
  tern vm ha VM [--restart restart|best-effort|none] [--priority high|medium|low] [--order N] [--delay S]
  tern template list | show NAME | delete NAME...
  tern template create NAME --from-vm VM [--description TEXT] [--force]
                                 a running Linux VM is generalized through its guest agent, then
                                 shut down; --force seals one that cannot be, as it is
  tern template create NAME --from-image IMG [--vcpus N] [--memory M] [--disk SIZE] [--firmware bios|uefi] [--os linux|windows|other]
  tern image list | show NAME | delete NAME...
  tern image import NAME --path HOSTPATH [--iso] [--format raw|qcow2|vmdk|vhd|vhdx] [--compress]
                                       (HOSTPATH in one of the host's import dirs)
  tern image upload NAME FILE [--iso] [--format F] [--compress]   streamed; disks are stored as
                                       qcow2 (--compress: compressed qcow2)
  tern image verify NAME               re-hash the stored file against its recorded sha256
  tern image export NAME --out FILE    download the stored file (checked against its sha256)
  tern login [--url URL] [--ca FILE] --user NAME   password typed, or TERN_PASSWORD; keeps a 30-day
                       token (and the CA that signed the manager's certificate) in the config
  tern logout | whoami
  tern user list | show NAME | delete NAME...
  tern user create NAME [--role R] [--group G]... [--display-name S] [--password-stdin]
  tern user set NAME [--role R|--no-role] [--disable|--enable] [--display-name S]
  tern user passwd [NAME] [--password-stdin]              without NAME: your own (asks the current one)
  tern user group list | create NAME --role R [--ldap-group DN_OR_CN] | delete NAME... | add|remove NAME USER
  tern token list [--all] | revoke ID
  tern token create NAME [--expires-in-days N] [--scope PERM]... [--user U]   the token is shown once
  tern ldap show | clear | set --url URL --bind-dn DN --user-base DN --user-filter F
                          [--group-base DN] [--group-filter F]   (bind password typed, or TERN_LDAP_BIND_PASSWORD)
  tern project list | show NAME | delete NAME... | add|remove NAME user|group MEMBER
  tern project create NAME [--vms N] [--vcpus N] [--memory 8G] [--disk 100G] [--description S]
  tern project quota NAME [--vms N|none] [--vcpus N|none] [--memory SIZE|none] [--disk SIZE|none]
  tern audit list [--actor A] [--action S] [--object PREFIX] [--result ok|denied|failed] [--since ISO] [--limit N]
  tern secret list | show NAME | reveal NAME | delete NAME...
  tern secret set NAME [--kind K] [--object O]           the value from stdin, or typed; never an argument
  tern keys status | rotate | backup --out FILE          backup passphrase typed twice, or TERN_KEY_PASSPHRASE
                       restore is offline: bin/tern-manager keys restore --from FILE [--key-file F]

  -o json        machine-readable output
  --no-wait      return once a task is accepted
  --version      the version of this tern
`;

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/**
 * Exits once stdout and stderr are written out. Into a pipe, what the pipe cannot take at once
 * is written later; process.exit before then cuts the output (JSON at 64 KiB) with exit 0.
 */
function exitWhenFlushed(code: number): void {
  const flushed = [process.stdout, process.stderr].map(
    (stream) =>
      new Promise<void>((resolve) => {
        // A reader that went away (`tern vm list | head -1`) takes nothing more: nothing to wait for.
        stream.once('error', () => resolve());
        stream.write('', () => resolve());
      }),
  );
  void Promise.all(flushed).then(() => process.exit(code));
}

async function up(flags: ReturnType<typeof parseCommandLine>['flags']): Promise<void> {
  // Loaded only here: the rest of the CLI starts faster without the server modules.
  const { startAllInOne } = await import('../allinone/up.ts');
  const log = createLogger('tern');
  const aio = await startAllInOne({
    dataDir: path.resolve(flags['data-dir'] ?? dataDir()),
    managerPort: Number(flags.port ?? 7410),
    agentPort: Number(flags['agent-port'] ?? 7411),
    clusterPort: Number(flags['cluster-port'] ?? 7412),
    ...(flags['import-dir'].length > 0
      ? { importDirs: flags['import-dir'].map((d) => path.resolve(d)) }
      : {}),
    auditRetentionDays:
      flags['audit-retention-days'] === undefined ? undefined : Number(flags['audit-retention-days']),
    log,
  });
  process.stderr.write(
    `Tern is running: API ${aio.manager.url}/api/v1 (OpenAPI at /api/v1/openapi.json). Try: bin/tern vm create demo --template tiny --start\n`,
  );
  const stop = () => {
    process.stderr.write('stopping Tern (VMs keep running)\n');
    void aio.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

async function main(argv: string[]): Promise<number> {
  const { positionals, flags } = parseCommandLine(argv);
  const [group, sub, ...args] = positionals;
  if (flags.version) {
    process.stdout.write(`tern ${version()}\n`);
    return 0;
  }
  if (flags.help || !group || group === 'help') {
    process.stdout.write(usage);
    return 0;
  }
  switch (group) {
    case 'up':
      await up(flags);
      return -1;
    case 'doctor':
      return doctor(flags);
    case 'vm':
      // The guest command's exit code is tern's.
      if (sub === 'exec') return vmExecCommand(ApiClient.fromEnvironment(), args, flags);
      await vmCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'task':
      await taskCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'host':
      await hostCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'cluster':
      await clusterCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'ha':
      await haCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'group':
      await groupCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'pool':
      await poolCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'alert':
      await alertCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'image':
      await imageCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'template':
      await templateCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'login':
      await loginCommand(flags);
      return 0;
    case 'logout':
      await logoutCommand(ApiClient.fromEnvironment(), flags);
      return 0;
    case 'whoami':
      await whoamiCommand(ApiClient.fromEnvironment(), flags);
      return 0;
    case 'user':
      await userCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'token':
      await tokenCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'ldap':
      await ldapCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'project':
      await projectCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'audit':
      await auditCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'secret':
      await secretCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    case 'keys':
      await keysCommand(ApiClient.fromEnvironment(), sub, args, flags);
      return 0;
    default:
      process.stderr.write(`tern: unknown command ${group}\n${usage}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) exitWhenFlushed(code);
  },
  (err) => {
    const e = asTernError(err);
    process.stderr.write(`tern: ${printable(e.message, true)}\n`);
    if (process.env.TERN_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    exitWhenFlushed(e.code === 'invalid_request' ? 2 : 1);
  },
);
