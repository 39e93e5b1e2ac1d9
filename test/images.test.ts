/**
 * The library's disk images and ISOs with real qemu-img: every accepted format imports as
 * exactly the original bytes in qcow2, by path and by streamed upload; truncated, backed,
 * random and oversized files are refused with a clear error and leave nothing behind. Every
 * image records the SHA-256 of its stored file, which verify re-checks and export sends back;
 * --compress stores a smaller qcow2 with the same content.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import type { Alert } from '../src/wire/alert.ts';
import type { Image } from '../src/wire/image.ts';
import type { Task } from '../src/wire/task.ts';
import { type Cluster, repoRoot, startCluster, tempDir } from './harness.ts';

const MiB = 1024 * 1024;
// Inherited by the agent and manager processes of the cluster.
process.env.TERN_MAX_UPLOAD_BYTES = String(6 * MiB);

let c: Cluster;
let src: string;
const file = (name: string) => path.join(src, name);

before(async () => {
  src = tempDir('tern-img-src');
  // 4 MiB whose every sector says which it is, so a misplaced or zeroed sector shows.
  const raw = Buffer.alloc(4 * MiB);
  for (let s = 0; s < raw.length / 512; s++) {
    raw.fill(s % 251, s * 512, (s + 1) * 512);
    raw.write(`tern sector ${s}`, s * 512, 'latin1');
  }
  fs.writeFileSync(file('base.raw'), raw);
  for (const [fmt, ext] of [
    ['qcow2', 'qcow2'],
    ['vmdk', 'vmdk'],
    ['vpc', 'vhd'],
    ['vhdx', 'vhdx'],
  ])
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', fmt, file('base.raw'), file(`base.${ext}`)]);
  const isoContent = path.join(src, 'iso-content');
  fs.mkdirSync(isoContent);
  fs.writeFileSync(path.join(isoContent, 'readme.txt'), 'hello from an ISO\n');
  execFileSync('genisoimage', ['-quiet', '-o', file('test.iso'), '-V', 'TERNTEST', isoContent]);
  // The only place an import by path may read from.
  c = await startCluster('images', { importDirs: [src] });
});
after(async () => {
  await c?.stop();
  if (src) fs.rmSync(src, { recursive: true, force: true });
});

/** Every file the library area of the pool holds (images and staged uploads). */
function libraryFiles(): string[] {
  return ['images', 'uploads'].flatMap((dir) => {
    const d = path.join(c.pool, dir);
    return fs.existsSync(d) ? fs.readdirSync(d).map((f) => `${dir}/${f}`) : [];
  });
}

function sameBytes(libraryPath: string): boolean {
  const r = spawnSync('qemu-img', [
    'compare',
    '-f',
    'raw',
    '-F',
    'qcow2',
    file('base.raw'),
    path.join(c.pool, libraryPath),
  ]);
  return r.status === 0;
}

const sha256 = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

const tern = (...args: string[]) =>
  spawnSync(path.join(repoRoot, 'bin', 'tern'), args, {
    encoding: 'utf8',
    env: { ...process.env, ...c.api.cliEnv },
  });

function importPath(name: string, sourcePath: string, extra: Record<string, unknown> = {}): Promise<Task> {
  return c.api.task('POST', '/api/v1/images', { name, sourcePath, ...extra });
}

