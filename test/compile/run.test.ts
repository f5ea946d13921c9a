/**
 * `runCompile`, what the `micropay compile` command runs: its summary,
 * progress on a terminal only, and problems reported with exit code 1 and
 * nothing written.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type CompileIO, runCompile } from '../../src/compile/index.js';
import { FIXTURES, tempDir } from './helpers.js';

function io(isTTY: boolean): CompileIO & { out: string; err: string } {
  const sink = {
    out: '',
    err: '',
    isTTY,
    progressInterval: 0,
    stdout: { write: (s: string) => (sink.out += s) },
    stderr: { write: (s: string) => (sink.err += s) },
  };
  return sink;
}

describe('runCompile', () => {
  it('prints a summary and the warnings, and shows no progress off a terminal', async () => {
    const out = tempDir();
    const term = io(false);
    const manifest = join(out, 'prices', 'manifest.json');
    const code = await runCompile(
      {
        input: join(FIXTURES, 'site'),
        outDir: join(out, 'site'),
        rules: join(FIXTURES, 'prices.yaml'),
        manifest,
      },
      term,
    );
    expect(code).toBe(0);
    expect(existsSync(manifest)).toBe(true);
    expect(term.out).toMatch(
      /^Compiled 7 files \(6 pages\): 13 links priced on 5 pages, 5 pages changed; manifest .*prices\/manifest\.json \(10 routes\)\.\n$/,
    );
    expect(term.err).toBe(
      'warning: site/index.html:30:21: data-price on "https://other.example/articles/42" is ignored: only links to this site can be priced\n',
    );
  });

  it('shows progress on a terminal and clears it before the summary', async () => {
    const term = io(true);
    const seen: string[] = [];
    const code = await runCompile(
      {
        input: join(FIXTURES, 'site'),
        outDir: tempDir(),
        onProgress: (p) => seen.push(`${p.phase} ${p.done}/${p.total}`),
      },
      term,
    );
    expect(code).toBe(0);
    expect(seen[0]).toBe('read 1/6');
    expect(seen.at(-1)).toBe('write 7/7');
    expect(term.err).toContain('\r\x1b[Kmicropay compile: reading 1/6 about.html');
    expect(term.err).toContain('\r\x1b[Kmicropay compile: writing 7/7 malformed.html');
    expect(term.err).toMatch(/\r\x1b\[Kwarning: /);
    expect(term.out).toMatch(/^Compiled 7 files \(6 pages\): 10 links priced on 5 pages/);
  });

  it('reports a URL priced twice differently with both places, exits 1 and writes nothing', async () => {
    const out = join(tempDir(), 'out');
    const term = io(false);
    const code = await runCompile({ input: join(FIXTURES, 'conflict'), outDir: out }, term);
    expect(code).toBe(1);
    expect(term.out).toBe('');
    expect(term.err).toBe(
      'error: conflict/index.html:5:11: GET /articles/42 is priced 0.03 USD at conflict/blog/post.html:6:6 but 0.02 USD at conflict/index.html:5:11\n' +
        'micropay compile: nothing written, 1 problem to fix.\n',
    );
    expect(existsSync(out)).toBe(false);
  });

  it('reports bad options and rules with exit code 1', async () => {
    const term = io(false);
    expect(await runCompile({ input: join(FIXTURES, 'nope'), outDir: tempDir() }, term)).toBe(1);
    expect(term.err).toMatch(/^error: Input .*nope cannot be read: /);
    const term2 = io(false);
    expect(
      await runCompile(
        { input: join(FIXTURES, 'site'), outDir: tempDir(), rules: join(FIXTURES, 'site/index.html') },
        term2,
      ),
    ).toBe(1);
    expect(term2.err).toMatch(/^error: Rules file index\.html:\d+:\d+/);
    const term3 = io(false);
    expect(
      await runCompile({ input: join(FIXTURES, 'site'), outDir: join(FIXTURES, 'site', 'out') }, term3),
    ).toBe(1);
    expect(term3.err).toContain('is inside the input');
  });
});
