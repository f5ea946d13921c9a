/**
 * `upstreamTimeoutMs`: an upstream that stays silent. Before its headers the
 * client gets `504 upstream_timeout` and nothing is charged; a body that stops
 * midway is cut; a body that keeps coming, a client that stops reading, a
 * kept-alive upstream connection idle between requests and an open websocket
 * tunnel are left alone. The
 * upstream is a real server on an ephemeral port that hangs on purpose.
 */
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { type Bank, closeProxies, config, eventually, get, startBank, startProxy } from './helpers.js';

// Ten times the drip's 100 ms gaps: a busy machine would have to stall this test's process for
// about 900 ms (upstream and proxy both live in it) before the drip looked silent.
const SILENT_MS = 1000;
const DRIPS = 12;
/** Far more than the loopback's socket buffers hold, so a client that does not read holds the upstream back. */
const BIG = 48 * 1024 * 1024;

interface Hanging {
  url: string;
  /** Upstream requests that ended without an answer (the proxy gave up on them). */
  abandoned: number;
  /** Connections the upstream accepted. */
  connections: number;
  /** Requests the upstream received. */
  requests: number;
  close(): Promise<void>;
}

/**
 * `/…hang` never answers, `/…stall` sends its headers and a chunk then nothing, `/…drip` sends
 * `DRIPS` chunks 100 ms apart (longer in all than the timeout), anything else answers at once;
 * `/ws` is a websocket echo and `/ws-hang` an upgrade never answered.
 */
async function startHanging(): Promise<Hanging> {
  const h: Hanging = { url: '', abandoned: 0, connections: 0, requests: 0, close: async () => {} };
  const held = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    h.requests++;
    res.once('close', () => {
      if (!res.writableFinished) h.abandoned++;
    });
    if (url.endsWith('hang')) return;
    res.setHeader('Content-Type', 'text/plain');
    if (url.endsWith('stall')) {
      res.write('first\n');
      return;
    }
    if (url.endsWith('big')) {
      // As fast as the proxy takes it: a client that does not read holds this back.
      const chunk = Buffer.alloc(64 * 1024, 120);
      let left = BIG / chunk.length;
      const pump = () => {
        while (left > 0) {
          left--;
          if (left === 0) res.end(chunk);
          else if (!res.write(chunk)) return void res.once('drain', pump);
        }
      };
      pump();
      return;
    }
    if (url.endsWith('drip')) {
      let n = 0;
      const t = setInterval(() => {
        n++;
        if (n < DRIPS) res.write(`chunk ${n}\n`);
        else {
          clearInterval(t);
          res.end('last\n');
        }
      }, 100);
      res.once('close', () => clearInterval(t));
      return;
    }
    res.end(`ok ${url}\n`);
  });
  server.on('connection', () => {
    h.connections++;
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    if (req.url?.startsWith('/ws-hang')) {
      held.add(socket);
      socket.once('close', () => {
        held.delete(socket);
        h.abandoned++;
      });
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data) => ws.send(`echo:${data.toString()}`));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  h.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  h.close = async () => {
    for (const s of held) s.destroy();
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return h;
}

/** GET through a kept-alive agent; resolves the status, body and whether the body was cut. */
function fetchText(
  url: string,
  agent: http.Agent | false,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; cut: boolean; ms: number; receipt: unknown }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      const done = (cut: boolean) =>
        resolve({
          status: res.statusCode ?? 0,
          body,
          cut,
          ms: Date.now() - t0,
          receipt: res.headers['micropay-receipt'],
        });
      res.once('end', () => done(!res.complete));
      res.once('error', () => done(true));
    });
    req.on('error', reject);
  });
}

let up: Hanging;
let bank: Bank;
let url: string;

beforeAll(async () => {
  up = await startHanging();
  bank = startBank();
  ({ url } = await startProxy(config(up.url, { upstreamTimeoutMs: SILENT_MS }), { billing: bank.billing }));
});
afterAll(async () => {
  await closeProxies();
  await up.close();
});

