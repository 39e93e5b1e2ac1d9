/**
 * Joining a host to the cluster. `tern host add NAME` makes a join token: single use, short
 * lived, stored only as a hash. The agent presents it with its public key and a signature over
 * the token made with the matching private key (so the certificate goes to whoever holds the
 * key); the manager answers with a certificate from the cluster CA and records the host by that
 * certificate.
 */
import { createHash, createPublicKey, randomBytes, randomUUID, timingSafeEqual, verify } from 'node:crypto';
import { TernError } from '../../errors.ts';
import { type JoinRequest, type JoinResult, type JoinToken, joinProof } from '../../wire/host.ts';
import { type Db, now } from '../db/database.ts';

const hash = (secret: string) => createHash('sha256').update(secret).digest();
const joinTokenTtlMs = 60 * 60 * 1000;

export class JoinTokens {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async create(hostName: string, caFingerprint: string, managerUrl: string): Promise<JoinToken> {
    const known = await this.#db
      .selectFrom('hosts')
      .select('certFingerprint')
      .where('name', '=', hostName)
      .executeTakeFirst();
    // A host recorded before hosts had certificates joins once more, keeping its VMs.
    if (known?.certFingerprint) {
      throw new TernError('conflict', `host ${hostName} is already in the cluster; remove it first`);
    }
    const id = randomUUID().slice(0, 8);
    const secret = randomBytes(24).toString('base64url');
    const expiresAt = new Date(Date.now() + joinTokenTtlMs).toISOString();
    await this.#db
      .insertInto('joinTokens')
      .values({
        id,
        hostName,
        secretHash: hash(secret).toString('hex'),
        createdAt: now(),
        expiresAt,
        usedAt: null,
      })
      .execute();
    const token = `${id}.${secret}`;
    return {
      host: hostName,
      token,
      caFingerprint,
      expiresAt,
      command: `tern-agent --join ${managerUrl} --join-token ${token} --ca-fingerprint ${caFingerprint}`,
    };
  }

  /**
   * Checks the token and the proof, marks the token used, and returns the host name it was
   * made for. Every refusal says the same to the caller, so a guess learns nothing.
   */
  async redeem(req: JoinRequest): Promise<string> {
    const refused = new TernError('unauthorized', 'the join token is invalid, used or expired');
    const [id, secret] = req.token.split('.');
    if (!id || !secret) throw refused;
    const row = await this.#db.selectFrom('joinTokens').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row || row.usedAt || Date.parse(row.expiresAt) < Date.now()) throw refused;
    if (!timingSafeEqual(hash(secret), Buffer.from(row.secretHash, 'hex'))) throw refused;
    let proven = false;
    try {
      proven = verify(
        'sha256',
        Buffer.from(joinProof(req.token)),
        createPublicKey(req.publicKey),
        Buffer.from(req.proof, 'base64'),
      );
    } catch {
      // A key or signature that does not parse proves nothing either.
    }
    if (!proven) throw new TernError('unauthorized', 'the join proof does not match the public key');
    const used = await this.#db
      .updateTable('joinTokens')
      .set({ usedAt: now() })
      .where('id', '=', id)
      .where('usedAt', 'is', null)
      .executeTakeFirst();
    if (Number(used.numUpdatedRows) !== 1) throw refused;
    return row.hostName;
  }
}

export type { JoinResult };
