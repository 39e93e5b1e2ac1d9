/**
 * Files out of a backup without restoring it: the backup's disk is served from the datastore
 * by Tern's NBD server, `qemu-storage-daemon` exposes that export as a plain read-only file
 * through FUSE (only the blocks read are fetched), and `debugfs` reads the ext2/3/4
 * filesystem of a partition of it. Nothing is mounted in the host's kernel, so a hostile
 * filesystem in a backup meets debugfs's parser, not the kernel's.
 *
 * Each request is one session: opened, used, and torn down (daemon, server, directory), also
 * on failure. A session left by a killed agent is swept when the next one starts.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { BackupDiskReader } from '../../backup/datastore/disk-reader.ts';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { BackupFileListing, BackupFilesRequest, BackupPartition } from '../../wire/backup.ts';
import { openDatastore } from './datastore-handlers.ts';
import { debugfsError, guestPath, parseLinkTarget, parseListing, parseStatType } from './debugfs-output.ts';
import { NbdServer } from './nbd/server.ts';

const run = promisify(execFile);
const READY_MS = 20_000;
const MAX_LINKS = 8;

interface Session {
  image: string;
  dir: string;
  size: number;
  partitions: BackupPartition[];
}

export class BackupFiles {
  readonly #dir: string;
  readonly #log: Logger;

  constructor(stateDir: string, log: Logger) {
    this.#dir = path.join(stateDir, 'backup-files');
    this.#log = log;
  }

  /** Lists a directory of the backup's filesystem. */
  async list(req: BackupFilesRequest): Promise<BackupFileListing> {
    const at = guestPath(req.path);
    return this.#session(req, async (s) => {
      const { partition, offset } = choosePartition(s, req.partition);
      const out = await debugfs(s.image, offset, `ls -p "${at}"`, at);
      const { entries, truncated } = parseListing(out);
      return { partitions: s.partitions, partition, path: at, entries, truncated };
    });
  }

  /**
   * Copies one file of the backup's filesystem (symbolic links followed) to a file of the
   * agent's, for the caller to stream and delete; refused above `maxBytes`.
   */
  async read(req: BackupFilesRequest, maxBytes: number): Promise<{ file: string; bytes: number }> {
    let at = guestPath(req.path);
    return this.#session(req, async (s) => {
      const { offset } = choosePartition(s, req.partition);
      for (let hops = 0; ; hops++) {
        const stat = await debugfs(s.image, offset, `stat "${at}"`, at);
        const type = parseStatType(stat);
        if (type === 'symlink') {
          const target = parseLinkTarget(stat);
          if (!target || hops >= MAX_LINKS)
            throw new TernError('invalid_request', `${at} is a symbolic link Tern does not follow`);
          at = guestPath(target.startsWith('/') ? target : `${path.posix.dirname(at)}/${target}`);
          continue;
        }
        if (type !== 'file')
          throw new TernError('invalid_request', `${at} is not a regular file (${type ?? 'unknown'})`);
        const size = Number(/Size: (\d+)/.exec(stat)?.[1] ?? Number.NaN);
        if (!(size <= maxBytes))
          throw new TernError('invalid_request', `${at} holds ${size} bytes; at most ${maxBytes} are read`);
        const file = path.join(
          this.#dir,
          `out-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`,
        );
        await debugfs(s.image, offset, `dump -p "${at}" "${file}"`, at);
        const bytes = fs.statSync(file).size;
        if (bytes !== size) {
          fs.rmSync(file, { force: true });
          throw new TernError('storage_error', `${at}: ${bytes} bytes read of ${size}`);
        }
        return { file, bytes };
      }
    });
  }

  async #session<T>(req: BackupFilesRequest, work: (s: Session) => Promise<T>): Promise<T> {
    const store = await openDatastore(req.datastore);
    const manifest = await store.readManifest(req.group, req.id);
    const reader = new BackupDiskReader(store, await store.readIndex(manifest, req.disk));
    fs.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    await this.#sweep();
    const dir = fs.mkdtempSync(path.join(this.#dir, `s-${process.pid}-`));
    const image = path.join(dir, 'disk.raw');
    fs.writeFileSync(image, '');
    let server: NbdServer | null = null;
    let daemon: ChildProcess | null = null;
    try {
      server = await NbdServer.listen(path.join(dir, 'nbd.sock'), new Map([['disk', reader]]), this.#log);
      daemon = await exposeAsFile(server.path, image, reader.size, dir);
      const s: Session = { image, dir, size: reader.size, partitions: await partitionsOf(image) };
      return await work(s);
    } finally {
      if (daemon) await stop(daemon, image);
      await server?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Ends the daemons of sessions an agent before this one left, and their directories. */
  async #sweep(): Promise<void> {
    for (const name of fs.readdirSync(this.#dir)) {
      const dir = path.join(this.#dir, name);
      if (name.startsWith('out-')) {
        // An output file older than an hour was never streamed: its request is long gone.
        if (Date.now() - fs.statSync(dir).mtimeMs > 3_600_000) fs.rmSync(dir, { force: true });
        continue;
      }
      if (name.startsWith(`s-${process.pid}-`)) continue;
      let pid = 0;
      try {
        pid = Number(fs.readFileSync(path.join(dir, 'daemon.pid'), 'utf8'));
      } catch {}
      if (pid > 0 && isOurs(pid, dir)) process.kill(pid, 'SIGTERM');
      await run('umount', ['-l', path.join(dir, 'disk.raw')]).catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** Whether process `pid` is a storage daemon of session `dir` (a pid may have been reused). */
function isOurs(pid: number, dir: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

/** A FUSE export of the NBD export at `socket` over the empty file `image`, once it is there. */
async function exposeAsFile(socket: string, image: string, size: number, dir: string): Promise<ChildProcess> {
  const node = JSON.stringify({
    driver: 'nbd',
    'node-name': 'backup',
    server: { type: 'unix', path: socket },
    export: 'disk',
    'read-only': true,
  });
  const daemon = spawn(
    'qemu-storage-daemon',
    ['--blockdev', node, '--export', `type=fuse,id=files,node-name=backup,mountpoint=${image},writable=off`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  fs.writeFileSync(path.join(dir, 'daemon.pid'), String(daemon.pid ?? 0));
  let stderr = '';
  daemon.stderr?.setEncoding('utf8').on('data', (t: string) => {
    stderr = (stderr + t).slice(-4000);
  });
  let exited = false;
  daemon.once('exit', () => {
    exited = true;
  });
  daemon.once('error', () => {
    exited = true;
  });
  const deadline = Date.now() + READY_MS;
  while (fs.statSync(image).size !== size) {
    if (exited || Date.now() > deadline) {
      await stop(daemon, image);
      throw new TernError(
        'storage_error',
        `qemu-storage-daemon could not expose the backup as a file: ${stderr.trim().split('\n').pop() ?? 'no answer'}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return daemon;
}

async function stop(daemon: ChildProcess, image: string): Promise<void> {
  if (daemon.exitCode === null && daemon.signalCode === null) {
    const exited = new Promise<void>((resolve) => daemon.once('exit', () => resolve()));
    daemon.kill('SIGTERM');
    const timer = setTimeout(() => daemon.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
  // A daemon killed hard leaves its mount behind.
  await run('umount', ['-l', image]).catch(() => {});
}

/** The partitions sfdisk finds; none (the filesystem is the whole disk) when it finds no table. */
async function partitionsOf(image: string): Promise<BackupPartition[]> {
  let out: string;
  try {
    out = (await run('sfdisk', ['-J', image], { maxBuffer: 1024 * 1024 })).stdout;
  } catch {
    return [];
  }
  const table = (JSON.parse(out) as { partitiontable?: { sectorsize?: unknown; partitions?: unknown } })
    .partitiontable;
  const sector = typeof table?.sectorsize === 'number' ? table.sectorsize : 512;
  const list = Array.isArray(table?.partitions) ? table.partitions.slice(0, 128) : [];
  return list.flatMap((p: Record<string, unknown>, i: number) =>
    typeof p.start === 'number' && typeof p.size === 'number'
      ? [
          {
            number: Number(/(\d+)$/.exec(String(p.node))?.[1] ?? i + 1),
            startBytes: p.start * sector,
            sizeBytes: p.size * sector,
            type: String(p.type ?? '').slice(0, 64),
            name: String(p.name ?? '').slice(0, 64),
          },
        ]
      : [],
  );
}

/** The partition asked for, or the largest one, or the whole disk when there is no table. */
function choosePartition(
  s: Session,
  wanted: number | null | undefined,
): { partition: number | null; offset: number } {
  if (s.partitions.length === 0) {
    if (wanted) throw new TernError('not_found', 'the disk has no partition table');
    return { partition: null, offset: 0 };
  }
  const p = wanted
    ? s.partitions.find((x) => x.number === wanted)
    : s.partitions.reduce((a, b) => (b.sizeBytes > a.sizeBytes ? b : a));
  if (!p) throw new TernError('not_found', `the disk has no partition ${wanted}`);
  return { partition: p.number, offset: p.startBytes };
}

/** One debugfs request on the filesystem at `offset` of `image`; its output, or its error. */
async function debugfs(image: string, offset: number, request: string, what: string): Promise<string> {
  const { stdout, stderr } = await run('debugfs', ['-R', request, `${image}?offset=${offset}`], {
    maxBuffer: 16 * 1024 * 1024,
  }).catch((err: { stderr?: string; message: string }) => {
    throw new TernError('storage_error', `debugfs failed: ${(err.stderr ?? err.message).trim().slice(-300)}`);
  });
  const error = debugfsError(stderr, what);
  if (error) throw error;
  return stdout;
}
