/** Newline-delimited JSON from a response body, one value at a time, lines bounded in length. */

import { TernError } from '../errors.ts';
import { JsonLineReader } from './json-lines.ts';

export async function* ndjson(
  body: AsyncIterable<Uint8Array>,
  maxLine: number,
  onChunk: () => void = () => {},
): AsyncGenerator<unknown> {
  const values: unknown[] = [];
  let problem: string | null = null;
  const reader = new JsonLineReader(
    maxLine,
    (v) => values.push(v),
    (m) => {
      problem ??= m;
    },
  );
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    onChunk();
    reader.push(decoder.decode(chunk, { stream: true }));
    if (problem) throw new TernError('protocol_error', `bad event stream: ${problem}`);
    while (values.length > 0) yield values.shift();
  }
}
