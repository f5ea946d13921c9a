/**
 * examples/compile: compiling site/ again must reproduce the committed after/
 * exactly (the manifest as a JSON value), and compiling after/ must change none of its pages.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXAMPLE_DIR, exampleOptions } from '../../examples/compile/generate.js';
import { compile } from '../../src/compile/index.js';
import { readTree, tempDir } from './helpers.js';

describe('examples/compile', () => {
  it('reproduces after/ byte for byte', async () => {
    const out = tempDir();
    const summary = await compile(exampleOptions(out));
    expect(summary).toMatchObject({ files: 6, pages: 5, linksPriced: 5, pagesChanged: 3 });
    const expected = readTree(join(EXAMPLE_DIR, 'after'));
    const actual = readTree(out);
    expect([...actual.keys()]).toEqual([...expected.keys()]);
    for (const [name, bytes] of expected) {
      if (name === 'micropay-manifest.json') {
        // The committed copy is laid out by the repository's formatter (biome checks examples/**/*.json):
        // the same JSON value, not the same bytes.
        expect(JSON.parse(actual.get(name)!.toString('utf8'))).toEqual(JSON.parse(bytes.toString('utf8')));
        continue;
      }
      expect(actual.get(name)!.toString('utf8'), name).toBe(bytes.toString('utf8'));
      expect(actual.get(name)!.equals(bytes), name).toBe(true);
    }
  });

  it('leaves after/ as it is when compiled again', async () => {
    const out = join(tempDir(), 'after');
    const summary = await compile({ ...exampleOptions(out), input: join(EXAMPLE_DIR, 'after') });
    expect(summary.pagesChanged).toBe(0);
    const before = readTree(join(EXAMPLE_DIR, 'after'));
    for (const [name, bytes] of readTree(out)) {
      if (name !== 'micropay-manifest.json') expect(bytes.equals(before.get(name)!), name).toBe(true);
    }
  });
});
