/**
 * One verb on many names (`tern vm delete t-{1..100}`, whether the shell expanded the range or
 * not): one task per name, all submitted, then all waited on, every outcome reported.
 */
import { TernError } from '../errors.ts';
import type { Task } from '../wire/task.ts';
import type { ApiClient } from './client.ts';
import type { Flags } from './flags.ts';
import { expandNames } from './names.ts';
import { type Format, printJson, printText } from './output.ts';
import { followTask, waitForTask } from './progress.ts';

export interface Bulk {
  /** `usage: …`, for no name at all. */
  usage: string;
  /** How the summary names the objects and the deed: "VMs", "deleted". */
  noun: string;
  done: string;
  /** Submits the operation on one name and returns its task. */
  submit(name: string): Promise<Task>;
}

export async function forEachName(api: ApiClient, flags: Flags, args: string[], bulk: Bulk): Promise<void> {
  const names = expandNames(args);
  if (names.length === 0) throw new TernError('invalid_request', bulk.usage);
  if (names.length === 1) return followTask(api, flags, await bulk.submit(names[0]));
  const submitted: { name: string; task?: Task; error?: string }[] = [];
  for (const name of names) {
    try {
      submitted.push({ name, task: await bulk.submit(name) });
    } catch (err) {
      submitted.push({ name, error: (err as Error).message });
    }
  }
  if (!flags['no-wait']) {
    let finished = 0;
    await Promise.all(
      submitted.map(async (s) => {
        if (!s.task) return;
        try {
          s.task = await waitForTask(api, s.task, true);
        } catch (err) {
          s.error = (err as Error).message;
        }
        if (flags.output !== 'json')
          process.stderr.write(`[${++finished}/${names.length}] ${s.name}: ${s.error ?? 'done'}\n`);
      }),
    );
  }
  const failed = submitted.filter((s) => s.error);
  if (flags.output === 'json') {
    printJson(submitted.map((s) => ({ name: s.name, task: s.task?.id ?? null, error: s.error ?? null })));
  } else {
    process.stdout.write(
      `${names.length - failed.length} of ${names.length} ${bulk.noun} ${flags['no-wait'] ? 'accepted' : bulk.done}\n`,
    );
  }
  if (failed.length > 0) {
    throw new TernError(
      'conflict',
      `${failed.length} failed: ${failed.map((f) => `${f.name} (${f.error})`).join('; ')}`,
    );
  }
}

/**
 * One immediate verb (no task) on many names, in turn: `tern user delete u-{1..5}`. Every name
 * is tried; the failures are named together at the end.
 */
export async function eachName(
  args: string[],
  usage: string,
  act: (name: string) => Promise<void>,
): Promise<void> {
  const names = expandNames(args);
  if (names.length === 0) throw new TernError('invalid_request', usage);
  if (names.length === 1) return act(names[0]);
  const failed: string[] = [];
  for (const name of names) {
    try {
      await act(name);
    } catch (err) {
      failed.push(`${name} (${(err as Error).message})`);
    }
  }
  if (failed.length > 0) throw new TernError('conflict', `${failed.length} failed: ${failed.join('; ')}`);
}

/** `tern network delete a b`: each name deleted in turn, and said so unless the output is JSON. */
export function deleteEach(
  args: string[],
  usage: string,
  noun: string,
  format: Format,
  remove: (name: string) => Promise<unknown>,
): Promise<void> {
  return eachName(args, usage, async (name) => {
    await remove(name);
    if (format !== 'json') printText(`${noun} ${name} deleted\n`);
  });
}
