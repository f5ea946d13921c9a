/**
 * The package as users import it: `npm pack`, unpack into a fresh project,
 * then import every subpath from ES modules and require it from CommonJS,
 * and run the binary.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, unknown>;
  bin: Record<string, string>;
};
const dir = mkdtempSync(join(tmpdir(), 'mp-pack-'));
const installed = join(dir, 'node_modules', 'micropay');

// Subpaths whose part has landed (the build has their entry file).
const subpaths = () =>
  Object.keys(pkg.exports)
    .filter((k) => k !== './package.json')
    .filter((k) =>
      existsSync(join(installed, (pkg.exports[k] as { import: { default: string } }).import.default)),
    );

beforeAll(() => {
  const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tgz = join(dir, out.trim().split('\n').pop()!);
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', tgz, '-C', installed, '--strip-components=1']);
  // The package's dependencies come from this checkout's node_modules, as npm would have installed them.
  for (const name of readdirSync(join(root, 'node_modules'))) {
    if (name === '.bin' || name === 'micropay' || name.startsWith('.')) continue;
    symlinkSync(join(root, 'node_modules', name), join(dir, 'node_modules', name));
  }
}, 180_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: dir, encoding: 'utf8' });

describe('the packed package', () => {
  it('ships dist, README and LICENSE, and no sources or tests', () => {
    expect(existsSync(join(installed, 'LICENSE'))).toBe(true);
    expect(existsSync(join(installed, 'README.md'))).toBe(true);
    expect(existsSync(join(installed, 'dist/esm/index.d.ts'))).toBe(true);
    expect(existsSync(join(installed, 'dist/cjs/index.d.ts'))).toBe(true);
    expect(existsSync(join(installed, 'src'))).toBe(false);
    expect(existsSync(join(installed, 'test'))).toBe(false);
    expect(JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')).license).toBe('Apache-2.0');
  });

  it('imports from ES modules, every subpath', () => {
    const subs = subpaths();
    expect(subs).toContain('.');
    expect(subs).toContain('./express');
    const code = `
      import * as root from 'micropay';
      const subs = ${JSON.stringify(subs)};
      const out = {};
      for (const s of subs) out[s] = Object.keys(await import(s === '.' ? 'micropay' : 'micropay/' + s.slice(2))).length;
      out.money = root.parseMoney('0.002 USD').amt;
      const { micropay } = await import('micropay/express');
      out.express = typeof micropay;
      console.log(JSON.stringify(out));`;
    const out = JSON.parse(node(['--input-type=module', '-e', code]));
    expect(out.money).toBe(2000);
    expect(out.express).toBe('function');
    for (const s of subs) expect(out[s], s).toBeGreaterThan(0);
  });

  it('requires from CommonJS, every subpath', () => {
    const subs = subpaths();
    const code = `
      const subs = ${JSON.stringify(subs)};
      const out = {};
      for (const s of subs) out[s] = Object.keys(require(s === '.' ? 'micropay' : 'micropay/' + s.slice(2))).length;
      out.money = require('micropay').parseMoney('$0.01').amt;
      out.sameError = require('micropay').MicropayError.name;
      console.log(JSON.stringify(out));`;
    const out = JSON.parse(node(['-e', code]));
    expect(out.money).toBe(10_000);
    expect(out.sameError).toBe('MicropayError');
    for (const s of subs) expect(out[s], s).toBeGreaterThan(0);
  });

  it('runs the micropay binary', () => {
    const bin = join(installed, pkg.bin.micropay!);
    const out = node([bin, '--help']);
    expect(out).toMatch(/Usage: micropay <command>/);
    expect(out).toMatch(/compile/);
  });
});
