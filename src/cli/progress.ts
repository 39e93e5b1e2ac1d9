/**
 * Waiting on a task: a progress bar on a terminal, one line per step otherwise. Follows the
 * event stream and re-reads the task, so a missed event cannot leave the CLI waiting forever.
 */
import { TernError } from '../errors.ts';
import { taskRoutes } from '../wire/api/tasks.ts';
import type { Task } from '../wire/task.ts';
import type { ApiClient } from './client.ts';
import type { Flags } from './flags.ts';
import { printable, printJson, printText } from './output.ts';

const finished = (t: Task) => t.state === 'succeeded' || t.state === 'failed' || t.state === 'cancelled';

function bar(t: Task): string {
  const width = 30;
  const filled = Math.round((t.progress / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(t.progress).padStart(3)}% ${t.step}`.slice(
    0,
    100,
  );
}

export async function waitForTask(api: ApiClient, task: Task, quiet = false): Promise<Task> {
  const tty = process.stderr.isTTY && !quiet;
  let lastStep = '';
  const show = (t: Task) => {
    if (quiet) return;
    // A step may name what a user chose: its control characters stay inert.
    if (tty) process.stderr.write(`\r\x1b[2K${t.kind} ${printable(bar(t), true)}`);
    else if (t.step !== lastStep)
      process.stderr.write(`${t.kind}: ${printable(t.step, true)} (${t.progress}%)\n`);
    lastStep = t.step;
  };
  const stop = new AbortController();
  let current = task;
  const done = new Promise<Task>((resolve, reject) => {
    const check = (t: Task) => {
      current = t;
      show(t);
      if (finished(t)) resolve(t);
    };
    api
      .events(`task=${task.id}`, (e) => e.type === 'task' && check(e.task), stop.signal)
      .catch((err) => {
        if (!stop.signal.aborted) reject(err);
      });
    // The stream may miss what happened before it connected; a periodic read covers that.
    const poll = async () => {
      while (!stop.signal.aborted) {
        check(await api.call(taskRoutes.show, { params: { id: task.id } }));
        await new Promise((r) => setTimeout(r, 1000));
      }
    };
    poll().catch(reject);
  });
  try {
    current = await done;
  } finally {
    stop.abort();
    if (tty) process.stderr.write('\n');
  }
  if (current.state !== 'succeeded') {
    const full = await api.call(taskRoutes.show, { params: { id: task.id } });
    const err = full.error ?? { code: 'internal', message: `task ${full.state}` };
    throw new TernError(
      TernError.isCode(err.code) ? err.code : 'internal',
      `${full.kind} ${full.state}: ${err.message}`,
    );
  }
  return current;
}

/** After a task was accepted: report it at once with --no-wait, else wait for it with progress. */
export async function followTask(api: ApiClient, flags: Flags, task: Task): Promise<void> {
  if (flags['no-wait']) {
    if (flags.output === 'json') printJson(task);
    else printText(`task ${task.id} (${task.kind}) accepted\n`);
    return;
  }
  const done = await waitForTask(api, task, flags.output === 'json');
  if (flags.output === 'json') printJson(done);
}
