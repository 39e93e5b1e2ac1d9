/** A VM's high-availability restart policy (the rest of HA is in ha.ts). */
import { type Static, Type } from 'typebox';

export const RestartPolicy = Type.Union(
  [Type.Literal('restart'), Type.Literal('best-effort'), Type.Literal('none')],
  {
    description:
      'restart: protected, restarted elsewhere when its host fails (admission keeps room for it); best-effort: restarted if room is left; none: not restarted',
  },
);
export type RestartPolicy = Static<typeof RestartPolicy>;

export const RestartPriority = Type.Union([
  Type.Literal('high'),
  Type.Literal('medium'),
  Type.Literal('low'),
]);
export type RestartPriority = Static<typeof RestartPriority>;

export const VmHaPolicy = Type.Object(
  {
    restart: RestartPolicy,
    priority: RestartPriority,
    /** Within a priority, lower orders restart first. */
    order: Type.Integer({ minimum: 0, maximum: 1000 }),
    /** Wait this long after the VMs before it were restarted. */
    delayS: Type.Integer({ minimum: 0, maximum: 3600 }),
  },
  { additionalProperties: false },
);
export type VmHaPolicy = Static<typeof VmHaPolicy>;

export const defaultVmHaPolicy: VmHaPolicy = { restart: 'none', priority: 'medium', order: 100, delayS: 0 };
