/**
 * Every kind of task the manager runs, built once and registered with the engine before crash
 * recovery, so an interrupted task resumes whatever serves HTTP. Handlers submit these.
 */
import type { BackupDeps } from './backup/deps.ts';
import { backupGcTask } from './backup/gc.ts';
import { backupJobTask, type JobRunDeps } from './backup/job-run.ts';
import { backupLiveRestoreTask } from './backup/live-restore.ts';
import { backupProveTask } from './backup/prove.ts';
import { backupPruneTask } from './backup/prune.ts';
import { backupRestoreTask } from './backup/restore.ts';
import { backupRunTask } from './backup/run.ts';
import { backupSyncTask } from './backup/sync.ts';
import { backupVerifyTask } from './backup/verify.ts';
import { type FailoverDeps, failoverTask } from './ha/failover.ts';
import type { HaMonitor } from './ha/monitor.ts';
import {
  type PoolDeps,
  poolCreateTask,
  rollTask,
  versionCreateTask,
  versionDeleteTask,
  versionTestTask,
} from './imagepools/tasks.ts';
import {
  type ImageDeps,
  deleteTask as imageDeleteTask,
  importTask,
  verifyTask,
} from './library/image-tasks.ts';
import { templateDeleteTask } from './library/template-delete.ts';
import { templateFromImageTask } from './library/template-from-image.ts';
import { maintenanceTask } from './migration/evacuate.ts';
import { migrateTask } from './migration/migrate.ts';
import { moveDiskTask } from './migration/storage.ts';
import { type CycleDeps, replicationCycleTask } from './replication/cycle.ts';
import { failoverKind } from './replication/failover.ts';
import type { ReplicaFailoverDeps } from './replication/failover-deps.ts';
import { testFailoverKinds } from './replication/test-failover.ts';
import type { SecretStore } from './secrets/store.ts';
import type { TaskEngine, TaskKind } from './tasks/engine.ts';
import { cdromTask } from './vms/cdrom.ts';
import { createTask } from './vms/create.ts';
import { deleteTask } from './vms/delete.ts';
import { attachTask, detachTask, resizeTask } from './vms/disks.ts';
import { type NicTaskDeps, nicAddTask, nicLinkTask, nicRemoveTask } from './vms/nics.ts';
import { pauseTask, shutdownTask, startTask, stopTask } from './vms/power.ts';
import { rebootTask } from './vms/reboot.ts';
import { type SealDeps, sealTask } from './vms/seal.ts';
import { snapshotCreateTask, snapshotDeleteTask, snapshotRevertTask } from './vms/snapshots.ts';

/**
 * What the task builders use: a part of the manager's services (api/context.ts gives them all,
 * the kinds included; this file does not import it back).
 */
type KindServices = SealDeps &
  ImageDeps &
  PoolDeps &
  FailoverDeps &
  NicTaskDeps &
  BackupDeps &
  JobRunDeps &
  CycleDeps &
  ReplicaFailoverDeps & { secrets: SecretStore; ha: Pick<HaMonitor, 'isHealthy' | 'healthOf'> };

export function taskKinds(s: KindServices) {
  // A backup job runs these as tasks of their own.
  const backupRun = backupRunTask(s);
  const backupPrune = backupPruneTask(s);
  // A restore test restores through one.
  const backupRestore = backupRestoreTask(s);
  const backupProve = backupProveTask(s, backupRestore);
  const { testFailover, testStop } = testFailoverKinds(s);
  return {
    vmCreate: createTask(s),
    vmDelete: deleteTask(s),
    vmStart: startTask(s),
    vmStop: stopTask(s),
    vmPause: pauseTask(s, 'pause'),
    vmResume: pauseTask(s, 'resume'),
    vmShutdown: shutdownTask(s),
    vmReboot: rebootTask(s),
    vmCdrom: cdromTask(s),
    diskResize: resizeTask(s),
    diskAttach: attachTask(s),
    diskDetach: detachTask(s),
    diskMove: moveDiskTask(s),
    nicAdd: nicAddTask(s),
    nicRemove: nicRemoveTask(s),
    nicLink: nicLinkTask(s),
    snapshotCreate: snapshotCreateTask(s),
    snapshotRevert: snapshotRevertTask(s),
    snapshotDelete: snapshotDeleteTask(s),
    migrate: migrateTask(s),
    maintenance: maintenanceTask(s),
    templateSeal: sealTask(s),
    templateDelete: templateDeleteTask(s),
    templateFromImage: templateFromImageTask(s),
    imageImport: importTask(s),
    imageDelete: imageDeleteTask(s),
    imageVerify: verifyTask(s),
    poolCreate: poolCreateTask(s),
    poolVersionCreate: versionCreateTask(s),
    poolVersionTest: versionTestTask(s),
    poolRoll: rollTask(s),
    poolVersionDelete: versionDeleteTask(s),
    backupRun,
    backupPrune,
    backupJob: backupJobTask(s, { backupRun, backupPrune, backupProve }),
    backupRestore,
    backupLiveRestore: backupLiveRestoreTask(s),
    backupProve,
    backupVerify: backupVerifyTask(s),
    backupGc: backupGcTask(s),
    backupSync: backupSyncTask(s),
    replicationCycle: replicationCycleTask(s),
    // A failed host's VMs that found no room elsewhere may start on it once the watch sees it back.
    haFailover: failoverTask(s, (hostId) => s.ha.isHealthy(hostId)),
    replicationTestFailover: testFailover,
    replicationTestStop: testStop,
    replicationFailover: failoverKind(s),
  };
}

export type TaskKinds = ReturnType<typeof taskKinds>;

/** Builds every kind and registers it with `engine`. */
export function registerTaskKinds(s: KindServices, engine: TaskEngine): TaskKinds {
  const kinds = taskKinds(s);
  for (const kind of Object.values(kinds) as TaskKind<unknown>[]) engine.register(kind);
  return kinds;
}
