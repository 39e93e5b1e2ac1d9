/**
 * How an agent becomes a host of a cluster, and stays in touch with its manager.
 *
 * Joining: the agent makes its own key (which never leaves the host), fetches the cluster CA
 * from the manager and accepts it only if its fingerprint is the one given with the join token,
 * then sends the token, its public key and a signature proving it holds the key. What comes
 * back — its certificate and the CA — is kept in `<state>/pki` with the manager's address, and
 * later starts use it without joining again.
 */
import { sign, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../errors.ts';
import { requestJson } from '../http/json-client.ts';
import type { Logger } from '../log.ts';
import { type Identity, loadIdentity, newKeyPair, saveIdentity, tlsFetch } from '../pki/identity.ts';
import { fetchPinnedCa, normalizeFingerprint } from '../pki/pinned-ca.ts';
import type { HeartbeatRequest } from '../wire/ha.ts';
import { type JoinResult, joinProof } from '../wire/host.ts';

export interface JoinParams {
  manager: string;
  token: string;
  caFingerprint: string;
}

export interface Membership {
  identity: Identity;
  /** The manager's cluster endpoint. */
  manager: string;
}

export function loadMembership(stateDir: string): Membership | null {
  const identity = loadIdentity(path.join(stateDir, 'pki'));
  const file = path.join(stateDir, 'pki', 'manager.json');
  if (!identity || !fs.existsSync(file)) return null;
  return { identity, manager: (JSON.parse(fs.readFileSync(file, 'utf8')) as { url: string }).url };
}

export async function join(stateDir: string, p: JoinParams, address: string): Promise<Membership> {
  const manager = p.manager.replace(/\/$/, '');
  const ca = await fetchPinnedCa(manager, p.caFingerprint, `the manager at ${manager}`, 'join');
  const { privateKeyPem, publicKeyPem } = newKeyPair();
  const proof = sign('sha256', Buffer.from(joinProof(p.token)), privateKeyPem).toString('base64');
  const f = tlsFetch(null, { ca });
  try {
    const r = await requestJson<JoinResult>(`${manager}/cluster/v1/join`, {
      method: 'POST',
      headers: {},
      body: { token: p.token, publicKey: publicKeyPem, proof, address },
      timeoutMs: 30_000,
      unreachable: (why) => `the manager at ${manager} is unreachable: ${why}`,
      peer: 'the manager',
      fetch: f,
    });
    if (new X509Certificate(r.ca).fingerprint256 !== normalizeFingerprint(p.caFingerprint)) {
      throw new TernError('protocol_error', 'the manager answered with a different CA than it presented');
    }
    const identity = { key: privateKeyPem, cert: r.certificate, ca: r.ca };
    saveIdentity(path.join(stateDir, 'pki'), identity);
    fs.writeFileSync(path.join(stateDir, 'pki', 'manager.json'), JSON.stringify({ url: manager }), {
      mode: 0o600,
    });
    return { identity, manager };
  } finally {
    await f.close();
  }
}

/**
 * Reports to the manager every `intervalMs` with this host's certificate. A refusal (the host
 * was removed and its certificate revoked) is logged once per change, not on every beat.
 * `answered` gets every reply (it carries the host's HA duties): an answer is HA's network
 * heartbeat, so it is passed on as soon as it arrives, with when it was sent: the manager heard
 * the host no earlier than that, so the host's fence deadline never runs past the manager's.
 * For the same reason a late answer is still worth having, so a beat waits several periods for
 * it: a manager slower to answer than one period (a busy one) must still hand the host its HA
 * duties, or the host never confirms them and its VMs never count as protected.
 */
/** How many heartbeat periods a beat waits for its answer. */
const answerPeriods = 5;

export function heartbeat(
  m: Membership,
  intervalMs: number,
  log: Logger,
  answered?: (reply: unknown, sentAtMs: number) => void,
  report: () => HeartbeatRequest = () => ({ haGeneration: null }),
): () => Promise<void> {
  const f = tlsFetch(m.identity);
  // A beat waits long for its answer, but not an agent that stops: it ends the beats in flight.
  const stopping = new AbortController();
  const send = (url: string, init: RequestInit = {}) =>
    f(url, {
      ...init,
      signal: init.signal ? AbortSignal.any([init.signal, stopping.signal]) : stopping.signal,
    });
  let last = '';
  const beat = async () => {
    let outcome: string;
    const sentAtMs = performance.now();
    try {
      const reply = await requestJson<unknown>(`${m.manager}/cluster/v1/heartbeat`, {
        method: 'POST',
        headers: {},
        body: report(),
        timeoutMs: intervalMs * answerPeriods,
        unreachable: (why) => `manager unreachable: ${why}`,
        peer: 'the manager',
        fetch: send,
      });
      answered?.(reply, sentAtMs);
      outcome = 'ok';
    } catch (err) {
      outcome = (err as Error).message;
    }
    if (outcome !== last) {
      if (outcome === 'ok') log.info({ manager: m.manager }, 'manager accepts this host');
      else log.error({ manager: m.manager, why: outcome }, 'heartbeat to the manager failed');
      last = outcome;
    }
  };
  const timer = setInterval(() => void beat(), intervalMs);
  void beat();
  return async () => {
    clearInterval(timer);
    stopping.abort();
    await f.close();
  };
}
