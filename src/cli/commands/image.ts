/** `tern image …`: disk images and ISOs in the library. */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { TernError } from '../../errors.ts';
import { imageRoutes } from '../../wire/api/images.ts';
import { type Image, ImageSourceFormat } from '../../wire/image.ts';
import type { ReplyOf } from '../../wire/route.ts';
import { forEachName } from '../bulk.ts';
import type { ApiClient } from '../client.ts';
import { type Flags, oneOf, wordsOf } from '../flags.ts';
import { byName } from '../names.ts';
import { ago, bytes, printFields, printJson, printTable } from '../output.ts';
import { followTask } from '../progress.ts';
import { type Command, viaGroup } from '../registry.ts';

const usage =
  'usage: tern image list | show NAME | delete NAME | import NAME --path HOSTPATH [--iso] [--format F] [--compress] | upload NAME FILE [--iso] [--format F] [--compress] | verify NAME | export NAME --out FILE';
function kindAndFormat(flags: Flags): { kind: 'disk' | 'iso'; format?: ImageSourceFormat } {
  const format =
    flags.format !== undefined ? oneOf(flags.format, wordsOf(ImageSourceFormat), '--format') : '';
  return { kind: flags.iso ? 'iso' : 'disk', ...(format ? { format } : {}) };
}

/**
 * Writes the image's stored file to `out` (through `out.partial`, renamed when whole), and
 * checks the bytes against the digest recorded at import.
 */
async function exportImage(api: ApiClient, name: string, out: string, flags: Flags): Promise<void> {
  if (fs.existsSync(out)) throw new TernError('conflict', `${out} exists; give a new file`);
  const image = await api.call(imageRoutes.show, { params: { name } });
  const { body, length } = await api.download(imageRoutes.content, { params: { name } });
  const partial = `${out}.partial`;
  const hash = createHash('sha256');
  let got = 0;
  try {
    await pipeline(
      Readable.fromWeb(body as WebReadableStream<Uint8Array>),
      new Transform({
        transform(chunk: Buffer, _enc, done) {
          got += chunk.length;
          hash.update(chunk);
          done(null, chunk);
        },
      }),
      fs.createWriteStream(partial, { flags: 'wx' }),
    );
    if (got !== length)
      throw new TernError('unavailable', `the download ended after ${got} of ${length} bytes`);
    const sha256 = hash.digest('hex');
    if (image.sha256 !== null && sha256 !== image.sha256)
      throw new TernError(
        'storage_error',
        `the downloaded bytes hash to ${sha256}, not the recorded ${image.sha256}; run "tern image verify ${name}"`,
      );
    fs.renameSync(partial, out);
    if (flags.output === 'json') printJson({ image: name, file: out, bytes: got, sha256 });
    else process.stderr.write(`exported ${name} to ${out} (${bytes(got)}), sha256 ${sha256}\n`);
  } catch (err) {
    fs.rmSync(partial, { force: true });
    if (err instanceof TernError) throw err;
    throw new TernError('unavailable', `the export of ${name} failed: ${(err as Error).message}`);
  }
}

function show(i: Image): void {
  printFields([
    ['name', i.name],
    ['kind', i.kind],
    ['format', i.format],
    ['imported from', i.sourceFormat],
    ['virtual size', bytes(i.virtualBytes)],
    ['allocated', bytes(i.actualBytes)],
    ['host', i.host],
    ['volume', `${i.volume.pool}:${i.volume.path}`],
    ['sha256', i.sha256],
    ['created', i.createdAt],
  ]);
}

/** Streams the file, with a progress bar on a terminal, then follows the import task. */
async function upload(api: ApiClient, name: string, file: string, flags: Flags): Promise<void> {
  let size: number;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (err) {
    throw new TernError('invalid_request', `cannot upload ${file}: ${(err as Error).message}`);
  }
  const tty = process.stderr.isTTY && flags.output !== 'json';
  let sent = 0;
  let shown = -1;
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      sent += chunk.length;
      const pct = Math.floor((sent / size) * 100);
      if (tty && pct !== shown) {
        shown = pct;
        const filled = Math.round(pct / (100 / 30));
        process.stderr.write(
          `\r\x1b[2Kupload [${'#'.repeat(filled)}${'.'.repeat(30 - filled)}] ${String(pct).padStart(3)}% ${bytes(sent)} of ${bytes(size)}`,
        );
      }
      controller.enqueue(chunk);
    },
  });
  if (!tty && flags.output !== 'json') process.stderr.write(`uploading ${file} (${bytes(size)})\n`);
  const body = (Readable.toWeb(fs.createReadStream(file)) as ReadableStream<Uint8Array>).pipeThrough(counter);
  const query = { ...kindAndFormat(flags), ...(flags.compress ? { compress: 'true' as const } : {}) };
  let r: ReplyOf<typeof imageRoutes.upload>;
  try {
    r = await api.upload(imageRoutes.upload, { params: { name }, query }, body, size);
  } finally {
    if (tty) process.stderr.write('\n');
  }
  if (flags.output !== 'json') process.stderr.write(`uploaded ${bytes(r.bytes)}, sha256 ${r.sha256}\n`);
  await followTask(api, flags, r.task);
}

