/**
 * The agent's side of the agent protocol (docs/agent-protocol.md): a small HTTP API that
 * only a manager holding the agent token may call, plus an event stream of VM changes.
 */
import { timingSafeEqual } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { TernError } from '../errors.ts';
import { ajvOptions, installErrorHandling } from '../http/errors.ts';
import { type Logger, quietRequests } from '../log.ts';
import {
  type AgentEvent,
  type AgentVm,
  agentProtocolVersion,
  CreateSeedRequest,
  CreateVolumeRequest,
  ImportVolumeRequest,
  protocolHeader,
  Uuid,
  VmAction,
} from '../wire/agent.ts';
import { VmSpec, VolumeRef } from '../wire/vm.ts';
import type { HypervisorDriver } from './driver.ts';
import type { Pools } from './storage/pools.ts';
import { createSeed, createVolume, deleteVolume, importVolume, volumeInfo } from './storage/volumes.ts';

export const agentVersion = '0.1.0';

export interface AgentServerOptions {
  driver: HypervisorDriver;
  pools: Pools;
  token: string;
  log: Logger;
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(header?.replace(/^Bearer /, '') ?? '');
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

export async function buildAgentServer(opts: AgentServerOptions): Promise<FastifyInstance> {
  const { driver, pools } = opts;
  const app = Fastify({
    loggerInstance: quietRequests(opts.log),
    bodyLimit: 1024 * 1024,
    ajv: ajvOptions,
  }).withTypeProvider<TypeBoxTypeProvider>();
  installErrorHandling(app);

  app.addHook('onRequest', async (req) => {
    if (!tokenMatches(req.headers.authorization, opts.token)) {
      throw new TernError('unauthorized', 'this agent only answers its manager');
    }
    const v = req.headers[protocolHeader];
    if (v !== undefined && v !== String(agentProtocolVersion)) {
      throw new TernError(
        'protocol_error',
        `agent speaks protocol ${agentProtocolVersion}, the manager ${v}`,
      );
    }
  });

  const IdParams = Type.Object({ id: Uuid });

  app.get('/agent/v1/info', async () => ({
    protocol: agentProtocolVersion,
    agentVersion,
    facts: await driver.facts(),
  }));

  app.get('/agent/v1/vms', async () => ({ vms: driver.list() }));

  app.get('/agent/v1/vms/:id', { schema: { params: IdParams } }, async (req) => {
    const vm = driver.get(req.params.id);
    if (!vm) throw new TernError('not_found', `VM ${req.params.id} is not on this host`);
    return { vm };
  });

  app.put('/agent/v1/vms/:id', { schema: { params: IdParams, body: VmSpec } }, async (req) => {
    if (req.body.id !== req.params.id)
      throw new TernError('invalid_request', 'spec id does not match the path');
    return { vm: await driver.run(req.body) };
  });

  app.post(
    '/agent/v1/vms/:id/actions/:action',
    { schema: { params: Type.Object({ id: Uuid, action: VmAction }) } },
    async (req) => ({ vm: await driver.act(req.params.id, req.params.action) }),
  );

  app.delete('/agent/v1/vms/:id', { schema: { params: IdParams } }, async (req, reply) => {
    await driver.forget(req.params.id);
    return reply.status(204).send();
  });

  app.get(
    '/agent/v1/vms/:id/console',
    {
      schema: {
        params: IdParams,
        querystring: Type.Object({
          bytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 * 1024 })),
        }),
      },
    },
    async (req) => ({ text: await driver.consoleTail(req.params.id, req.query.bytes ?? 16 * 1024) }),
  );

  app.post('/agent/v1/volumes', { schema: { body: CreateVolumeRequest } }, async (req) => ({
    volume: await createVolume(pools, req.body),
  }));
  app.post('/agent/v1/volumes/seed', { schema: { body: CreateSeedRequest } }, async (req) => ({
    volume: await createSeed(pools, req.body),
  }));
  app.post('/agent/v1/volumes/import', { schema: { body: ImportVolumeRequest } }, async (req) => ({
    volume: await importVolume(pools, req.body),
  }));
  app.get('/agent/v1/volumes/info', { schema: { querystring: VolumeRef } }, async (req) => ({
    volume: await volumeInfo(pools, req.query),
  }));
  app.delete('/agent/v1/volumes', { schema: { querystring: VolumeRef } }, async (req, reply) => {
    deleteVolume(pools, req.query);
    return reply.status(204).send();
  });

  // Newline-delimited JSON: a hello, then every VM change, with a heartbeat every 5 s so the
  // manager notices a dead connection.
  app.get('/agent/v1/events', (req, reply) => {
    reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const send = (e: AgentEvent) => reply.raw.write(`${JSON.stringify(e)}\n`);
    send({ type: 'hello', protocol: agentProtocolVersion, time: new Date().toISOString() });
    for (const vm of driver.list()) send({ type: 'vm', vm });
    const vmListener = (vm: AgentVm) => send({ type: 'vm', vm });
    const goneListener = (id: string) => send({ type: 'vm.gone', id });
    driver.events.on('vm', vmListener);
    driver.events.on('gone', goneListener);
    const beat = setInterval(() => send({ type: 'heartbeat', time: new Date().toISOString() }), 5000);
    req.raw.on('close', () => {
      clearInterval(beat);
      driver.events.off('vm', vmListener);
      driver.events.off('gone', goneListener);
    });
  });

  return app;
}
