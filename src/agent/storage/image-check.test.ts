import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  assessProbe,
  checkProblem,
  convertProgress,
  extentProblem,
  isoVolumeBytes,
  mapLineEnd,
  openProblem,
  type QemuImgInfo,
} from './image-check.ts';

const qcow2: QemuImgInfo = {
  'virtual-size': 4194304,
  format: 'qcow2',
  'actual-size': 4460544,
  'format-specific': { type: 'qcow2', data: {} },
};

test('plain images of the five formats are accepted', () => {
  assert.deepEqual(assessProbe(qcow2, 'f', 'auto'), {
    format: 'qcow2',
    sourceFormat: 'qcow2',
    virtualBytes: 4194304,
    extents: [],
  });
  assert.equal(assessProbe({ ...qcow2, format: 'vpc' }, 'f', 'auto').sourceFormat, 'vhd');
  assert.equal(assessProbe({ ...qcow2, format: 'vhdx' }, 'f', 'vhdx').format, 'vhdx');
  assert.equal(assessProbe({ ...qcow2, format: 'raw' }, 'f', 'raw').format, 'raw');
  const vmdk = assessProbe(
    {
      ...qcow2,
      format: 'vmdk',
      'format-specific': {
        type: 'vmdk',
        data: { extents: [{ filename: '/srv/a.vmdk', format: '', 'virtual-size': 4194304 }] },
      },
    },
    'f',
    'auto',
  );
  assert.deepEqual(vmdk.extents, [{ file: '/srv/a.vmdk', format: '', virtualBytes: 4194304 }]);
});

test('raw is never guessed: a file without a known header is not a disk image', () => {
  assert.throws(
    () => assessProbe({ ...qcow2, format: 'raw' }, 'junk.bin', 'auto'),
    /junk.bin: not a disk image/,
  );
});

test('other formats are refused by name', () => {
  assert.throws(() => assessProbe({ ...qcow2, format: 'vdi' }, 'f', 'auto'), /it is a vdi image/);
  assert.throws(
    () => assessProbe({ ...qcow2, format: 'x'.repeat(1000) }, 'f', 'auto'),
    (e: Error) => {
      assert.ok(e.message.length < 200);
      return true;
    },
  );
  assert.throws(() => assessProbe({} as QemuImgInfo, 'f', 'auto'), /could not tell its format/);
});

test('backing files and external data files are refused, naming the file', () => {
  assert.throws(
    () =>
      assessProbe(
        { ...qcow2, 'backing-filename': '/etc/passwd', 'full-backing-filename': '/etc/passwd' },
        'a.qcow2',
        'auto',
      ),
    (e: Error & { code?: string }) => {
      assert.equal(e.code, 'invalid_request');
      assert.match(e.message, /a\.qcow2: backing file \/etc\/passwd outside the library/);
      return true;
    },
  );
  // A relative backing name is shown resolved, as qemu would open it.
  assert.throws(
    () =>
      assessProbe(
        { ...qcow2, 'backing-filename': '../x', 'full-backing-filename': '/srv/x' },
        'a.qcow2',
        'qcow2',
      ),
    /backing file \/srv\/x/,
  );
  assert.throws(
    () =>
      assessProbe(
        { ...qcow2, 'format-specific': { type: 'qcow2', data: { 'data-file': '/etc/shadow' } } },
        'a',
        'auto',
      ),
    /external data file \/etc\/shadow/,
  );
  assert.throws(() => assessProbe({ ...qcow2, encrypted: true }, 'a', 'auto'), /encrypted/);
});

test('virtual sizes must be sane', () => {
  assert.throws(() => assessProbe({ ...qcow2, 'virtual-size': 0 }, 'a', 'auto'), /no valid virtual size/);
  assert.throws(() => assessProbe({ ...qcow2, 'virtual-size': '12' }, 'a', 'auto'), /no valid virtual size/);
  assert.throws(() => assessProbe({ ...qcow2, 'virtual-size': 2 ** 50 }, 'a', 'auto'), /64 TiB/);
});

test('VMDK extents stay with the VMDK', () => {
  assert.equal(extentProblem(['/srv/a.vmdk'], '/srv/a.vmdk', null), null);
  assert.equal(extentProblem(['/srv/a-flat.vmdk'], '/srv/a.vmdk', '/srv'), null);
  assert.equal(extentProblem(['/srv/disks/a-s001.vmdk'], '/srv/a.vmdk', '/srv'), null);
  assert.match(extentProblem(['/etc/shadow'], '/srv/a.vmdk', '/srv') ?? '', /\/etc\/shadow outside/);
  assert.match(extentProblem(['/srvx/a'], '/srv/a.vmdk', '/srv') ?? '', /outside/);
  assert.match(extentProblem(['/pool/uploads/b'], '/pool/uploads/a', null) ?? '', /single-file/);
});

test('ISO 9660 images are recognised by their primary volume descriptor', () => {
  const iso = Buffer.alloc(34816);
  iso[32768] = 1;
  iso.write('CD001', 32769, 'latin1');
  iso.writeUInt32LE(175, 32768 + 80);
  iso.writeUInt16LE(2048, 32768 + 128);
  assert.equal(isoVolumeBytes(iso), 175 * 2048);
  assert.equal(isoVolumeBytes(Buffer.alloc(34816)), null);
  assert.equal(isoVolumeBytes(Buffer.alloc(100)), null);
});

test('progress of qemu-img convert -p', () => {
  assert.equal(convertProgress('    (0.00/100%)\r    (50.00/100%)\r'), 50);
  assert.equal(convertProgress('    (100.00/100%)\r\n'), 100);
  assert.equal(convertProgress('nothing'), null);
});

test('data placed in the file, from qemu-img map lines', () => {
  assert.equal(
    mapLineEnd(
      '[{ "start": 0, "length": 4194304, "depth": 0, "present": true, "zero": false, "data": true, "offset": 327680},',
    ),
    4521984,
  );
  assert.equal(
    mapLineEnd('{ "start": 0, "length": 65536, "depth": 0, "present": true, "zero": true, "data": false}]'),
    0,
  );
  assert.equal(mapLineEnd(']'), 0);
  assert.equal(mapLineEnd('{ not json'), 0);
});

test('qemu-img check verdicts', () => {
  assert.equal(checkProblem(0, '{"check-errors":0}', ''), null);
  assert.equal(checkProblem(3, '{"leaks":2}', ''), null, 'leaked clusters only waste space');
  assert.equal(checkProblem(63, '', 'qemu-img: This image format does not support checks'), null);
  assert.equal(
    checkProblem(2, '{"corruptions":4,"check-errors":0}', 'ERROR refcount block 0 is outside image\n'),
    'it is corrupt or truncated (4 errors): refcount block 0 is outside image',
  );
  assert.equal(
    checkProblem(
      1,
      '',
      'ERROR: cluster offset for sector 4096 points after EOF\nqemu-img: Check failed: Invalid argument\n',
    ),
    'it is corrupt or truncated: cluster offset for sector 4096 points after EOF',
  );
});

test('qemu-img open failures in the user terms', () => {
  assert.match(
    openProblem(
      "qemu-img: Could not open 'x.vpc': block-vpc: free_data_block_offset points after the end of file. The image has been truncated.\n",
      'auto',
    ),
    /^it is truncated: block-vpc/,
  );
  assert.match(
    openProblem("qemu-img: Could not open 'x': Image is not in qcow2 format\n", 'qcow2'),
    /^not a valid qcow2 image: Image is not in qcow2 format$/,
  );
  assert.match(openProblem('qemu-img: Failed to get shared "write" lock\n', 'auto'), /in use/);
});
