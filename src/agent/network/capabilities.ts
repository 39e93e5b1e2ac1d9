/**
 * What this host's kernel and tools can do for networks, found by trying each in a throwaway
 * network namespace (nothing of the host's own network is touched), once per agent.
 */
import { execFile } from 'node:child_process';
import type { NetworkCapabilities } from '../../wire/network.ts';

function probe(argv: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 15_000 }, (err, _out, stderr) =>
      resolve(err ? (stderr || err.message).trim().split('\n')[0] : null),
    );
  });
}

const inScratchNamespace = (script: string) => ['unshare', '--net', 'sh', '-ec', script];

export async function detectCapabilities(): Promise<NetworkCapabilities> {
  const [vlan, vlanFiltering, vxlan, nftables, dnsmasq] = await Promise.all([
    probe(
      inScratchNamespace(
        'ip link add v0 type veth peer name v1; ip link add link v0 name v0.5 type vlan id 5',
      ),
    ),
    probe(inScratchNamespace('ip link add b0 type bridge vlan_filtering 1')),
    probe(inScratchNamespace('ip link add x0 type vxlan id 5 dstport 4789 local 127.0.0.1 nolearning')),
    probe(inScratchNamespace('nft add table bridge tern_probe')),
    probe(['dnsmasq', '--version']),
  ]);
  const reasons: string[] = [];
  if (vlan) reasons.push(`no 802.1Q VLAN devices: ${vlan}`);
  if (vlanFiltering) reasons.push(`no bridge VLAN filtering: ${vlanFiltering}`);
  if (vxlan) reasons.push(`no VXLAN devices: ${vxlan}`);
  if (nftables) reasons.push(`nftables unusable (install nftables): ${nftables}`);
  if (dnsmasq) reasons.push(`dnsmasq missing (install dnsmasq-base): ${dnsmasq}`);
  return {
    vlan: !vlan && !vlanFiltering,
    vxlan: !vxlan,
    nftables: !nftables,
    dnsmasq: !dnsmasq,
    reasons: reasons.map((r) => r.slice(0, 500)),
  };
}