describe('upstreamTimeoutMs', () => {
  it('answers 504 upstream_timeout when the upstream sends no headers in time, and drops its request', async () => {
    const before = up.abandoned;
    const t0 = Date.now();
    const r = await get(`${url}/about/hang`);
    const ms = Date.now() - t0;
    expect(r.status).toBe(504);
    expect(r.json()).toEqual({
      error: 'upstream_timeout',
      message: expect.stringMatching(/did not answer in time, so nothing was charged/),
    });
    expect(ms).toBeGreaterThanOrEqual(SILENT_MS - 20);
    expect(ms).toBeLessThan(SILENT_MS + 2000);
    await eventually(() => up.abandoned > before);
    const m = await get(`${url}/_micropay/metrics`);
    expect(m.body).toMatch(/micropay_proxy_upstream_errors_total 1\b/);
    expect(m.body).toMatch(/micropay_proxy_requests_total\{outcome="error",status="504"\} 1\b/);
  });

  it('charges nothing for a paid request the upstream leaves unanswered, and releases its tally', async () => {
    const ivy = bank.buyer('ivy', { lim: 2000 });
    const paid = await get(`${url}/articles/hang`, { 'Micropay-Payment': ivy.pay('GET /articles/hang') });
    expect(paid.status).toBe(504);
    expect(paid.json().error).toBe('upstream_timeout');
    expect(paid.headers['micropay-receipt']).toBeUndefined();
    // The whole limit is free again: the next order goes offline, and only it is deposited.
    const auths = bank.authorizations;
    const ok = await get(`${url}/articles/1`, { 'Micropay-Payment': ivy.pay('GET /articles/1') });
    expect(ok.status).toBe(200);
    expect(ok.headers['micropay-receipt']).toBeDefined();
    expect(bank.authorizations).toBe(auths);
    await eventually(() => bank.deposits.some((d) => d.cert === ivy.cert));
    await new Promise((r) => setTimeout(r, 60));
    expect(bank.deposits.filter((d) => d.cert === ivy.cert)).toHaveLength(1);
  });

  it('charges nothing when the client hangs up before the upstream answers, and releases its tally', async () => {
    const jon = bank.buyer('jon', { lim: 2000 });
    const { requests, abandoned } = up;
    const req = http.get(`${url}/articles/hang`, {
      agent: false,
      headers: { 'Micropay-Payment': jon.pay('GET /articles/hang') },
    });
    req.on('error', () => {});
    // Paid and sent upstream, then the client is gone: the proxy drops the upstream request too.
    await eventually(() => up.requests > requests);
    req.destroy();
    await eventually(() => up.abandoned > abandoned);
    const auths = bank.authorizations;
    const ok = await get(`${url}/articles/1`, { 'Micropay-Payment': jon.pay('GET /articles/1') });
    expect(ok.status).toBe(200);
    expect(bank.authorizations).toBe(auths); // the whole limit was free again: offline
    await eventually(() => bank.deposits.some((d) => d.cert === jon.cert));
    await new Promise((r) => setTimeout(r, 60));
    expect(bank.deposits.filter((d) => d.cert === jon.cert)).toHaveLength(1);
  });

  it('cuts a response whose body stops midway (it was charged on its 200)', async () => {
    const r = await fetchText(`${url}/about/stall`, false);
    expect(r.status).toBe(200);
    expect(r.body).toBe('first\n');
    expect(r.cut).toBe(true);
    expect(r.ms).toBeGreaterThanOrEqual(SILENT_MS - 20);
  });

  it('leaves alone a body that keeps coming, however long it takes in all', async () => {
    const r = await fetchText(`${url}/about/drip`, false);
    expect(r.status).toBe(200);
    expect(r.cut).toBe(false);
    expect(r.body).toBe(`${Array.from({ length: DRIPS - 1 }, (_, i) => `chunk ${i + 1}\n`).join('')}last\n`);
    expect(r.ms).toBeGreaterThan(SILENT_MS);
  });

  it('does not take a client that does not read for a silent upstream', async () => {
    const { received, cut } = await new Promise<{ received: number; cut: boolean }>((resolve, reject) => {
      const req = http.get(`${url}/about/big`, { agent: false }, (res) => {
        let received = 0;
        res.on('data', (c: Buffer) => {
          received += c.length;
        });
        // Stops reading for twice the timeout once the body has started.
        res.pause();
        setTimeout(() => res.resume(), SILENT_MS * 2);
        res.once('end', () => resolve({ received, cut: !res.complete }));
        res.once('error', () => resolve({ received, cut: true }));
      });
      req.on('error', reject);
    });
    expect(cut).toBe(false);
    expect(received).toBe(BIG);
  });

  it('does not time out a kept-alive upstream connection idle between two requests', async () => {
    const agent = new http.Agent({ keepAlive: true });
    try {
      const first = await fetchText(`${url}/about/one`, agent);
      expect(first.body).toBe('ok /about/one\n');
      const conns = up.connections;
      const m0 = (await get(`${url}/_micropay/metrics`)).body;
      await new Promise((r) => setTimeout(r, SILENT_MS * 2));
      const second = await fetchText(`${url}/about/two`, agent);
      expect(second).toMatchObject({ status: 200, body: 'ok /about/two\n', cut: false });
      // The proxy's pooled upstream connection served the second request too.
      expect(up.connections).toBe(conns);
      const errors = (t: string) => /micropay_proxy_upstream_errors_total (\d+)/.exec(t)?.[1];
      expect(errors((await get(`${url}/_micropay/metrics`)).body)).toBe(errors(m0));
    } finally {
      agent.destroy();
    }
  });

  it('answers 504 on the raw socket to an upgrade the upstream never answers, and leaves an open tunnel alone', async () => {
    const ws = url.replace(/^http/, 'ws');
    const refused = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const c = new WebSocket(`${ws}/ws-hang`);
      c.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      c.once('open', () => reject(new Error('opened')));
      c.once('error', reject);
    });
    expect(refused.status).toBe(504);
    expect(JSON.parse(refused.body).error).toBe('upstream_timeout');

    const c = new WebSocket(`${ws}/ws`);
    await new Promise((r, j) => {
      c.once('open', r);
      c.once('error', j);
    });
    await new Promise((r) => setTimeout(r, SILENT_MS * 2));
    const echoed = await new Promise<string>((resolve, reject) => {
      c.once('message', (d) => resolve(d.toString()));
      c.once('close', () => reject(new Error('the tunnel was closed')));
      c.send('still there?');
    });
    expect(echoed).toBe('echo:still there?');
    c.close();
  });

  it('waits for ever with upstreamTimeoutMs: 0, and takes a new timeout on reload', async () => {
    const { url: u, proxy } = await startProxy(config(up.url, { upstreamTimeoutMs: 0 }), {
      billing: bank.billing,
    });
    const outcome = await new Promise<string>((resolve) => {
      const req = http.get(`${u}/about/hang`, { agent: false }, (res) =>
        resolve(`answered ${res.statusCode}`),
      );
      req.setTimeout(SILENT_MS * 3, () => {
        req.destroy();
        resolve('still waiting');
      });
      req.on('error', () => {});
    });
    expect(outcome).toBe('still waiting');
    await proxy.reload(config(up.url, { upstreamTimeoutMs: SILENT_MS }));
    const r = await get(`${u}/about/hang`);
    expect(r.status).toBe(504);
  });
});
