/**
 * The `micropay-proxy` binary as a child process (`node --import tsx
 * src/cli/micropay-proxy.ts`, one process, so signals reach it: `npx tsx`
 * puts npm and tsx's watcher in between, and neither forwards SIGHUP) against
 * the real billing server: SIGHUP reloads a good file and refuses a bad one,
 * SIGTERM lets a slow paid request finish, flushes its deposit and exits 0.
 * `--check`, `--help` and usage errors run in process through `micropay proxy`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/micropay.js';
import { eventually, startWorld, type World } from '../helpers/world.js';
import { get, startUpstream, tempDir, type Upstream } from './helpers.js';

let world: World;
let up: Upstream;
const tmp = tempDir('micropay-proxy-cli-');
const children: ChildProcess[] = [];

beforeAll(async () => {
  world = await startWorld();
  up = await startUpstream();
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await up.close();
  await world.close();
  tmp.remove();
});

function yaml(price: string, extra = ''): string {
  return [
    'listen: 127.0.0.1:0',
    'merchant: news-site',
    `billing: { url: ${world.url}, token: \${MERCHANT_TOKEN} }`,
    `upstream: ${up.url}`,
    'deposits: { maxDelayMs: 20 }',
    'routes:',
    '  - match: GET /articles/*',
    `    price: ${price}`,
    '  - match: GET /slow-paid',
    `    price: ${price}`,
    extra,
    '',
  ].join('\n');
}

interface Child {
  proc: ChildProcess;
  url: string;
  lines: string[];
  exited: Promise<number | null>;
  waitFor(re: RegExp): Promise<string>;
}

async function startChild(file: string): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/micropay-proxy.ts', '--config', file], {
    cwd: process.cwd(),
    env: { ...process.env, MERCHANT_TOKEN: world.merchant.token, NODE_ENV: 'test' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(proc);
  const lines: string[] = [];
  let buffered = '';
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const onData = (chunk: Buffer) => {
    buffered += chunk.toString();
    let i = buffered.indexOf('\n');
    while (i !== -1) {
      const line = buffered.slice(0, i);
      buffered = buffered.slice(i + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
      i = buffered.indexOf('\n');
    }
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const waitFor = (re: RegExp) => {
    const had = lines.find((l) => re.test(l));
    if (had) return Promise.resolve(had);
    return new Promise<string>((resolve, reject) => {
      waiters.push({ re, resolve });
      exited.then((code) => reject(new Error(`exited (${code}) before ${re}: ${lines.join('\n')}`)));
    });
  };
  const listening = await waitFor(/micropay-proxy: listening/);
  return { proc, url: JSON.parse(listening).url, lines, exited, waitFor };
}

describe('micropay-proxy as a process', () => {
  it('reloads on SIGHUP, refuses a bad file keeping the running configuration, and stops on SIGTERM', async () => {
    const file = join(tmp.dir, 'hup.yaml');
    writeFileSync(file, yaml('0.002 USD'));
    const child = await startChild(file);
    expect(child.lines.join('\n')).not.toContain(world.merchant.token);
    expect((await get(`${child.url}/articles/1`)).json().offer).toMatchObject({ amt: 2000 });

    writeFileSync(file, yaml('0.005 USD'));
    child.proc.kill('SIGHUP');
    await child.waitFor(/configuration reloaded/);
    expect((await get(`${child.url}/articles/1`)).json().offer).toMatchObject({ amt: 5000 });

    writeFileSync(file, yaml('0.007 USD', 'pricing: wrong'));
    child.proc.kill('SIGHUP');
    const refused = JSON.parse(await child.waitFor(/reload refused/));
    expect(refused).toMatchObject({
      code: 'invalid_config',
      err: expect.stringContaining('pricing: is not a known field'),
    });
    expect((await get(`${child.url}/articles/1`)).json().offer).toMatchObject({ amt: 5000 });

    child.proc.kill('SIGTERM');
    expect(await child.exited).toBe(0);
    expect(child.lines.join('\n')).not.toContain(world.merchant.token);
  });

  it('drains on SIGTERM: a slow paid request in flight completes, its deposit is flushed, exit 0', async () => {
    const file = join(tmp.dir, 'term.yaml');
    writeFileSync(file, yaml('0.002 USD').replace('maxDelayMs: 20', 'maxDelayMs: 60000'));
    const child = await startChild(file);
    const carol = await world.addBuyer('carol');
    const offer = (await get(`${child.url}/slow-paid`)).json().offer as Parameters<World['buyer']['pay']>[0];
    const response = new Promise<{ status: number; body: string; receipt: unknown }>((resolve, reject) => {
      http
        .get(
          `${child.url}/slow-paid`,
          { agent: false, headers: { 'Micropay-Payment': carol.pay(offer) } },
          (res) => {
            let body = '';
            res.on('data', (c) => {
              body += c;
            });
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body, receipt: res.headers['micropay-receipt'] }),
            );
          },
        )
        .on('error', reject);
    });
    await up.slowStarted;
    child.proc.kill('SIGTERM');
    await child.waitFor(/draining and stopping/);
    // No longer accepting new connections while it drains.
    await expect(get(`${child.url}/about`)).rejects.toThrow(/ECONNREFUSED|ECONNRESET/);
    expect(child.proc.exitCode).toBeNull();
    up.releaseSlow();
    expect(await response).toMatchObject({
      status: 200,
      body: 'first\nsecond\n',
      receipt: expect.any(String),
    });
    expect(await child.exited).toBe(0);
    // The deposit batching delay was a minute: the order was deposited by the drain at shutdown.
    await eventually(async () => (await world.admin.admin.getAccount('carol')).balance === -2000);
  });
});

function io() {
  const out: string[] = [];
  const err: string[] = [];
  const sink = (into: string[]) =>
    new Writable({
      write(c, _e, cb) {
        into.push(c.toString());
        cb();
      },
    });
  return {
    io: { stdout: sink(out), stderr: sink(err), env: { MERCHANT_TOKEN: 't' }, cwd: tmp.dir },
    out: () => out.join(''),
    err: () => err.join(''),
  };
}

describe('micropay proxy --check, --help and usage', () => {
  it('checks a good file', async () => {
    writeFileSync(join(tmp.dir, 'micropay.yaml'), yaml('0.002 USD'));
    const t = io();
    expect(await main(['proxy', '--check'], t.io)).toBe(0);
    expect(t.out()).toMatch(
      /micropay\.yaml: OK: merchant news-site, 2 priced routes, upstream http:\/\/127\.0\.0\.1:\d+/,
    );
  });

  it('refuses a bad file, naming the field', async () => {
    writeFileSync(join(tmp.dir, 'bad.yaml'), yaml('two cents'));
    const t = io();
    expect(await main(['proxy', '--check', '--config', 'bad.yaml'], t.io)).toBe(1);
    expect(t.err()).toMatch(
      /^micropay: invalid_config: .*bad\.yaml: routes\[0\]\.price: "two cents" is not a price/,
    );
  });

  it('prints help, and refuses unknown options', async () => {
    const t = io();
    expect(await main(['proxy', '--help'], t.io)).toBe(0);
    expect(t.out()).toContain('Usage: micropay-proxy [--config FILE] [--check]');
    const u = io();
    expect(await main(['proxy', '--port', '1'], u.io)).toBe(2);
    expect(u.err()).toMatch(/^micropay: usage: /);
    const h = io();
    expect(await main(['--help'], h.io)).toBe(0);
    expect(h.out()).toMatch(/proxy\s+Run the paywall proxy in front of any site/);
  });
});
