/**
 * Splits a socket's byte stream into JSON lines with a bound on line length, so a
 * misbehaving peer (QEMU monitor, guest agent, a host agent's progress stream) cannot make us buffer without limit.
 */
export class JsonLineReader {
  #buffer = '';
  #maxLine: number;
  readonly #onValue: (value: unknown) => void;
  readonly #onError: (message: string) => void;

  constructor(maxLine: number, onValue: (value: unknown) => void, onError: (message: string) => void) {
    this.#maxLine = maxLine;
    this.#onValue = onValue;
    this.#onError = onError;
  }

  /** The longest line accepted from now on (a command whose reply is known to be large). */
  set maxLine(bytes: number) {
    this.#maxLine = bytes;
  }

  /** Drops whatever is buffered (after a resynchronisation). */
  reset(): void {
    this.#buffer = '';
  }

  push(chunk: string): void {
    // Only the new chunk can hold a line end: searching the whole buffer on every chunk would
    // make a long line cost quadratic time.
    let from = this.#buffer.length;
    const hasLineEnd = chunk.includes('\n');
    this.#buffer += chunk;
    for (;;) {
      const nl = hasLineEnd ? this.#buffer.indexOf('\n', from) : -1;
      from = 0;
      if (nl < 0) break;
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (line.length === 0) continue;
      if (line.length > this.#maxLine) {
        this.#onError(`reply of ${line.length} bytes exceeds the limit of ${this.#maxLine}`);
        continue;
      }
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        this.#onError(`malformed JSON: ${line.slice(0, 80)}`);
        continue;
      }
      this.#onValue(value);
    }
    if (this.#buffer.length > this.#maxLine) {
      this.#onError(`reply exceeds the limit of ${this.#maxLine} bytes; discarded`);
      this.#buffer = '';
    }
  }
}
