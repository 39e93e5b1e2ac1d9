/** What the backup tasks need from the rest of the manager. */
import type { VmDeps } from '../vms/deps.ts';
import type { Datastores } from './datastores.ts';
import type { BackupInventory } from './inventory.ts';

export interface BackupDeps extends VmDeps {
  datastores: Datastores;
  backups: BackupInventory;
}