export async function imageCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const json = flags.output === 'json';
  switch (sub) {
    case 'list':
    case undefined: {
      const items = byName((await api.call(imageRoutes.list)).items);
      if (json) return printJson(items);
      return printTable(
        ['NAME', 'KIND', 'FROM', 'VIRTUAL', 'ALLOCATED', 'HOST', 'CREATED'],
        items.map((i) => [
          i.name,
          i.kind,
          i.sourceFormat,
          bytes(i.virtualBytes),
          bytes(i.actualBytes),
          i.host,
          ago(i.createdAt),
        ]),
      );
    }
    case 'show': {
      if (args.length !== 1) throw new TernError('invalid_request', 'usage: tern image show NAME');
      const image = await api.call(imageRoutes.show, { params: { name: args[0] } });
      return json ? printJson(image) : show(image);
    }
    case 'delete':
      return forEachName(api, flags, args, {
        usage: 'usage: tern image delete NAME...',
        noun: 'images',
        done: 'deleted',
        submit: async (name) => (await api.call(imageRoutes.remove, { params: { name } })).task,
      });
    case 'import': {
      if (args.length !== 1 || !flags.path)
        throw new TernError(
          'invalid_request',
          'usage: tern image import NAME --path HOSTPATH [--iso] [--format F] [--compress]',
        );
      // The path is on the host; a relative one is taken from here, as all-in-one shares the machine.
      const body = {
        name: args[0],
        sourcePath: path.resolve(flags.path),
        ...kindAndFormat(flags),
        ...(flags.compress ? { compress: true } : {}),
      };
      return followTask(api, flags, (await api.call(imageRoutes.import, { body })).task);
    }
    case 'verify':
      if (args.length !== 1) throw new TernError('invalid_request', 'usage: tern image verify NAME');
      await followTask(api, flags, (await api.call(imageRoutes.verify, { params: { name: args[0] } })).task);
      if (flags.output !== 'json' && !flags['no-wait'])
        process.stderr.write(`image ${args[0]}: the stored file matches its recorded sha256\n`);
      return;
    case 'export':
      if (args.length !== 1 || !flags.out)
        throw new TernError('invalid_request', 'usage: tern image export NAME --out FILE');
      return exportImage(api, args[0], path.resolve(flags.out), flags);
    case 'upload':
      if (args.length !== 2)
        throw new TernError(
          'invalid_request',
          'usage: tern image upload NAME FILE [--iso] [--format F] [--compress]',
        );
      return upload(api, args[0], args[1], flags);
    default:
      throw new TernError('invalid_request', usage);
  }
}

const image = viaGroup(imageCommand);

export const imageCommands: Command[] = [
  { path: 'image list', summary: 'the image library', groupDefault: true, run: image },
  { path: 'image show', args: 'NAME', summary: 'one image', run: image },
  { path: 'image delete', args: 'NAME...', summary: 'delete images', flags: ['no-wait'], run: image },
  {
    path: 'image import',
    args: 'NAME',
    summary: "an image from a file in one of the host's import dirs",
    flags: ['path', 'iso', 'format', 'compress', 'no-wait'],
    run: image,
  },
  {
    path: 'image upload',
    args: 'NAME FILE',
    summary: 'an image from a local file, streamed; disks are stored as qcow2',
    flags: ['iso', 'format', 'compress', 'no-wait'],
    run: image,
  },
  {
    path: 'image verify',
    args: 'NAME',
    summary: 're-hash the stored file against its recorded sha256',
    flags: ['no-wait'],
    run: image,
  },
  {
    path: 'image export',
    args: 'NAME',
    summary: 'download the stored file (checked against its sha256)',
    flags: [['out', 'the file it is written to']],
    run: image,
  },
];
