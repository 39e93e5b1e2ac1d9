import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { descriptorExtents } from './image-check.ts';
import { ImportSources } from './import-sources.ts';

test('only files below an import directory resolve; elsewhere is one refusal whatever is there', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-sources-'));
  try {
    const dir = path.join(root, 'import');
    const out = path.join(root, 'out');
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(dir, 'sub', 'a.raw'), 'a');
    fs.writeFileSync(path.join(out, 'b.raw'), 'b');
    fs.symlinkSync(path.join(dir, 'sub', 'a.raw'), path.join(dir, 'in-link.raw'));
    fs.symlinkSync(path.join(out, 'b.raw'), path.join(dir, 'out-link.raw'));
    fs.symlinkSync(path.join(out, 'none.raw'), path.join(dir, 'dangling.raw'));
    fs.symlinkSync(out, path.join(dir, 'out-dir'));
    // A path must name the directory (as configured or as its real path), not a link to it.
    fs.symlinkSync(dir, path.join(root, 'import-link'));
    const s = new ImportSources([dir]);
    assert.equal(s.resolve(path.join(dir, 'sub', 'a.raw')), fs.realpathSync(path.join(dir, 'sub', 'a.raw')));
    assert.equal(s.resolve(path.join(dir, 'in-link.raw')), fs.realpathSync(path.join(dir, 'sub', 'a.raw')));
    assert.throws(() => s.resolve(path.join(dir, 'sub', 'nothing.raw')), { code: 'not_found' });
    const refused = (given: string) =>
      assert.throws(
        () => s.resolve(given),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'forbidden', `${given}: ${err.message}`);
          assert.equal(err.message, s.refusal(given).message);
          return true;
        },
      );
    for (const given of [
      path.join(out, 'b.raw'),
      path.join(out, 'none.raw'),
      '/etc/passwd',
      dir,
      path.join(dir, '..', 'out', 'b.raw'),
      path.join(dir, 'out-link.raw'),
      path.join(dir, 'dangling.raw'),
      path.join(dir, 'out-dir', 'b.raw'),
      path.join(dir, 'out-dir', 'none.raw'),
      `${dir}-other/x.raw`,
      path.join(root, 'import-link', 'sub', 'a.raw'),
    ])
      refused(given);
    assert.throws(() => new ImportSources([]).resolve(path.join(dir, 'sub', 'a.raw')), { code: 'forbidden' });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a text VMDK descriptor names its extents; other files name none', () => {
  const desc = Buffer.from(
    '# Disk DescriptorFile\nversion=1\ncreateType="twoGbMaxExtentFlat"\nRW 8 FLAT "a-f001.vmdk" 0\n RDONLY 16 SPARSE "/etc/x" \n',
  );
  assert.deepEqual(descriptorExtents(desc), ['a-f001.vmdk', '/etc/x']);
  assert.deepEqual(descriptorExtents(Buffer.from('KDMV\x01RW 8 FLAT "x" 0')), []);
});
