/** The manager's event stream (`GET /api/v1/events`, server-sent events). */
import { type Static, Type } from 'typebox';
import { Alert } from './alert.ts';
import { HaHostStatus } from './ha.ts';
import { Host } from './host.ts';
import { Task } from './task.ts';
import { Vm } from './vm.ts';

export const ManagerEvent = Type.Union([
  Type.Object({ type: Type.Literal('task'), task: Task }),
  Type.Object({ type: Type.Literal('vm'), vm: Vm }),
  Type.Object({ type: Type.Literal('vm.deleted'), id: Type.String() }),
  Type.Object({ type: Type.Literal('alert'), alert: Alert }),
  Type.Object({ type: Type.Literal('host'), host: Host }),
  /** A host's HA state changed. */
  Type.Object({ type: Type.Literal('ha'), status: HaHostStatus }),
]);
export type ManagerEvent = Static<typeof ManagerEvent>;
