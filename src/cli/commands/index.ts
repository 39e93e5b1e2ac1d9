/** Every command of the CLI, in the order help lists them, and the groups they fall in. */
import type { Registry } from '../registry.ts';
import { auditCommands } from './audit.ts';
import { backupCommands } from './backup.ts';
import { backupFileCommands } from './backup-files.ts';
import { backupJobCommands } from './backup-job.ts';
import { backupSyncCommands } from './backup-sync.ts';
import { clusterCommands } from './cluster.ts';
import { doctorCommands } from './doctor.ts';
import { haCommands } from './ha.ts';
import { helpCommands } from './help.ts';
import { hostCommands } from './host.ts';
import { identityCommands } from './identity.ts';
import { imageCommands } from './image.ts';
import { inventoryCommands } from './inventory.ts';
import { networkCommands } from './network.ts';
import { poolCommands } from './pool.ts';
import { projectCommands } from './project.ts';
import { replicationCommands } from './replication.ts';
import { replicationFailoverCommands } from './replication-failover.ts';
import { secretCommands } from './secret.ts';
import { securityGroupCommands } from './security-group.ts';
import { siteCommands } from './site.ts';
import { upCommands } from './up.ts';
import { vmCommands } from './vm.ts';

export const registry: Registry = {
  commands: [
    ...upCommands,
    ...doctorCommands,
    ...vmCommands,
    ...inventoryCommands,
    ...poolCommands,
    ...hostCommands,
    ...clusterCommands,
    ...haCommands,
    ...imageCommands,
    ...networkCommands,
    ...backupCommands,
    ...backupFileCommands,
    ...backupJobCommands,
    ...backupSyncCommands,
    ...siteCommands,
    ...replicationCommands,
    ...replicationFailoverCommands,
    ...securityGroupCommands,
    ...identityCommands,
    ...projectCommands,
    ...auditCommands,
    ...secretCommands,
    ...helpCommands,
  ],
  groups: [
    { name: 'vm', summary: 'VMs: create, power, disks, CD-ROM, snapshots, guest commands, migration' },
    { name: 'task', summary: 'the tasks that carry out long operations' },
    { name: 'alert', summary: 'what needs attention' },
    { name: 'template', summary: 'templates VMs are cloned from' },
    { name: 'pool', summary: 'image pools: many VMs of one template, in versions' },
    { name: 'host', summary: 'the hosts of the cluster, how they join and leave, maintenance' },
    { name: 'cluster', summary: 'the cluster as a whole: settings and capacity' },
    { name: 'group', summary: 'placement groups: affinity and anti-affinity' },
    { name: 'ha', summary: 'high availability: settings, status, the restart plan' },
    { name: 'image', summary: 'the image library: disk images and ISOs' },
    { name: 'network', summary: 'managed networks: bridge, nat, isolated, overlay' },
    { name: 'backup', summary: 'backups: datastores, run, list, restore, verify, prune, gc' },
    { name: 'replication', summary: 'replicated VMs: recovery points, test failover' },
    { name: 'security-group', summary: 'the rules NICs on managed networks are given' },
    { name: 'user', summary: 'users and user groups' },
    { name: 'token', summary: 'API tokens' },
    { name: 'ldap', summary: 'logging in through a directory' },
    { name: 'project', summary: 'projects: quotas and who may create VMs in them' },
    { name: 'audit', summary: 'the audit log' },
    { name: 'secret', summary: 'secrets, encrypted at rest' },
    { name: 'keys', summary: 'the key that encrypts secrets' },
  ],
};
