/** What route modules are given: the manager's services, and the Fastify instance type. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { AlertStore } from '../alerts/store.ts';
import type { TokenStore } from '../auth/tokens.ts';
import type { HaMonitor } from '../ha/monitor.ts';
import type { JoinTokens } from '../hosts/join.ts';
import type { ImagePoolStore } from '../imagepools/store.ts';
import type { ImageStore } from '../library/images.ts';
import type { TaskEngine } from '../tasks/engine.ts';
import type { VmDeps } from '../vms/deps.ts';

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

export interface ApiServices extends VmDeps {
  tasks: TaskEngine;
  tokens: TokenStore;
  images: ImageStore;
  alerts: AlertStore;
  imagePools: ImagePoolStore;
  joinTokens: JoinTokens;
  /** The HA watch: what it says of each host. */
  ha: HaMonitor;
  /** Where agents join, and the CA fingerprint they pin. */
  joining: { url: string; caFingerprint: string };
  /** Largest image upload accepted (default: maxUploadBytes()). */
  maxUploadBytes?: number;
}
