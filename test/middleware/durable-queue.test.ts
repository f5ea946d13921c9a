/**
 * With a durable deposit queue, a charged response goes out only once its
 * order is in the queue: nothing of it (headers included) reaches the buyer
 * while the append is pending, everything does once it resolves (a plain
 * body, server-sent events that keep flowing, an upgrade answered on the raw
 * socket), and when the append fails the connection is closed with nothing
 * sent and the order released. The queue here is the memory queue behind a
 * gate the test opens, declared durable; the real billing server credits
 * what was held and let go.
 */
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  ServerResponse,
} from 'node:http';
import type { Socket } from 'node:net';
import express from 'express';
import Koa from 'koa';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MicropayCore, type MicropayOptions } from '../../src/middleware/core.js';
import { micropay as expressMicropay } from '../../src/middleware/express.js';
import { micropay as koaMicropay } from '../../src/middleware/koa.js';
import { decodeToken } from '../../src/protocol/codec.js';
import { tid } from '../../src/protocol/crypto.js';
import type { Offer } from '../../src/protocol/messages.js';
import { MemoryDepositQueue, MemoryPaymentStore } from '../../src/stores/memory.js';
import type { DepositBatch, DepositItem, DepositQueue } from '../../src/stores/types.js';
import { Opened } from '../helpers/opened.js';
import { eventually, startWorld, type World } from '../helpers/world.js';

const AMT = 1000;
const NET = AMT - Math.floor((AMT * 500) / 10_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A durable queue whose appends wait until the test settles them, one by one. */
class GatedQueue implements DepositQueue {
  readonly durable = true;
  readonly inner = new MemoryDepositQueue();
  readonly pending: { item: DepositItem; pass(): void; fail(e: Error): void }[] = [];

  append(item: DepositItem): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({
        item,
        pass: () => this.inner.append(item).then(resolve, reject),
        fail: reject,
      });
    });
  }
  /** Waits for the next append and takes it off the list. */
  async next() {
    await eventually(() => this.pending.length > 0, 5000, 5);
    return this.pending.shift()!;
  }
  claim(max: number): Promise<DepositBatch | null> {
    return this.inner.claim(max);
  }
  ack(id: string): Promise<void> {
    return this.inner.ack(id);
  }
  release(id: string): Promise<void> {
    return this.inner.release(id);
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

let world: World;
const opened = new Opened();
beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await opened.close();
  await world.close();
});

interface Logged {
  level: string;
  msg: string;
  line: string;
}

function setup() {
  const queue = new GatedQueue();
  const store = new MemoryPaymentStore();
  const logged: Logged[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write(line: string) {
        const o = JSON.parse(line) as { level: number; msg: string };
        logged.push({ level: o.level >= 50 ? 'error' : 'info', msg: o.msg, line });
      },
    },
  );
  const options: MicropayOptions = {
    merchant: world.merchant.id,
    billing: { url: world.url, token: world.merchant.token },
    prices: { 'GET /article': '0.001 USD', 'GET /events': '0.001 USD', 'GET /ws': '0.001 USD' },
    store,
    queue,
    deposits: { maxBatch: 10, maxDelayMs: 20 },
    logger,
  };
  return { queue, store, logged, options };
}

const listen = (server: Server): Promise<string> => opened.listen(server);

