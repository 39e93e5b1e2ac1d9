/** The API about itself: whether it answers, and its OpenAPI document. */
import { route } from '../route.ts';

export const serviceRoutes = {
  health: route({
    method: 'GET',
    path: '/api/v1/health',
    summary: 'Whether the manager answers',
    tags: ['service'],
    reply: {},
    hide: true,
  }),
  openapi: route({
    method: 'GET',
    path: '/api/v1/openapi.json',
    summary: 'This API described in OpenAPI 3.1',
    tags: ['service'],
    reply: {},
    hide: true,
  }),
};
