/** What one audit record says, as it is appended (log.ts stores it; refusals.ts tallies some first). */
import type { AuditRecord } from '../../wire/identity.ts';
import type { AuditLogTable } from '../db/schema.ts';

/** A record as it is appended: the row without its number and time, which the log gives it. */
export type AuditEntry = Omit<AuditLogTable, 'seq' | 'at' | 'result'> & { result: AuditRecord['result'] };
