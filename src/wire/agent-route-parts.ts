/** Small pieces every file of agent route declarations shares. */
import { Type } from 'typebox';
import { Uuid } from './common.ts';

export const IdParams = Type.Object({ id: Uuid });
export const Ok = Type.Object({ ok: Type.Literal(true) });
export const tags = ['agent'] as const;
