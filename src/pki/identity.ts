/**
 * A TLS identity (key, certificate, and the cluster CA that vouches for peers), kept as PEM
 * files in a directory, and the HTTPS client that presents it.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { checkServerIdentity, type TLSSocket } from 'node:tls';
import { Agent, fetch as undiciFetch } from 'undici';

export interface Identity {
  key: string;
  cert: string;
  ca: string;
}

export function pemOf(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Written whole and renamed into place, readable by its owner only. */
export function writeSecret(file: string, content: string): void {
  fs.writeFileSync(`${file}.partial`, content, { mode: 0o600 });
  fs.renameSync(`${file}.partial`, file);
}

export function newKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', {
    namedCurve: 'prime256v1',
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

export function loadIdentity(dir: string): Identity | null {
  const files = ['key.pem', 'cert.pem', 'ca.pem'].map((f) => path.join(dir, f));
  if (!files.every((f) => fs.existsSync(f))) return null;
  const [key, cert, ca] = files.map((f) => fs.readFileSync(f, 'utf8'));
  return { key, cert, ca };
}

export function saveIdentity(dir: string, id: Identity): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeSecret(path.join(dir, 'key.pem'), id.key);
  writeSecret(path.join(dir, 'ca.pem'), id.ca);
  // The certificate last: its presence marks a complete identity.
  writeSecret(path.join(dir, 'cert.pem'), id.cert);
}

export function fingerprintOf(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256;
}

/** The role (OU) and name (CN) of the certificate the peer presented on `socket`, if any. */
export function peerOf(socket: TLSSocket): { role: string; name: string; fingerprint: string } | null {
  const cert = socket.getPeerCertificate?.();
  if (!cert?.subject || !socket.authorized) return null;
  const field = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v) ?? '';
  return { role: field(cert.subject.OU), name: field(cert.subject.CN), fingerprint: cert.fingerprint256 };
}

/**
 * A fetch that speaks mutual TLS as `identity`, trusting only certificates from its CA. With
 * `pin`, the server must also present exactly that certificate (a host is known by the
 * certificate it was issued, so a removed host's certificate is refused even though the CA
 * signed it). With `checkName` (the CLI and other clients of the API for people), the
 * certificate must name the address it was reached at, and a host's certificate never passes
 * for the manager's although the same CA signed both. With `role`, the server's certificate
 * must state that role (another site's manager, not one of its hosts). Without `ca` and `identity`, the
 * system's trusted CAs apply (an operator's certificate from a public CA).
 */
export function tlsFetch(
  identity: Identity | null,
  opts: { ca?: string; pin?: () => string | null; checkName?: boolean; role?: string } = {},
) {
  const dispatcher = new Agent({
    connect: {
      ca: opts.ca ?? identity?.ca,
      cert: identity?.cert,
      key: identity?.key,
      checkServerIdentity: (host, cert) => {
        if (opts.role !== undefined && cert.subject?.OU !== opts.role)
          return new Error(
            `the server presented a certificate for ${cert.subject?.OU || 'no role'}, not ${opts.role}`,
          );
        if (opts.checkName) {
          if (cert.subject?.OU === 'tern-host')
            return new Error('a host certificate was presented where the manager was expected');
          return checkServerIdentity(host, cert);
        }
        const want = opts.pin?.();
        if (opts.pin && want !== cert.fingerprint256) {
          return new Error(
            want ? 'the host presented a certificate it was not issued' : 'this host is not enrolled',
          );
        }
        return undefined;
      },
    },
    keepAliveTimeout: 10_000,
  });
  const f = (url: string, init: RequestInit = {}) =>
    undiciFetch(url, { ...(init as object), dispatcher } as Parameters<
      typeof undiciFetch
    >[1]) as unknown as Promise<Response>;
  return Object.assign(f, { close: () => dispatcher.close() });
}
export type TlsFetch = ReturnType<typeof tlsFetch>;
