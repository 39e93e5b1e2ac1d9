/**
 * The agent routes of a live restore (src/agent/backup/live-restore.ts): serve a backup's disks
 * and make the VM's volumes overlays on them, then (the VM running) stream the data in. Part of
 * `agentRoutes`.
 */
import { Type } from 'typebox';
import { IdParams, Ok, tags } from './agent-route-parts.ts';
import { LiveRestoreReport, LiveRestoreRequest } from './backup.ts';
import { route } from './route.ts';

export const agentLiveRestoreRoutes = {
  prepareLiveRestore: route({
    summary:
      "Serve a backup's disks to the VM and make its target volumes overlays on them; idempotent (after an agent restart, serves again)",
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/live-restore/prepare',
    params: IdParams,
    body: LiveRestoreRequest,
    reply: { 200: Ok },
  }),
  streamLiveRestore: route({
    summary:
      "A running VM's restored disks streamed in from the backup underneath the guest: progress lines, then `done` (the backup is no longer served) or `error`",
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/live-restore/stream',
    params: IdParams,
    body: Type.Object(
      {
        disks: Type.Array(Type.Integer({ minimum: 0, maximum: 15 }), { minItems: 1, maxItems: 16 }),
        /** Each disk's stream at most this fast; 0 or absent: no limit. */
        bytesPerS: Type.Optional(Type.Integer({ minimum: 0 })),
      },
      { additionalProperties: false },
    ),
    reply: {},
    rawReply: {
      contentType: 'application/x-ndjson',
      description: 'newline-delimited JSON, one line each as `lines` declares',
    },
    lines: LiveRestoreReport,
  }),
};
