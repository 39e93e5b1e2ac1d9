/**
 * Schema migrations, in order, written with Kysely's schema builder so the same steps run on
 * SQLite and (for manager clusters) PostgreSQL. Never edit a released migration; add one.
 */
import type { Migration, MigrationProvider } from 'kysely';
import { migration as m0001 } from './migrations/0001-foundation.ts';
import { migration as m0002 } from './migrations/0002-images.ts';
import { migration as m0003 } from './migrations/0003-provisioning.ts';
import { migration as m0004 } from './migrations/0004-alerts.ts';
import { migration as m0005 } from './migrations/0005-image-pools.ts';
import { migration as m0006 } from './migrations/0006-cluster.ts';
import { migration as m0007 } from './migrations/0007-ha.ts';
import { migration as m0008 } from './migrations/0008-ha-acknowledged.ts';
import { migration as m0009 } from './migrations/0009-identity.ts';
import { migration as m0010 } from './migrations/0010-group-members-by-user.ts';
import { migration as m0011 } from './migrations/0011-kept-volumes.ts';
import { migration as m0012 } from './migrations/0012-ha-restart-from.ts';
import { migration as m0013 } from './migrations/0013-audit-retention.ts';
import { migration as m0015 } from './migrations/0015-template-generalization.ts';
import { migration as m0016 } from './migrations/0016-library-media.ts';
import { migration as m0017 } from './migrations/0017-networks.ts';
import { migration as m0018 } from './migrations/0018-host-networks.ts';
import { migration as m0019 } from './migrations/0019-backup.ts';
import { migration as m0020 } from './migrations/0020-backup-job-prove.ts';
import { migration as m0021 } from './migrations/0021-replication.ts';
import { migration as m0022 } from './migrations/0022-replica-tests.ts';
import { migration as m0023 } from './migrations/0023-sites.ts';
import { migration as m0024 } from './migrations/0024-site-replications.ts';
import { migration as m0025 } from './migrations/0025-failovers.ts';

/** Every migration, by name; Kysely runs them in the names' order. */
const migrations: Record<string, Migration> = {
  '0001-foundation': m0001,
  '0002-images': m0002,
  '0003-provisioning': m0003,
  '0004-alerts': m0004,
  '0005-image-pools': m0005,
  '0006-cluster': m0006,
  '0007-ha': m0007,
  '0008-ha-acknowledged': m0008,
  '0009-identity': m0009,
  '0010-group-members-by-user': m0010,
  '0011-kept-volumes': m0011,
  '0012-ha-restart-from': m0012,
  '0013-audit-retention': m0013,
  '0015-template-generalization': m0015,
  '0016-library-media': m0016,
  '0017-networks': m0017,
  '0018-host-networks': m0018,
  '0019-backup': m0019,
  '0020-backup-job-prove': m0020,
  '0021-replication': m0021,
  '0022-replica-tests': m0022,
  '0023-sites': m0023,
  '0024-site-replications': m0024,
  '0025-failovers': m0025,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