/** A GET on a fresh connection; `response` is undefined until the status line has arrived. */
function send(url: string, headers: Record<string, string> = {}) {
  const state: { response?: IncomingMessage; body: string; chunks: { at: number; text: string }[] } = {
    body: '',
    chunks: [],
  };
  const t0 = Date.now();
  const req = httpRequest(url, { headers, agent: false });
  const done = new Promise<typeof state>((resolve, reject) => {
    req.on('response', (res) => {
      state.response = res;
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        state.body += c;
        state.chunks.push({ at: Date.now() - t0, text: c });
      });
      res.on('end', () => resolve(state));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  req.end();
  return { state, done };
}

async function offerOf(url: string): Promise<Offer> {
  const r = await fetch(url);
  expect(r.status).toBe(402);
  return ((await r.json()) as { offer: Offer }).offer;
}

const balance = async () => (await world.admin.admin.getAccount(world.merchant.id)).balance;

function expressServer(options: MicropayOptions): Server {
  const mw = expressMicropay(options);
  opened.onClose(mw.close);
  const app = express();
  app.use(mw);
  app.get('/article', (_req, res) => {
    res.send('the article');
  });
  app.get('/events', (_req, res) => {
    res.setHeader('Content-Type', 'text/event-stream');
    res.flushHeaders();
    let n = 0;
    const t = setInterval(() => {
      res.write(`data: ${++n}\n\n`);
      if (n === 3) {
        clearInterval(t);
        res.end();
      }
    }, 150);
  });
  return createServer(app);
}

function koaServer(options: MicropayOptions): Server {
  const mw = koaMicropay(options);
  opened.onClose(mw.close);
  const app = new Koa();
  app.silent = true;
  app.use(mw);
  app.use(async (ctx) => {
    if (ctx.path === '/article') ctx.body = 'the article';
    if (ctx.path === '/events') {
      ctx.status = 200;
      ctx.type = 'text/event-stream';
      ctx.flushHeaders();
      let n = 0;
      ctx.res.on('close', () => clearInterval(t));
      const t = setInterval(() => {
        ctx.res.write(`data: ${++n}\n\n`);
        if (n === 3) {
          clearInterval(t);
          ctx.res.end();
        }
      }, 150);
      ctx.respond = false;
    }
  });
  return createServer(app.callback());
}

describe.each([
  ['Express', expressServer],
  ['Koa', koaServer],
])('%s with a durable deposit queue', (_name, make) => {
  it('sends nothing of a charged response until its order is queued, then all of it', async () => {
    const { queue, options } = setup();
    const base = await listen(make(options));
    const before = await balance();
    const r = send(`${base}/article`, {
      'Micropay-Payment': world.buyer.pay(await offerOf(`${base}/article`)),
    });
    const append = await queue.next();
    await sleep(200);
    expect(r.state.response).toBeUndefined(); // not even the status line
    append.pass();
    const { response, body } = await r.done;
    expect(response!.statusCode).toBe(200);
    expect(body).toBe('the article');
    expect(decodeToken(response!.headers['micropay-receipt'] as string, 'mp-receipt').payload).toMatchObject({
      res: 'GET /article',
      amt: AMT,
    });
    await eventually(async () => (await balance()) === before + NET);
  });

  it('lets server-sent events flow once the order is queued', async () => {
    const { queue, options } = setup();
    const base = await listen(make(options));
    const r = send(`${base}/events`, {
      'Micropay-Payment': world.buyer.pay(await offerOf(`${base}/events`)),
    });
    const append = await queue.next();
    await sleep(350); // two events written meanwhile, held with the flushed headers
    expect(r.state.response).toBeUndefined();
    append.pass();
    await eventually(() => r.state.chunks.length > 0, 5000, 5);
    const { body, chunks, response } = await r.done;
    expect(response!.statusCode).toBe(200);
    expect(response!.headers['micropay-receipt']).toBeTruthy();
    expect(body).toBe('data: 1\n\ndata: 2\n\ndata: 3\n\n');
    // The third event was written after the hold ended, and came on its own.
    expect(chunks.at(-1)!.text).toBe('data: 3\n\n');
  });

  it('closes the connection with nothing sent when the append fails, and releases the order', async () => {
    const { queue, store, logged, options } = setup();
    const base = await listen(make(options));
    const before = await balance();
    const header = world.buyer.pay(await offerOf(`${base}/article`));
    const r = send(`${base}/article`, { 'Micropay-Payment': header });
    const append = await queue.next();
    const cid = tid(world.buyer.cert);
    expect(await store.spent(cid, world.merchant.id)).toBe(AMT);
    append.fail(new Error('redis is down'));
    await expect(r.done).rejects.toThrow(/socket hang up|ECONNRESET/);
    expect(r.state.response).toBeUndefined();
    await eventually(async () => (await store.spent(cid, world.merchant.id)) === 0);
    const error = logged.find((l) => l.level === 'error');
    expect(error?.msg).toMatch(/could not queue a charged order.*not sent.*released/);
    expect(error?.line).toContain('redis is down');
    expect(logged.map((l) => l.line).join('\n')).not.toContain(header.slice(-40));
    // The order was refused a place in the queue: nothing to deposit, nothing credited.
    expect(await queue.size()).toBe(0);
    await sleep(100);
    expect(await balance()).toBe(before);
    // The same order again is a replay (its mark stays); a new one goes through.
    const replay = await fetch(`${base}/article`, { headers: { 'Micropay-Payment': header } });
    expect(replay.status).toBe(402);
    expect(((await replay.json()) as { error: string }).error).toBe('replayed_order');
    const fresh = send(`${base}/article`, {
      'Micropay-Payment': world.buyer.pay(await offerOf(`${base}/article`)),
    });
    (await queue.next()).pass();
    expect((await fresh.done).body).toBe('the article');
  });
});

describe('closing with an append pending', () => {
  it('close() waits for the append, then delivers the held response and deposits the order', async () => {
    const { queue, options } = setup();
    const mw = expressMicropay(options);
    const app = express();
    app.use(mw);
    app.get('/article', (_req, res) => {
      res.send('the article');
    });
    const base = await listen(createServer(app));
    const r = send(`${base}/article`, {
      'Micropay-Payment': world.buyer.pay(await offerOf(`${base}/article`)),
    });
    const append = await queue.next();
    let closed = false;
    const closing = mw.close().then(() => {
      closed = true;
    });
    await sleep(200);
    expect(closed).toBe(false);
    append.pass();
    await closing;
    const { response, body } = await r.done;
    expect(body).toBe('the article');
    // Drained on close: the order was credited before close() resolved.
    const receipt = decodeToken(response!.headers['micropay-receipt'] as string, 'mp-receipt');
    const { oid } = receipt.payload as { oid: string };
    const { entries } = await world.buyer.client.entries({ limit: 50 });
    expect(entries.some((e) => e.oid === oid && e.kind === 'order')).toBe(true);
  });
});

describe('a priced upgrade with a durable deposit queue', () => {
  /**
   * What micropay-proxy does with an upgrade (src/proxy/server.ts): the core answers through a
   * response bound to the raw socket, and the 101 is then written on the socket itself.
   */
  const upgraded = new Set<Socket>();
  afterAll(() => {
    for (const s of upgraded) s.destroy(); // upgraded sockets are the server's no longer
  });

  async function upgradeServer(options: MicropayOptions): Promise<string> {
    const core = new MicropayCore(options);
    opened.onClose(() => core.close());
    // Plain requests (the 402 with the offer) go through the core too.
    const server = createServer((req, res) => {
      void core.handle(req, res).then((o) => {
        if (o.action !== 'answered') res.end('not an upgrade');
      });
    });
    server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
      upgraded.add(socket);
      const res = new ServerResponse(req);
      res.assignSocket(socket);
      void core.handle(req, res).then((o) => {
        if (o.action === 'answered') return;
        res.writeHead(101); // the charge is decided here
        res.detachSocket(socket);
        socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n');
        socket.write('hello from upstream');
      });
    });
    return listen(server);
  }

  function upgrade(url: string, payment: string) {
    const req = httpRequest(url, {
      agent: false,
      headers: { Connection: 'Upgrade', Upgrade: 'test', 'Micropay-Payment': payment },
    });
    const state: { upgraded: boolean } = { upgraded: false };
    const done = new Promise<string>((resolve, reject) => {
      req.on('upgrade', (_res, socket: Socket, head: Buffer) => {
        state.upgraded = true;
        let text = head.toString();
        if (text.length >= 19) resolve(text);
        socket.on('data', (d: Buffer) => {
          text += d.toString();
          if (text.length >= 19) resolve(text);
        });
      });
      req.on('error', reject);
    });
    req.end();
    return { state, done };
  }

  it('corks the socket until the order is queued', async () => {
    const { queue, options } = setup();
    const base = await upgradeServer(options);
    const r = upgrade(`${base}/ws`, world.buyer.pay(await offerOf(`${base}/ws`)));
    const append = await queue.next();
    await sleep(200);
    expect(r.state.upgraded).toBe(false);
    append.pass();
    expect(await r.done).toBe('hello from upstream');
  });

  it('closes the socket when the append fails', async () => {
    const { queue, store, options } = setup();
    const base = await upgradeServer(options);
    const r = upgrade(`${base}/ws`, world.buyer.pay(await offerOf(`${base}/ws`)));
    (await queue.next()).fail(new Error('redis is down'));
    await expect(r.done).rejects.toThrow(/socket hang up|ECONNRESET/);
    expect(r.state.upgraded).toBe(false);
    await eventually(async () => (await store.spent(tid(world.buyer.cert), world.merchant.id)) === 0);
  });
});

describe('queues that say whether they are durable', () => {
  it('holds nothing for the memory queue, whose orders die with the process anyway', async () => {
    expect(new MemoryDepositQueue().durable).toBe(false);
    const { options } = setup();
    const server = expressServer({ ...options, queue: new MemoryDepositQueue() });
    const base = await listen(server);
    const r = send(`${base}/article`, {
      'Micropay-Payment': world.buyer.pay(await offerOf(`${base}/article`)),
    });
    expect((await r.done).body).toBe('the article');
  });
});
