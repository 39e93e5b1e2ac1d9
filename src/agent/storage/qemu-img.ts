/**
 * Runs `qemu-img` as a child process without blocking the agent: output streamed to the
 * caller or kept (bounded), killed when the caller's signal aborts or its time runs out.
 */
import { spawn } from 'node:child_process';
import { TernError } from '../../errors.ts';

export interface QemuImgRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface QemuImgOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Receives stdout as it comes; stdout is then not kept. */
  onStdout?: (text: string) => void;
  /** Most stdout kept (default 4 MiB); more fails the run. */
  maxStdout?: number;
}

const maxStderr = 64 * 1024;

export function qemuImg(args: string[], opts: QemuImgOptions = {}): Promise<QemuImgRun> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new TernError('cancelled', 'the import was cancelled'));
      return;
    }
    const child = spawn('qemu-img', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let failure: TernError | null = null;
    const stop = (why: TernError) => {
      failure ??= why;
      child.kill('SIGKILL');
    };
    const onAbort = () => stop(new TernError('cancelled', 'the import was cancelled'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = opts.timeoutMs
      ? setTimeout(
          () => stop(new TernError('invalid_request', `qemu-img ${args[0]} took over ${opts.timeoutMs} ms`)),
          opts.timeoutMs,
        )
      : undefined;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (text: string) => {
      if (opts.onStdout) {
        try {
          opts.onStdout(text);
        } catch (err) {
          stop(err instanceof TernError ? err : new TernError('internal', String(err)));
        }
        return;
      }
      stdout += text;
      if (stdout.length > (opts.maxStdout ?? 4 * 1024 * 1024))
        stop(new TernError('invalid_request', `qemu-img ${args[0]} said more than expected`));
    });
    child.stderr.on('data', (text: string) => {
      stderr = (stderr + text).slice(-maxStderr);
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      failure ??=
        err.code === 'ENOENT'
          ? new TernError('storage_error', 'qemu-img is not installed (run tern doctor)')
          : new TernError('storage_error', `qemu-img could not run: ${err.message}`);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (failure) reject(failure);
      else resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}
