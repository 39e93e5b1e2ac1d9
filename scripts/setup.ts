/**
 * Installs what Tern needs on a Debian host (QEMU, qemu-img, the guest agent, seed image
 * tools) and builds the tiny guest, plus, with `--cloud-guest` (the tests), the Debian cloud
 * guest. Safe to run again: it only installs what is missing, and the guest builds answer from
 * their caches.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';

const packages = [
  'qemu-system-x86',
  'qemu-utils',
  'qemu-guest-agent',
  'busybox-static',
  'genisoimage',
  // UEFI firmware for VMs (--firmware uefi).
  'ovmf',
  'e2fsprogs',
  'cpio',
  'xz-utils',
  'zstd',
  // The HA fault tests: a network namespace and a FUSE view of the shared pool per host.
  'iproute2',
  'bindfs',
  // Virtual networks: DHCP and DNS per network (the binary only, no system service), and the
  // networks' and ports' packet filters.
  'dnsmasq-base',
  'nftables',
  // Identity and key-store tests run a real directory server and a real PostgreSQL.
  'slapd',
  'ldap-utils',
  'postgresql',
  // The guests' builds: the live ISO of the tiny guest, and the cloud guest's disk image.
  'isolinux',
  'syslinux-common',
  'xorriso',
  'mmdebstrap',
  'fdisk',
  'dosfstools',
  'mtools',
  'syslinux',
  'systemd-boot-efi',
];

function installed(pkg: string): boolean {
  // dpkg-query's own format syntax, not a template string.
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query format
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

function asRoot(cmd: string[]): void {
  const argv = process.getuid?.() === 0 ? cmd : ['sudo', ...cmd];
  execFileSync(argv[0], argv.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}

const missing = packages.filter((p) => !installed(p));
if (missing.length > 0) {
  process.stderr.write(`setup: installing ${missing.join(' ')}\n`);
  try {
    asRoot(['apt-get', 'install', '-y', '-q', ...missing]);
  } catch {
    // A fresh machine has no package lists yet.
    asRoot(['apt-get', 'update', '-q']);
    asRoot(['apt-get', 'install', '-y', '-q', ...missing]);
  }
}

const root = path.resolve(import.meta.dirname, '..');
const out = execFileSync('bash', [path.join(root, 'guest', 'build.sh')], {
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'inherit'],
});
process.stderr.write(`setup: tiny guest ready in ${out.trim().split('\n').pop()}\n`);
// The cloud guest (Debian with systemd and cloud-init) serves only the tests: its first build
// downloads ~200 MB, which running Tern does not need.
if (process.argv.includes('--cloud-guest')) {
  const cloud = execFileSync('bash', [path.join(root, 'guest', 'cloud', 'build.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  process.stderr.write(`setup: cloud guest ready in ${cloud.trim().split('\n').pop()}\n`);
}
