/** Tasks: every operation that can take over a second, durable across manager restarts. */
import { type Static, Type } from 'typebox';
import { Timestamp, Uuid } from './common.ts';

export const TaskState = Type.Union([
  Type.Literal('queued'),
  Type.Literal('running'),
  Type.Literal('succeeded'),
  Type.Literal('failed'),
  Type.Literal('cancelled'),
]);
export type TaskState = Static<typeof TaskState>;

export const finishedTaskStates: readonly TaskState[] = ['succeeded', 'failed', 'cancelled'];

export const TaskLogLine = Type.Object({ time: Timestamp, line: Type.String() });
export type TaskLogLine = Static<typeof TaskLogLine>;

export const Task = Type.Object({
  id: Uuid,
  kind: Type.String({ description: 'what the task does, e.g. vm.start' }),
  objects: Type.Array(Type.String(), { description: 'the objects it locks, e.g. vm:<id>' }),
  state: TaskState,
  step: Type.String(),
  progress: Type.Integer({ minimum: 0, maximum: 100 }),
  cancelRequested: Type.Boolean(),
  result: Type.Union([Type.Unknown(), Type.Null()]),
  error: Type.Union([
    Type.Object({ code: Type.String(), message: Type.String(), details: Type.Optional(Type.Unknown()) }),
    Type.Null(),
  ]),
  log: Type.Optional(Type.Array(TaskLogLine)),
  requestedBy: Type.Union([Type.String(), Type.Null()], { description: 'id of the user who asked for it' }),
  createdAt: Timestamp,
  startedAt: Type.Union([Timestamp, Type.Null()]),
  finishedAt: Type.Union([Timestamp, Type.Null()]),
});
export type Task = Static<typeof Task>;

export const TaskAccepted = Type.Object({ task: Task });
