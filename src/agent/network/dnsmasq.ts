/**
 * One network's dnsmasq on one host: written from the spec, started as a daemon (so it serves
 * DHCP through an agent restart, as VMs run through one), found again by its pid file, told to
 * re-read its leases and names with SIGHUP, and restarted by the agent's watch if it dies.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { HostNetworkSpec } from '../../wire/network.ts';
import { type DnsmasqPaths, dhcpHostsFile, dnsmasqConf, hostsFile } from './dnsmasq-config.ts';
import type { HostShell } from './host-shell.ts';

export function dnsmasqPaths(dir: string): DnsmasqPaths {
  const f = (name: string) => path.join(dir, name);
  return {
    conf: f('dnsmasq.conf'),
    dhcpHosts: f('dnsmasq.dhcp-hosts'),
    hosts: f('dnsmasq.hosts'),
    leases: f('dnsmasq.leases'),
    pid: f('dnsmasq.pid'),
    log: f('dnsmasq.log'),
  };
}

function writeIfChanged(file: string, text: string): boolean {
  try {
    if (fs.readFileSync(file, 'utf8') === text) return false;
  } catch {
    // Not there yet.
  }
  fs.writeFileSync(`${file}.new`, text, { mode: 0o600 });
  fs.renameSync(`${file}.new`, file);
  return true;
}

/** The pid of the dnsmasq serving `paths`, or 0 when none runs. */
export function dnsmasqPid(paths: DnsmasqPaths): number {
  let pid = 0;
  try {
    pid = Number.parseInt(fs.readFileSync(paths.pid, 'utf8'), 10);
    // A recycled pid is not ours: the process must be a dnsmasq reading this very file.
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(paths.conf) && alive(pid) ? pid : 0;
  } catch {
    return 0;
  }
}

/**
 * Writes the files and makes a dnsmasq serve them: started when none runs, restarted when its
 * main file changed, told to re-read leases and names when only they changed.
 */
export async function ensureDnsmasq(
  shell: HostShell,
  spec: HostNetworkSpec,
  paths: DnsmasqPaths,
): Promise<number> {
  const confChanged = writeIfChanged(paths.conf, dnsmasqConf(spec, paths));
  const leasesChanged = writeIfChanged(paths.dhcpHosts, dhcpHostsFile(spec));
  const namesChanged = writeIfChanged(paths.hosts, hostsFile(spec));
  let pid = dnsmasqPid(paths);
  if (pid && confChanged) {
    await stopDnsmasq(paths);
    pid = 0;
  }
  if (!pid) {
    // dnsmasq checks its configuration and binds before it detaches: an error is reported here.
    await shell.run(['dnsmasq', `--conf-file=${paths.conf}`]);
    pid = dnsmasqPid(paths);
  } else if (leasesChanged || namesChanged) {
    process.kill(pid, 'SIGHUP');
  }
  return pid;
}

/** Whether a process is still there (a zombie nobody reaped yet is not). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Ends the network's dnsmasq, waiting (bounded) until it is gone so its address is free again. */
export async function stopDnsmasq(paths: DnsmasqPaths): Promise<void> {
  const pid = dnsmasqPid(paths);
  if (pid) {
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 5000;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  fs.rmSync(paths.pid, { force: true });
}
