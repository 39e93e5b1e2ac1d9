/**
 * The cluster certificate authority. The manager keeps it; every agent certificate and the
 * manager's own come from it, so manager and agents recognise each other by it alone. Keys are
 * ECDSA P-256; the subject's OU carries the role (`tern-manager` or `tern-host`), which each
 * side checks on the other.
 */
import 'reflect-metadata';
import { randomBytes, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { TernError } from '../errors.ts';
import { type Identity, newKeyPair, pemOf, writeSecret } from './identity.ts';

export type Role = 'tern-manager' | 'tern-host';

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const dayMs = 24 * 3600 * 1000;
/** Issued certificates last a year; the CA ten. */
const certDays = 365;
const caDays = 3650;

export interface IssuedCert {
  pem: string;
  serial: string;
  fingerprint: string;
  notAfter: string;
}

export class ClusterCa {
  readonly certPem: string;
  readonly #key: CryptoKey;
  readonly #cert: x509.X509Certificate;

  private constructor(certPem: string, key: CryptoKey) {
    this.certPem = certPem;
    this.#key = key;
    this.#cert = new x509.X509Certificate(certPem);
  }

  /** SHA-256 of the CA certificate: what a joining agent pins before it trusts the manager. */
  get fingerprint(): string {
    return new X509Certificate(this.certPem).fingerprint256;
  }

  /** Loads the CA from `dir`, or makes one there on first start. */
  static async open(dir: string): Promise<ClusterCa> {
    const keyFile = path.join(dir, 'ca.key');
    const certFile = path.join(dir, 'ca.crt');
    if (fs.existsSync(keyFile) && fs.existsSync(certFile)) {
      const key = await crypto.subtle.importKey(
        'pkcs8',
        derOf(fs.readFileSync(keyFile, 'utf8')),
        alg,
        false,
        ['sign'],
      );
      return new ClusterCa(fs.readFileSync(certFile, 'utf8'), key);
    }
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const keys = (await crypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=Tern cluster CA ${randomBytes(4).toString('hex')}`,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + caDays * dayMs),
      keys,
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pkcs8 = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
    // Key first: a certificate without its key would make the next start fail confusingly.
    writeSecret(keyFile, pemOf('PRIVATE KEY', Buffer.from(pkcs8)));
    writeSecret(certFile, cert.toString('pem'));
    return ClusterCa.open(dir);
  }

  /** Signs a certificate for `publicKeyPem` (SPKI, ECDSA P-256) naming `name` in `role`. */
  async issue(name: string, role: Role, publicKeyPem: string, addresses: string[]): Promise<IssuedCert> {
    let publicKey: CryptoKey;
    try {
      publicKey = await crypto.subtle.importKey('spki', derOf(publicKeyPem), alg, true, ['verify']);
    } catch {
      throw new TernError('invalid_request', 'the public key must be an ECDSA P-256 key in SPKI PEM form');
    }
    const sans = addresses.map((a) => ({ type: net.isIP(a) ? ('ip' as const) : ('dns' as const), value: a }));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${escapeDn(name)}, OU=${role}`,
      issuer: this.#cert.subject,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + certDays * dayMs),
      publicKey,
      signingKey: this.#key,
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        ...(sans.length > 0 ? [new x509.SubjectAlternativeNameExtension(sans)] : []),
        await x509.AuthorityKeyIdentifierExtension.create(this.#cert),
      ],
    });
    const pem = cert.toString('pem');
    const parsed = new X509Certificate(pem);
    return {
      pem,
      serial: parsed.serialNumber,
      fingerprint: parsed.fingerprint256,
      notAfter: new Date(parsed.validTo).toISOString(),
    };
  }

  /**
   * The certificate the API for people presents, for the names and addresses it is reached by.
   * Issued again when a name is missing (the manager now listens elsewhere) or it ends within
   * 30 days, so it never silently expires.
   */
  async apiIdentity(dir: string, addresses: string[]): Promise<{ key: string; cert: string }> {
    const keyFile = path.join(dir, 'api.key');
    const certFile = path.join(dir, 'api.crt');
    const current =
      fs.existsSync(keyFile) && fs.existsSync(certFile) ? fs.readFileSync(certFile, 'utf8') : null;
    if (current === null || !covers(new X509Certificate(current), addresses)) {
      const { privateKeyPem, publicKeyPem } = newKeyPair();
      const cert = await this.issue('manager api', 'tern-manager', publicKeyPem, addresses);
      writeSecret(keyFile, privateKeyPem);
      writeSecret(certFile, cert.pem);
    }
    return { key: fs.readFileSync(keyFile, 'utf8'), cert: fs.readFileSync(certFile, 'utf8') };
  }

  /** The manager's own identity (client of agents, server of the cluster endpoint), made once. */
  async managerIdentity(dir: string, addresses: string[]): Promise<Identity> {
    const keyFile = path.join(dir, 'manager.key');
    const certFile = path.join(dir, 'manager.crt');
    if (!fs.existsSync(keyFile) || !fs.existsSync(certFile)) {
      const { privateKeyPem, publicKeyPem } = newKeyPair();
      const cert = await this.issue('manager', 'tern-manager', publicKeyPem, addresses);
      writeSecret(keyFile, privateKeyPem);
      writeSecret(certFile, cert.pem);
    }
    return {
      key: fs.readFileSync(keyFile, 'utf8'),
      cert: fs.readFileSync(certFile, 'utf8'),
      ca: this.certPem,
    };
  }
}

function covers(cert: X509Certificate, addresses: string[]): boolean {
  if (Date.parse(cert.validTo) - Date.now() < 30 * dayMs) return false;
  return addresses.every((a) => (net.isIP(a) ? cert.checkIP(a) : cert.checkHost(a)) !== undefined);
}

function serial(): string {
  // Positive, 16 bytes: unique without a counter to keep.
  const b = randomBytes(16);
  b[0] &= 0x7f;
  return b.toString('hex');
}

function derOf(pem: string): ArrayBuffer {
  const b64 = pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, '').replace(/\s+/g, '');
  const buf = Buffer.from(b64, 'base64');
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}

function escapeDn(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, '\\$1');
}
