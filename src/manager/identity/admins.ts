/**
 * Tern always keeps an enabled admin: a change to users or groups that would leave none is
 * refused, inside the change's own transaction, so the check and the change cannot be split.
 */
import type { Kysely, Transaction } from 'kysely';
import { TernError } from '../../errors.ts';
import type { Database } from '../db/schema.ts';

export async function keepAnAdmin(
  trx: Kysely<Database> | Transaction<Database>,
  what: string,
): Promise<void> {
  const r = await trx
    .selectFrom('users as u')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('u.disabled', '=', 0)
    .where((eb) =>
      eb.or([
        eb('u.role', '=', 'admin'),
        eb.exists(
          eb
            .selectFrom('userGroupMembers as m')
            .innerJoin('userGroups as g', 'g.name', 'm.groupName')
            .select('m.userId')
            .whereRef('m.userId', '=', 'u.id')
            .where('g.role', '=', 'admin'),
        ),
      ]),
    )
    .executeTakeFirstOrThrow();
  if (Number(r.n) === 0)
    throw new TernError('conflict', `${what} would leave no enabled admin; make another admin first`);
}
