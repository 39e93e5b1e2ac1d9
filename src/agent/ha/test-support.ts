/** Shared by the HA unit tests of the agent (not used by the product). */
import fs from 'node:fs';
import { watchdogPaths } from './watchdog.ts';

/**
 * Resolves once the watchdog's log (in `haDir`) matches `re`. The watchdog logs a kill just
 * after it, so the victim's exit can reach a test before the line does: the file is watched,
 * with a bound.
 */
export async function watchdogLogged(haDir: string, re: RegExp, timeoutMs = 2000): Promise<void> {
  const file = watchdogPaths(haDir).log;
  const text = () => fs.readFileSync(file, 'utf8');
  if (re.test(text())) return;
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      watcher.close();
      if (err) reject(err);
      else resolve();
    };
    const watcher = fs.watch(file, () => {
      if (re.test(text())) done();
    });
    const timer = setTimeout(() => done(new Error(`no ${re} in the watchdog log: ${text()}`)), timeoutMs);
    if (re.test(text())) done();
  });
}
