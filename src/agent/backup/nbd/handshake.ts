/**
 * The fixed newstyle handshake of a client that reads a backup's view of a disk: structured
 * replies (required: they are how reads report holes and errors, and how block status answers),
 * the metadata contexts asked for, then NBD_OPT_GO with the export's size and block size
 * constraints. Every reply is checked against the option it answers and bounded in length.
 */
import type { ByteQueue } from './byte-queue.ts';
import {
  DEFAULT_MAX_PAYLOAD,
  decodeOptionReplyHeader,
  encodeGo,
  encodeMetaContextQuery,
  encodeOption,
  FLAG_FIXED_NEWSTYLE,
  FLAG_HAS_FLAGS,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO_BLOCK_SIZE,
  INFO_EXPORT,
  MAX_STRING_BYTES,
  NBDMAGIC,
  OPT_GO,
  OPT_SET_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  OPTION_REPLY_HEADER_BYTES,
  optionErrorName,
  REP_ACK,
  REP_ERROR_BIT,
  REP_INFO,
  REP_META_CONTEXT,
  serverText,
} from './protocol.ts';
import { ProtocolViolation } from './read-reply.ts';

export interface ExportInfo {
  size: number;
  transmissionFlags: number;
  minBlock: number;
  preferredBlock: number;
  maxPayload: number;
  /** Context id → name, of the contexts the server selected. */
  contexts: Map<number, string>;
}

/** No option reply Tern expects is longer (an info, a context name, an error message). */
const MAX_OPTION_REPLY = 4 + MAX_STRING_BYTES + 64;
/** A server listing more contexts than were asked for is not answering the question. */
const MAX_CONTEXT_REPLIES = 64;

/** An option the server refused: the connection is still good, the export is not usable as asked. */
export class OptionRefused extends Error {
  readonly unknownExport: boolean;
  constructor(type: number, text: string) {
    super(`${optionErrorName(type)}${text ? `: ${text}` : ''}`);
    this.unknownExport = type === REP_ERROR_BIT + 6;
  }
}

export async function handshake(
  queue: ByteQueue,
  send: (b: Buffer) => void,
  exportName: string,
  queries: readonly string[],
): Promise<ExportInfo> {
  const greeting = await queue.take(18);
  if (greeting.readBigUInt64BE(0) !== NBDMAGIC) throw new ProtocolViolation('not an NBD server');
  if (greeting.readBigUInt64BE(8) !== IHAVEOPT)
    throw new ProtocolViolation('an oldstyle NBD server; only newstyle is supported');
  const serverFlags = greeting.readUInt16BE(16);
  if (!(serverFlags & FLAG_FIXED_NEWSTYLE))
    throw new ProtocolViolation('the server does not speak fixed newstyle negotiation');
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES));
  send(clientFlags);

  const reply = async (option: number) => {
    const header = decodeOptionReplyHeader(await queue.take(OPTION_REPLY_HEADER_BYTES));
    if (!header) throw new ProtocolViolation('option reply with a bad magic');
    if (header.option !== option)
      throw new ProtocolViolation(`reply to option ${header.option} while waiting for ${option}`);
    if (header.length > MAX_OPTION_REPLY)
      throw new ProtocolViolation(`option reply of ${header.length} bytes`);
    const data = await queue.take(header.length);
    if (header.type & REP_ERROR_BIT) throw new OptionRefused(header.type, serverText(data));
    return { type: header.type, data };
  };

  send(encodeOption(OPT_STRUCTURED_REPLY));
  const structured = await reply(OPT_STRUCTURED_REPLY);
  if (structured.type !== REP_ACK || structured.data.length !== 0)
    throw new ProtocolViolation(`structured replies answered with reply type ${structured.type}`);

  const contexts = new Map<number, string>();
  if (queries.length > 0) {
    send(encodeOption(OPT_SET_META_CONTEXT, encodeMetaContextQuery(exportName, queries)));
    for (let n = 0; ; n++) {
      const r = await reply(OPT_SET_META_CONTEXT);
      if (r.type === REP_ACK) break;
      if (r.type !== REP_META_CONTEXT || r.data.length < 5 || n >= MAX_CONTEXT_REPLIES)
        throw new ProtocolViolation(`meta context reply type ${r.type} of ${r.data.length} bytes`);
      const id = r.data.readUInt32BE(0);
      const name = r.data.subarray(4).toString('utf8');
      if (!queries.includes(name))
        throw new ProtocolViolation(`a context not asked for: ${serverText(r.data.subarray(4))}`);
      if (contexts.has(id) || [...contexts.values()].includes(name))
        throw new ProtocolViolation(`context ${name} (id ${id}) selected twice`);
      contexts.set(id, name);
    }
  }

  send(encodeOption(OPT_GO, encodeGo(exportName, [INFO_BLOCK_SIZE])));
  let size: number | null = null;
  let transmissionFlags = 0;
  let block = { minBlock: 1, preferredBlock: 4096, maxPayload: DEFAULT_MAX_PAYLOAD };
  for (;;) {
    const r = await reply(OPT_GO);
    if (r.type === REP_ACK) break;
    if (r.type !== REP_INFO || r.data.length < 2)
      throw new ProtocolViolation(`go answered with reply type ${r.type}`);
    const info = r.data.readUInt16BE(0);
    if (info === INFO_EXPORT) {
      if (r.data.length !== 12) throw new ProtocolViolation(`export info of ${r.data.length} bytes`);
      const big = r.data.readBigUInt64BE(2);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolViolation(`export size ${big}`);
      size = Number(big);
      transmissionFlags = r.data.readUInt16BE(10);
    } else if (info === INFO_BLOCK_SIZE) {
      if (r.data.length !== 14) throw new ProtocolViolation(`block size info of ${r.data.length} bytes`);
      block = {
        minBlock: r.data.readUInt32BE(2),
        preferredBlock: r.data.readUInt32BE(6),
        maxPayload: r.data.readUInt32BE(10),
      };
      const pow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;
      if (!pow2(block.minBlock) || block.minBlock > 65536 || block.maxPayload < block.minBlock)
        throw new ProtocolViolation(`block sizes ${JSON.stringify(block)}`);
    }
    // Other information (name, description) is not needed; the protocol says to ignore it.
  }
  if (size === null) throw new ProtocolViolation('the server accepted the export without saying its size');
  if (!(transmissionFlags & FLAG_HAS_FLAGS))
    throw new ProtocolViolation('transmission flags without HAS_FLAGS');
  return { size, transmissionFlags, ...block, contexts };
}
