/** Alerts: conditions that need a person, raised and cleared by the manager. */
import { type Static, Type } from 'typebox';
import { Timestamp } from './common.ts';

export const Alert = Type.Object({
  id: Type.String({ description: 'stable key of the condition, e.g. vm:<id>:storage-full' }),
  severity: Type.Union([Type.Literal('critical'), Type.Literal('warning')]),
  object: Type.String({ description: 'what it is about, e.g. vm:<id>' }),
  message: Type.String(),
  raisedAt: Timestamp,
  clearedAt: Type.Union([Timestamp, Type.Null()]),
});
export type Alert = Static<typeof Alert>;
