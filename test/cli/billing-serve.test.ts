/**
 * `micropay billing serve`: in process (with a stop promise instead of a
 * signal) for what it prints, the admin token file, restarts and start-up
 * errors; and once as a real child process, which prints its URL with
 * `--port 0` and exits cleanly on SIGTERM.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createBillingClient } from '../../src/billing-client/index.js';
import { serve } from '../../src/cli/commands/billing/serve.js';
import type { CliIO } from '../../src/cli/io.js';
import { main } from '../../src/cli/micropay.js';
import { startBillingServer } from '../billing-client/helpers.js';

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    this.text += String(chunk);
    cb();
  }
}

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'mp-cli-serve-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function ioIn(cwd: string, env: NodeJS.ProcessEnv = {}) {
  const stdout = new Sink();
  const stderr = new Sink();
  const io: CliIO = { stdout, stderr, env, cwd };
  return { io, stdout, stderr };
}

/** Starts `serve` in process; resolves once it prints, with a function that stops it and resolves its exit code. */
async function serveInProcess(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const { io, stdout, stderr } = ioIn(cwd, env);
  let stop!: () => void;
  const stopped = new Promise<string>((resolve) => {
    stop = () => resolve('test');
  });
  const done = serve([...args, '--quiet'], io, () => stopped);
  const deadline = Date.now() + 10_000;
  while (!/listening on|"url"/.test(stdout.text)) {
    const early = await Promise.race([done, new Promise((r) => setTimeout(r, 10, 'waiting'))]);
    if (early !== 'waiting') throw new Error(`serve ended early (${String(early)}): ${stderr.text}`);
    if (Date.now() > deadline) throw new Error('serve did not start');
  }
  return {
    stdout,
    stderr,
    stop: async () => {
      stop();
      return done;
    },
  };
}

describe('billing serve, in process', () => {
  it('prints its URL (the real port for --port 0) and the admin token file, never the token; a restart keeps both', async () => {
    const dir = tempDir();
    const run = await serveInProcess(['--port', '0', '--issuer', 'bank-s', '--db', 'data/billing.db'], dir);
    const url = /issuer bank-s listening on (http:\/\/127\.0\.0\.1:(\d+))$/m.exec(run.stdout.text);
    expect(url, run.stdout.text).not.toBeNull();
    expect(Number(url![2])).toBeGreaterThan(0);
    const file = join(dir, 'data', 'keys', 'admin-token');
    expect(run.stdout.text).toContain(`admin token generated into ${file}`);
    const token = readFileSync(file, 'utf8').trim();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(run.stdout.text).not.toContain(token);
    const admin = createBillingClient({ url: url![1]!, token });
    await admin.admin.createAccount({ id: 'kept', role: 'buyer', currency: 'USD' });
    expect(await run.stop()).toBe(0);
    expect(run.stdout.text).toMatch(/stopped \(test\)\.\n$/);
    await expect(fetch(`${url![1]}/healthz`)).rejects.toThrow();

    const again = await serveInProcess(
      ['--port', '0', '--issuer', 'bank-s', '--db', 'data/billing.db', '--json'],
      dir,
    );
    const j = JSON.parse(again.stdout.text.trim()) as { url: string; issuer: string; adminTokenFile: string };
    expect(j).toMatchObject({ issuer: 'bank-s', adminTokenFile: file });
    const admin2 = createBillingClient({ url: j.url, token });
    expect((await admin2.admin.getAccount('kept')).id).toBe('kept');
    expect(await again.stop()).toBe(0);
  });

  it('MICROPAY_ADMIN_TOKEN fixes the admin token (no file); --key-dir places the files', async () => {
    const dir = tempDir();
    const token = 'an-admin-token-for-the-test-0123456789';
    const run = await serveInProcess(['--port', '0', '--db', 'b.db', '--key-dir', 'secrets'], dir, {
      MICROPAY_ADMIN_TOKEN: token,
    });
    expect(run.stdout.text).not.toMatch(/admin token/);
    expect(run.stdout.text).toMatch(/issuer bank-a listening on/);
    const url = /listening on (\S+)$/m.exec(run.stdout.text)![1]!;
    expect((await createBillingClient({ url, token }).admin.rotateKeys()).kid).toBeTruthy();
    expect(statSync(join(dir, 'secrets')).isDirectory()).toBe(true);
    expect(await run.stop()).toBe(0);
  });

  it('--db :memory: says the admin token is in memory only', async () => {
    const run = await serveInProcess(['--port', '0', '--db', ':memory:'], tempDir());
    expect(run.stdout.text).toMatch(
      /admin token lives in memory only .* set MICROPAY_ADMIN_TOKEN or --key-dir/,
    );
    expect(await run.stop()).toBe(0);
  });

  it('a port in use is address_in_use (exit 1); bad options are usage errors (exit 2)', async () => {
    const busy = await startBillingServer('bank-busy');
    try {
      const port = new URL(busy.url).port;
      const { io, stderr } = ioIn(tempDir());
      expect(await main(['billing', 'serve', '--port', port, '--db', ':memory:', '--quiet'], io)).toBe(1);
      expect(stderr.text).toMatch(
        /^micropay: address_in_use: Port \d+ on 127\.0\.0\.1 is in use\. Pick another with --port/,
      );
    } finally {
      await busy.close();
    }
    for (const [args, re] of [
      [['--port', '99999'], /--port "99999" is not a port/],
      [['--port', 'http'], /--port "http" is not a port/],
      [['--issuer', 'bank a'], /--issuer must be/],
      [['extra'], /Unexpected argument "extra"/],
      [['--verbose'], /Unknown option '--verbose'/],
    ] as [string[], RegExp][]) {
      const { io, stderr } = ioIn(tempDir());
      expect(await main(['billing', 'serve', ...args], io), args.join(' ')).toBe(2);
      expect(stderr.text).toMatch(re);
    }
  });
});

