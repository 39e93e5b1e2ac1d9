/**
 * Fetching another party's CA certificate before trusting it: over TLS without verification
 * (nothing is trusted yet), then checked against a fingerprint the operator got out of band.
 * Only a CA with that fingerprint is used afterwards. How an agent joins its manager and how a
 * cluster adds another as a site.
 */
import { X509Certificate } from 'node:crypto';
import { Agent, fetch as undiciFetch } from 'undici';
import { TernError, unreachable } from '../errors.ts';

/** Colon-separated upper-case hex, as Node prints `fingerprint256`, from any way it is pasted. */
export function normalizeFingerprint(s: string): string | null {
  const hex = s
    .trim()
    .replace(/^sha-?256:?/i, '')
    .replace(/[:\s]/g, '')
    .toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return null;
  return hex.match(/../g)!.join(':');
}

/** The largest CA certificate accepted: a PEM certificate is a few KiB. */
const MAX_CA_BYTES = 64 * 1024;

/**
 * The CA served at `<url>/cluster/v1/ca`, when its SHA-256 fingerprint is `fingerprint`.
 * `who` names the other side in errors (`the manager at …`, `site beta at …`), `purpose` what
 * a mismatch stops (`join`, `trust it`).
 */
export async function fetchPinnedCa(
  url: string,
  fingerprint: string,
  who: string,
  purpose: string,
): Promise<string> {
  const want = normalizeFingerprint(fingerprint);
  if (!want)
    throw new TernError('invalid_request', `${fingerprint} is not a SHA-256 fingerprint (64 hex digits)`);
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  try {
    const res = await undiciFetch(`${url}/cluster/v1/ca`, {
      dispatcher,
      signal: AbortSignal.timeout(15_000),
    }).catch((err: Error) => {
      throw unreachable(err, (why) => `${who} is unreachable: ${why}`);
    });
    const body = Buffer.from(await res.arrayBuffer());
    let actual: string;
    try {
      if (!res.ok || body.length > MAX_CA_BYTES) throw new Error('not a CA');
      actual = new X509Certificate(body).fingerprint256;
    } catch {
      throw new TernError('protocol_error', `${who} did not answer with a CA certificate`);
    }
    if (actual !== want)
      throw new TernError(
        'forbidden',
        `${who} presented CA ${actual}, not the expected ${want}; refusing to ${purpose}`,
      );
    return body.toString('utf8');
  } finally {
    await dispatcher.close();
  }
}