async function upload(name: string, f: string, query = '', length = fs.statSync(f).size) {
  const res = await c.api.fetch(`${c.api.url}/api/v1/images/${name}${query}`, {
    method: 'PUT',
    headers: {
      authorization: `Bearer ${c.api.token}`,
      'content-type': 'application/octet-stream',
      'content-length': String(length),
    },
    body: Readable.toWeb(fs.createReadStream(f)) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  return {
    status: res.status,
    body: (await res.json()) as {
      task: Task;
      bytes: number;
      sha256: string;
      error?: { code: string; message: string };
    },
  };
}

/** The import failed for `message` and left no image row and no file beyond `files`. */
async function refused(task: Task, message: RegExp, name: string, files: string[]): Promise<void> {
  assert.equal(task.state, 'failed', `expected a refusal, got ${task.state}`);
  assert.equal(task.error?.code, 'invalid_request', task.error?.message);
  assert.match(task.error!.message, message);
  const r = await c.api.raw('GET', `/api/v1/images/${name}`);
  assert.equal(r.status, 404, 'no image row');
  assert.deepEqual(libraryFiles(), files, 'no file left in the pool');
}

test('raw, qcow2, VMDK, VHD and VHDX import by path as the very same bytes in qcow2', async () => {
  for (const [fmt, f, extra] of [
    ['raw', 'base.raw', { format: 'raw' }],
    ['qcow2', 'base.qcow2', {}],
    ['vmdk', 'base.vmdk', {}],
    ['vhd', 'base.vhd', {}],
    ['vhdx', 'base.vhdx', { format: 'vhdx' }],
  ] as const) {
    const task = await importPath(`from-${fmt}`, file(f), extra);
    assert.equal(task.state, 'succeeded', `${fmt}: ${JSON.stringify(task.error)}`);
    assert.equal(task.progress, 100);
    assert.ok(
      task.log?.some((l) => l.line === `converting ${fmt} to qcow2`),
      `${fmt}: a conversion step`,
    );
    const image = await c.api.request<Image>('GET', `/api/v1/images/from-${fmt}`);
    assert.equal(image.kind, 'disk');
    assert.equal(image.format, 'qcow2');
    assert.equal(image.sourceFormat, fmt);
    assert.equal(image.host, 'local');
    assert.deepEqual(image.volume, { pool: 'local', path: `images/from-${fmt}.qcow2` });
    assert.ok(image.virtualBytes >= 4 * MiB);
    const info = JSON.parse(
      execFileSync('qemu-img', ['info', '--output=json', path.join(c.pool, image.volume.path)], {
        encoding: 'utf8',
      }),
    ) as { format: string; 'backing-filename'?: string };
    assert.equal(info.format, 'qcow2');
    assert.equal(info['backing-filename'], undefined);
    assert.ok(sameBytes(image.volume.path), `${fmt}: the library image has the original bytes`);
  }
  const { items } = await c.api.request<{ items: Image[] }>('GET', '/api/v1/images');
  assert.deepEqual(
    items.map((i) => i.name).filter((n) => n.startsWith('from-')),
    ['from-qcow2', 'from-raw', 'from-vhd', 'from-vhdx', 'from-vmdk'],
  );
});

test('an upload streams through to the host and imports', async () => {
  const r = await upload('uploaded', file('base.vmdk'));
  assert.equal(r.status, 202, JSON.stringify(r.body));
  assert.equal(r.body.bytes, fs.statSync(file('base.vmdk')).size);
  assert.equal(r.body.sha256, sha256(file('base.vmdk')));
  const task = await c.api.settle(r.body.task);
  assert.equal(task.state, 'succeeded', JSON.stringify(task.error));
  const image = await c.api.request<Image>('GET', '/api/v1/images/uploaded');
  assert.equal(image.sourceFormat, 'vmdk');
  // The answer's digest is of the bytes sent; the image's, of the qcow2 stored from them.
  assert.equal(image.sha256, sha256(path.join(c.pool, image.volume.path)));
  assert.ok(sameBytes(image.volume.path));
  assert.ok(!libraryFiles().some((f) => f.startsWith('uploads/')), 'the staged upload is gone');
});

test('the CLI uploads, lists and shows images', () => {
  const up = tern('image', 'upload', 'cli-up', file('base.qcow2'));
  assert.equal(up.status, 0, up.stderr);
  assert.match(up.stderr, /image\.import: succeeded \(100%\)/);
  const list = tern('image', 'list');
  assert.match(list.stdout, /^NAME\s+KIND\s+FROM/m);
  assert.match(list.stdout, /^cli-up\s+disk\s+qcow2\s+4 MiB/m);
  const show = JSON.parse(tern('image', 'show', 'cli-up', '-o', 'json').stdout) as Image;
  assert.equal(show.sha256, sha256(path.join(c.pool, show.volume.path)));
  const bad = tern('image', 'import', 'cli-bad', '--path', file('base.raw'));
  assert.equal(bad.status, 2, 'a refused file is the user input at fault');
  assert.match(bad.stderr, /^tern: image\.import failed: .*base\.raw: not a disk image/m);
  for (const name of ['cli-up']) {
    const del = tern('image', 'delete', name);
    assert.equal(del.status, 0, del.stderr);
  }
});

test('an import records the SHA-256 of the stored file; verify finds one changed byte and changes nothing; export sends the stored bytes', async () => {
  const task = await importPath('digest', file('base.vmdk'));
  assert.equal(task.state, 'succeeded', JSON.stringify(task.error));
  const image = await c.api.request<Image>('GET', '/api/v1/images/digest');
  const stored = path.join(c.pool, image.volume.path);
  assert.equal(image.sha256, sha256(stored), 'the digest of the stored qcow2');

  const ok = await c.api.task('POST', '/api/v1/images/digest/verify');
  assert.equal(ok.kind, 'image.verify');
  assert.equal(ok.state, 'succeeded', JSON.stringify(ok.error));

  const res = await c.api.fetch(`${c.api.url}/api/v1/images/digest/content`, {
    headers: { authorization: `Bearer ${c.api.token}` },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/octet-stream');
  assert.equal(Number(res.headers.get('content-length')), fs.statSync(stored).size);
  const sent = Buffer.from(await res.arrayBuffer());
  assert.equal(createHash('sha256').update(sent).digest('hex'), image.sha256);
  const out = path.join(tempDir('tern-img-out'), 'digest.qcow2');
  const exported = tern('image', 'export', 'digest', '--out', out);
  assert.equal(exported.status, 0, exported.stderr);
  assert.equal(sha256(out), image.sha256);
  assert.ok(!fs.existsSync(`${out}.partial`));
  const missing = await c.api.raw('GET', '/api/v1/images/nothing/content');
  assert.equal(missing.status, 404);

  // One byte changed on the host: a mismatch, said clearly, and the image left as it is.
  const fd = fs.openSync(stored, 'r+');
  const at = fs.fstatSync(fd).size - 1;
  const one = Buffer.alloc(1);
  fs.readSync(fd, one, 0, 1, at);
  fs.writeSync(fd, Buffer.from([one[0] ^ 0xff]), 0, 1, at);
  fs.closeSync(fd);
  const changed = sha256(stored);
  const bad = await c.api.task('POST', '/api/v1/images/digest/verify');
  assert.equal(bad.state, 'failed');
  assert.equal(bad.error?.code, 'storage_error');
  assert.match(bad.error!.message, /does not match its recorded SHA-256/);
  assert.ok(bad.error!.message.includes(changed) && bad.error!.message.includes(image.sha256!));
  const cli = tern('image', 'verify', 'digest');
  assert.notEqual(cli.status, 0);
  assert.match(cli.stderr, /image\.verify failed: image digest does not match/);
  const after = await c.api.request<Image>('GET', '/api/v1/images/digest');
  assert.equal(after.sha256, image.sha256, 'the recorded digest is kept');
  assert.equal(sha256(stored), changed, 'the file is not touched');
  const alerts = async () =>
    (await c.api.request<{ items: Alert[] }>('GET', '/api/v1/alerts')).items.filter(
      (a) => a.object === 'image:digest' && a.clearedAt === null,
    );
  assert.match((await alerts())[0]?.message ?? '', /does not match its recorded SHA-256/, 'an alert');
  assert.equal((await c.api.task('DELETE', '/api/v1/images/digest')).state, 'succeeded');
  assert.deepEqual(await alerts(), [], 'deleting the image clears its alert');
});

test('--compress stores a smaller qcow2 with the same content, by path and by upload', async () => {
  // Sectors of one repeated byte and a label: plain qcow2 keeps all 4 MiB, zlib far less.
  const plain = await importPath('plain', file('base.raw'), { format: 'raw' });
  assert.equal(plain.state, 'succeeded', JSON.stringify(plain.error));
  const packed = await importPath('packed', file('base.raw'), { format: 'raw', compress: true });
  assert.equal(packed.state, 'succeeded', JSON.stringify(packed.error));
  assert.ok(packed.log?.some((l) => l.line === 'converting raw to compressed qcow2'));
  const up = tern('image', 'upload', 'packed-up', file('base.qcow2'), '--compress');
  assert.equal(up.status, 0, up.stderr);
  const size = (name: string) => fs.statSync(path.join(c.pool, `images/${name}.qcow2`)).size;
  assert.ok(size('packed') * 2 < size('plain'), `compressed ${size('packed')} vs plain ${size('plain')}`);
  assert.ok(size('packed-up') * 2 < size('plain'), `uploaded ${size('packed-up')} vs ${size('plain')}`);
  for (const name of ['packed', 'packed-up']) {
    assert.ok(sameBytes(`images/${name}.qcow2`), `${name}: the guest sees the original bytes`);
    const r = spawnSync('qemu-img', [
      'compare',
      path.join(c.pool, 'images/plain.qcow2'),
      path.join(c.pool, `images/${name}.qcow2`),
    ]);
    assert.equal(r.status, 0, `${name}: identical to the plain import`);
    const image = await c.api.request<Image>('GET', `/api/v1/images/${name}`);
    assert.equal(image.sha256, sha256(path.join(c.pool, image.volume.path)));
  }
  const iso = await c.api.raw('POST', '/api/v1/images', {
    body: JSON.stringify({ name: 'iso-packed', kind: 'iso', sourcePath: file('test.iso'), compress: true }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(iso.status, 400);
  assert.match(iso.body.error!.message, /only disks are compressed/);
  const loose = await c.api.raw('POST', '/api/v1/images', {
    body: JSON.stringify({ name: 'loose', sourcePath: file('base.raw'), compress: 'yes' }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(loose.status, 400, 'no coercion of compress');
  for (const name of ['plain', 'packed', 'packed-up'])
    assert.equal((await c.api.task('DELETE', `/api/v1/images/${name}`)).state, 'succeeded');
});

test('a truncated qcow2 is refused and leaves nothing half-imported', async () => {
  const whole = fs.readFileSync(file('base.qcow2'));
  fs.writeFileSync(file('cut.qcow2'), whole.subarray(0, whole.length / 2));
  const before = libraryFiles();
  const task = await importPath('cut', file('cut.qcow2'));
  assert.equal(task.state, 'failed');
  assert.match(task.error!.message, /cut\.qcow2: it is corrupt or truncated/);
  assert.equal((await c.api.raw('GET', '/api/v1/images/cut')).status, 404);
  assert.deepEqual(libraryFiles(), before);
});

test('refusals say why and leave nothing: backing file, random bytes, VMDK extents, ISO as disk', async () => {
  const files = libraryFiles();
  execFileSync('qemu-img', [
    'create',
    '-q',
    '-f',
    'qcow2',
    '-b',
    '/etc/passwd',
    '-F',
    'raw',
    file('back.qcow2'),
  ]);
  await refused(
    await importPath('backed', file('back.qcow2')),
    /back\.qcow2: backing file \/etc\/passwd outside the library/,
    'backed',
    files,
  );
  fs.writeFileSync(
    file('random.bin'),
    Buffer.from(Array.from({ length: MiB }, () => (Math.random() * 256) | 0)),
  );
  await refused(
    await importPath('random', file('random.bin')),
    /random\.bin: not a disk image/,
    'random',
    files,
  );
  // A VMDK descriptor whose extent is a file elsewhere on the host, whole (8 sectors) so that
  // only its place can be the reason: reading it would copy a file nobody offered.
  const elsewhere = tempDir('tern-img-elsewhere');
  try {
    const secret = path.join(elsewhere, 'secret.raw');
    fs.writeFileSync(secret, Buffer.alloc(4096, 7));
    fs.writeFileSync(
      file('sneaky.vmdk'),
      '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n' +
        `RW 8 FLAT "${secret}" 0\n`,
    );
    await refused(
      await importPath('sneaky', file('sneaky.vmdk')),
      /VMDK extent file \S+secret\.raw outside/,
      'sneaky',
      files,
    );
  } finally {
    fs.rmSync(elsewhere, { recursive: true, force: true });
  }
  await refused(
    await importPath('wrong', file('base.qcow2'), { format: 'vmdk' }),
    /not a valid vmdk image/,
    'wrong',
    files,
  );
  await refused(
    await importPath('isodisk', file('test.iso')),
    /ISO 9660 image, not a disk image/,
    'isodisk',
    files,
  );
  await refused(
    await importPath('notiso', file('base.qcow2'), { kind: 'iso' }),
    /not an ISO 9660 image/,
    'notiso',
    files,
  );
  const iso = fs.readFileSync(file('test.iso'));
  fs.writeFileSync(file('short.iso'), iso.subarray(0, 40 * 1024));
  await refused(
    await importPath('shortiso', file('short.iso'), { kind: 'iso' }),
    /truncated/,
    'shortiso',
    files,
  );
});

test('an import by path reads only from the import directories, and a refusal tells nothing of what is elsewhere', async () => {
  const files = libraryFiles();
  const elsewhere = tempDir('tern-img-elsewhere');
  try {
    const secret = path.join(elsewhere, 'secret.raw');
    fs.writeFileSync(secret, Buffer.alloc(4096, 7));
    fs.writeFileSync(path.join(elsewhere, 'short.raw'), 'ab\n');
    const refusal = async (name: string, given: string) => {
      const t = await importPath(name, given, { format: 'raw' });
      assert.equal(t.state, 'failed', `${given} was imported`);
      assert.equal(t.error?.code, 'forbidden', t.error?.message);
      assert.equal((await c.api.raw('GET', `/api/v1/images/${name}`)).status, 404);
      // The same words whatever is (or is not) at that path.
      return t.error!.message.replace(given, 'PATH');
    };
    fs.symlinkSync(secret, file('link-out.raw'));
    fs.symlinkSync(path.join(elsewhere, 'nothing'), file('dangling.raw'));
    fs.symlinkSync(path.join(elsewhere, 'no-dir'), file('dangling-dir'));
    const messages = [
      await refusal('db', path.join(c.dir, 'tern.db')), // the manager's own database
      await refusal('secret', secret),
      await refusal('nothing', path.join(elsewhere, 'nothing.raw')),
      await refusal('dotdot', `${src}/../${path.basename(elsewhere)}/secret.raw`),
      await refusal('link', file('link-out.raw')),
      await refusal('dangling', file('dangling.raw')),
      await refusal('danglingdir', path.join(file('dangling-dir'), 'x.raw')),
    ];
    assert.deepEqual(new Set(messages).size, 1, messages.join('\n'));
    assert.match(messages[0], /^PATH is not in an import directory of this host \(/);
    // A VMDK inside whose extents lie outside: refused for where they are, before their size or
    // whether they exist is looked at.
    for (const [name, extent] of [
      ['short', path.join(elsewhere, 'short.raw')],
      ['gone', path.join(elsewhere, 'gone.raw')],
      ['up', `../${path.basename(elsewhere)}/secret.raw`],
    ]) {
      fs.writeFileSync(
        file(`ext-${name}.vmdk`),
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n' +
          `RW 8 FLAT "${extent}" 0\n`,
      );
      await refused(
        await importPath(`ext-${name}`, file(`ext-${name}.vmdk`)),
        /VMDK extent file \S+ outside the library and the VMDK's own directory/,
        `ext-${name}`,
        files,
      );
    }
  } finally {
    fs.rmSync(elsewhere, { recursive: true, force: true });
  }
  assert.deepEqual(libraryFiles(), files);
});

test('bad input at the API is a clear 4xx before any work', async () => {
  const files = libraryFiles();
  const json = { 'content-type': 'application/json' };
  for (const name of ['../x', 'a/b', '.', 'a b', 'x'.repeat(64)]) {
    const r = await c.api.raw('POST', '/api/v1/images', {
      body: JSON.stringify({ name, sourcePath: file('base.qcow2') }),
      headers: json,
    });
    assert.equal(r.status, 400, name);
    assert.equal(r.body.error?.code, 'invalid_request');
  }
  for (const name of ['..%2Fx', 'a%2Fb', '.hidden']) {
    const r = await upload(name, file('base.qcow2'));
    assert.equal(r.status, 400, name);
  }
  const relative = await c.api.raw('POST', '/api/v1/images', {
    body: JSON.stringify({ name: 'rel', sourcePath: 'etc/passwd' }),
    headers: json,
  });
  assert.equal(relative.status, 400);
  const badFormat = await c.api.raw('POST', '/api/v1/images', {
    body: JSON.stringify({ name: 'fmt', sourcePath: file('base.qcow2'), format: 'vdi' }),
    headers: json,
  });
  assert.equal(badFormat.status, 400);
  const missing = await importPath('missing', file('nosuch.qcow2'));
  assert.equal(missing.state, 'failed');
  assert.equal(missing.error?.code, 'not_found');
  const dir = await importPath('dir', path.join(src, 'iso-content'));
  assert.equal(dir.error?.code, 'invalid_request');
  assert.match(dir.error!.message, /not a regular file/);
  const notStream = await c.api.raw('PUT', '/api/v1/images/js', { body: '{}', headers: json });
  assert.equal(notStream.status, 415);
  assert.equal((await c.api.raw('GET', '/api/v1/images/nosuch')).status, 404);
  assert.equal((await c.api.raw('DELETE', '/api/v1/images/nosuch')).status, 404);
  assert.deepEqual(libraryFiles(), files);
});

test('a name in use is a conflict before the task starts', async () => {
  assert.equal((await importPath('taken', file('base.qcow2'))).state, 'succeeded');
  const again = await c.api.raw('POST', '/api/v1/images', {
    body: JSON.stringify({ name: 'taken', sourcePath: file('base.vhdx') }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(again.status, 409);
  const up = await upload('taken', file('base.vhd'));
  assert.equal(up.status, 409);
  assert.ok(sameBytes('images/taken.qcow2'), 'the existing image is untouched');
});

test('an upload over the limit gets 413 and leaves nothing; so does one without a length', async () => {
  fs.writeFileSync(file('big.raw'), Buffer.alloc(7 * MiB, 1));
  const before = libraryFiles();
  const r = await upload('big', file('big.raw'), '?format=raw');
  assert.equal(r.status, 413);
  assert.equal(r.body.error?.code, 'payload_too_large');
  assert.match(r.body.error!.message, /over the limit of 6291456 bytes/);
  const chunked = await c.api.fetch(`${c.api.url}/api/v1/images/chunked`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${c.api.token}`, 'content-type': 'application/octet-stream' },
    body: Readable.toWeb(fs.createReadStream(file('base.qcow2'))) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  assert.equal(chunked.status, 400);
  assert.match(((await chunked.json()) as { error: { message: string } }).error.message, /Content-Length/);
  assert.deepEqual(libraryFiles(), before);
  assert.equal((await c.api.raw('GET', '/api/v1/images/big')).status, 404);
});

test('an ISO imports as an ISO, byte for byte; delete removes its volume', async () => {
  const task = await importPath('install', file('test.iso'), { kind: 'iso' });
  assert.equal(task.state, 'succeeded', JSON.stringify(task.error));
  const image = await c.api.request<Image>('GET', '/api/v1/images/install');
  assert.equal(image.kind, 'iso');
  assert.equal(image.format, 'raw');
  assert.equal(image.sourceFormat, 'iso');
  assert.deepEqual(image.volume, { pool: 'local', path: 'images/install.iso' });
  const stored = path.join(c.pool, image.volume.path);
  assert.equal(image.sha256, sha256(file('test.iso')));
  assert.equal(sha256(stored), image.sha256);
  const del = await c.api.task('DELETE', '/api/v1/images/install');
  assert.equal(del.state, 'succeeded', JSON.stringify(del.error));
  assert.ok(!fs.existsSync(stored), 'the volume is gone');
  assert.equal((await c.api.raw('GET', '/api/v1/images/install')).status, 404);
});
