import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/micropay.js';

function io() {
  const out = new PassThrough();
  const err = new PassThrough();
  const text = { out: '', err: '' };
  out.on('data', (d) => (text.out += d));
  err.on('data', (d) => (text.err += d));
  return { io: { stdout: out, stderr: err, env: {}, cwd: process.cwd() }, text };
}

const dir = mkdtempSync(join(tmpdir(), 'mp-cli-compile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('micropay compile', () => {
  it('compiles a page and writes the manifest', async () => {
    writeFileSync(join(dir, 'index.html'), '<p><a href="/articles/42" data-price="0.02 USD">Read</a></p>\n');
    const { io: cio, text } = io();
    const code = await main(['compile', join(dir, 'index.html'), '-o', join(dir, 'out')], cio);
    expect(code, text.err).toBe(0);
    expect(text.out).toMatch(/1 link/);
    const manifest = JSON.parse(readFileSync(join(dir, 'out', 'micropay-manifest.json'), 'utf8'));
    expect(manifest.routes[0]).toMatchObject({ match: 'GET /articles/42', amt: 20000, cur: 'USD' });
  });

  it('answers usage errors with exit code 2 and a hint', async () => {
    const { io: cio, text } = io();
    expect(await main(['compile', dir], cio)).toBe(2);
    expect(text.err).toMatch(/needs -o <out-dir>/);
    const second = io();
    expect(await main(['compile', '--bogus'], second.io)).toBe(2);
    expect(second.text.err).toMatch(/usage/);
  });

  it('prints help', async () => {
    const { io: cio, text } = io();
    expect(await main(['compile', '--help'], cio)).toBe(0);
    expect(text.out).toMatch(/Usage: micropay compile/);
  });

  it('lists commands in micropay --help and refuses unknown ones', async () => {
    const { io: cio, text } = io();
    expect(await main(['--help'], cio)).toBe(0);
    expect(text.out).toMatch(/compile/);
    const u = io();
    expect(await main(['nope'], u.io)).toBe(2);
    expect(u.text.err).toMatch(/unknown command "nope"/);
  });
});
