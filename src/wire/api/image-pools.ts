/** /api/v1/image-pools: golden images in versions and the VMs that boot from them. */
import { Type } from 'typebox';
import { ErrorBody } from '../common.ts';
import { CreateImagePoolRequest, ImagePool } from '../image-pool.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';

const responses = { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const PoolRef = Type.Object({ pool: Type.String({ minLength: 1, maxLength: 41 }) });
const VersionRef = Type.Object({ pool: PoolRef.properties.pool, number: Type.Integer({ minimum: 1 }) });

export const imagePoolRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/image-pools',
    summary: 'List image pools',
    tags: ['image pools'],
    reply: { 200: Type.Object({ items: Type.Array(ImagePool) }) },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/image-pools/:pool',
    summary: 'Show an image pool',
    tags: ['image pools'],
    params: PoolRef,
    reply: { 200: ImagePool, 404: ErrorBody },
  }),
  create: route({
    method: 'POST',
    path: '/api/v1/image-pools',
    summary: 'Make a pool: version 1 of the golden image from a template, and its VMs',
    tags: ['image pools'],
    body: CreateImagePoolRequest,
    reply: responses,
  }),
  createVersion: route({
    method: 'POST',
    path: '/api/v1/image-pools/:pool/versions',
    summary: 'Open a maintenance version on top of production, with the one VM that may write to it',
    tags: ['image pools'],
    params: PoolRef,
    reply: responses,
  }),
  testVersion: route({
    method: 'POST',
    path: '/api/v1/image-pools/:pool/versions/:number/test',
    summary: 'Seal a maintenance version for testing (its maintenance VM must be shut down)',
    tags: ['image pools'],
    params: VersionRef,
    reply: responses,
  }),
  promoteVersion: route({
    method: 'POST',
    path: '/api/v1/image-pools/:pool/versions/:number/promote',
    summary: 'Make a tested version production: the pool rolls onto it by rolling reboot',
    tags: ['image pools'],
    params: VersionRef,
    reply: responses,
  }),
  rollback: route({
    method: 'POST',
    path: '/api/v1/image-pools/:pool/rollback',
    summary: 'Return the pool to its previous production version by rolling reboot',
    tags: ['image pools'],
    params: PoolRef,
    reply: responses,
  }),
  removeVersion: route({
    method: 'DELETE',
    path: '/api/v1/image-pools/:pool/versions/:number',
    summary: 'Delete a version nothing uses',
    tags: ['image pools'],
    params: VersionRef,
    reply: responses,
  }),
};