/** This process's environment without the variables that would fix the admin token or signing key. */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.MICROPAY_ADMIN_TOKEN;
  delete env.MICROPAY_SIGNING_KEY;
  return env;
}

describe('billing serve, as a process', () => {
  it('prints the URL it listens on with --port 0 and exits 0 on SIGTERM', async () => {
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const loader = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href;
    const entry = pathToFileURL(join(root, 'src/cli/micropay.ts')).href;
    const dir = tempDir();
    // The entry's own "am I the binary" check looks for a .js name, so start it through main().
    const code = `const m = await import(${JSON.stringify(entry)}); process.exitCode = await m.main(process.argv.slice(1));`;
    const child: ChildProcess = spawn(
      process.execPath,
      [
        '--import',
        loader,
        '--input-type=module',
        '-e',
        code,
        'billing',
        'serve',
        '--port',
        '0',
        '--issuer',
        'bank-p',
      ],
      { cwd: dir, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    try {
      const deadline = Date.now() + 20_000;
      while (!/listening on http:\/\/127\.0\.0\.1:\d+\n/.test(out)) {
        if (child.exitCode !== null) throw new Error(`exited early: ${out}${err}`);
        if (Date.now() > deadline) throw new Error(`no URL printed: ${out}${err}`);
        await new Promise((r) => setTimeout(r, 25));
      }
      const url = /issuer bank-p listening on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(out)![1]!;
      const health = await fetch(`${url}/healthz`);
      expect(await health.json()).toMatchObject({ status: 'ok', issuer: 'bank-p' });
      // The default database is ./billing.db in the working directory, its keys beside it.
      const file = join(dir, 'keys', 'admin-token');
      expect(out).toContain(`admin token generated into ${file}`);
      expect(out).not.toContain(readFileSync(file, 'utf8').trim());
      expect(statSync(join(dir, 'billing.db')).isFile()).toBe(true);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(out).toMatch(/^micropay billing: stopped \(SIGTERM\)\.$/m);
      expect(err).toBe('');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
