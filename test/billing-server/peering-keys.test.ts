/**
 * How a billing server takes a peer's key set (PROTOCOL.md sections 2 and 9),
 * against a deliberately odd peer: a small real HTTP server on 127.0.0.1 whose
 * key set the test changes at will (a real billing server cannot be made to
 * answer max-age=0, a wrong issuer or a 500). The refresh respects max-age
 * within bounds (never hammering), takes only the peer's own keys (not its
 * peers), refuses a set naming another issuer, keeps the last good set on
 * errors, and stops trusting a key withdrawn before its exp.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, type SigningKey, signToken, tid } from '../../src/protocol/crypto.js';
import { eventually } from '../helpers/world.js';
import { type Bank, publishedPeers, startBank } from './peering-helpers.js';

interface Stub {
  url: string;
  hits: number;
  status: number;
  body: unknown;
  cacheControl: string | null;
  close(): Promise<void>;
}

async function stubPeer(): Promise<Stub> {
  const stub: Stub = {
    url: '',
    hits: 0,
    status: 200,
    body: {},
    cacheControl: 'max-age=0',
    close: async () => {},
  };
  const server = http.createServer((req, res) => {
    if (req.url !== '/.well-known/micropay/keys') {
      res.writeHead(404).end();
      return;
    }
    stub.hits++;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (stub.cacheControl) headers['cache-control'] = stub.cacheControl;
    res.writeHead(stub.status, headers).end(JSON.stringify(stub.body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  stub.close = () => new Promise<void>((r) => server.close(() => r()));
  return stub;
}

const now = () => Math.floor(Date.now() / 1000);
const published = (kid: string, k: SigningKey, exp = now() + 86_400) => ({
  kid,
  x: k.x,
  nbf: now() - 60,
  exp,
});

describe("a peer's key set", () => {
  let a: Bank;
  let x: Stub;
  const k1 = generateSigningKey();
  const k2 = generateSigningKey();
  const ky = generateSigningKey();
  let merchant: string;

  /** A credential of bank-x signed by `key` as `kid`, and an order under it for `shop`. */
  function pair(kid: string, key: SigningKey) {
    const buyer = generateSigningKey();
    const cert = signToken(
      {
        typ: 'mp-cert',
        v: 1,
        iss: 'bank-x',
        kid,
        sub: 'xavier',
        key: buyer.x,
        cur: 'USD',
        lim: 1_000_000,
        nbf: now() - 10,
        exp: now() + 3600,
      },
      key,
    );
    const order = signToken(
      {
        typ: 'mp-order',
        v: 1,
        cid: tid(cert),
        mer: 'shop',
        res: 'GET /',
        amt: 1000,
        cur: 'USD',
        iat: now(),
        oid: randomBytes(16).toString('base64url'),
      },
      buyer,
    );
    return { cert, order };
  }
  const deposit = async (kid: string, key: SigningKey) =>
    (
      await request(a.url)
        .post('/v1/deposits')
        .set('Authorization', `Bearer ${merchant}`)
        .send({ batch: randomBytes(8).toString('hex'), orders: [pair(kid, key)] })
        .expect(200)
    ).body.results[0] as { status: string; reason?: string };

  beforeAll(async () => {
    x = await stubPeer();
    x.body = {
      issuer: 'bank-x',
      keys: [published('x1', k1)],
      peers: [{ issuer: 'bank-y', keys: [published('y1', ky)] }],
    };
    // On-demand refetches are rare here (5 s), so what the test sees is the periodic refresh.
    a = await startBank('bank-a', 'sqlite', {
      peerKeys: { tickMs: 20, minRefetchMs: 5000, backoffBaseMs: 20, backoffMaxMs: 50 },
      claims: { intervalMs: 60_000 },
    });
    merchant = await a.account({ id: 'shop', role: 'merchant', currency: 'USD' });
    await a.admin.admin.addPeer({ issuer: 'bank-x', url: x.url });
  });
  afterAll(async () => {
    await a?.close();
    await x?.close();
  });

  it("takes the peer's own keys only, and max-age=0 does not make it refetch every tick", async () => {
    await eventually(async () => (await publishedPeers(a)).has('bank-x'));
    expect(Object.fromEntries(await publishedPeers(a))).toEqual({ 'bank-x': ['x1'] });
    const hits = x.hits;
    await new Promise((r) => setTimeout(r, 500)); // 25 ticks
    expect(x.hits).toBe(hits); // max-age is bounded below by 10 s
    expect((await deposit('x1', k1)).status).toBe('credited');
    // A key of the peer's peer is not trusted here.
    const y = await deposit('y1', ky);
    expect(y).toMatchObject({ status: 'rejected', reason: 'unknown_issuer' });
  });

  it('refuses a set that names another issuer, keeps the last good one on errors', async () => {
    x.body = { issuer: 'bank-evil', keys: [published('e1', k2)], peers: [] };
    await a.admin.admin.updatePeer('bank-x', { url: x.url }); // same URL: fetch again now
    await eventually(async () => x.hits > 1);
    expect(Object.fromEntries(await publishedPeers(a))).toEqual({ 'bank-x': ['x1'] });
    x.status = 500;
    const before = x.hits;
    await a.admin.admin.updatePeer('bank-x', { url: x.url });
    await eventually(async () => x.hits > before);
    expect(Object.fromEntries(await publishedPeers(a))).toEqual({ 'bank-x': ['x1'] });
    expect((await deposit('x1', k1)).status).toBe('credited');
    x.status = 200;
  });

  it('a rotation adds the new key; a key withdrawn before its exp stops verifying', async () => {
    x.body = { issuer: 'bank-x', keys: [published('x2', k2), published('x1', k1)], peers: [] };
    x.cacheControl = null; // no max-age: the default (300 s)
    await a.admin.admin.updatePeer('bank-x', { url: x.url });
    await eventually(async () => (await publishedPeers(a)).get('bank-x')?.length === 2);
    expect((await deposit('x2', k2)).status).toBe('credited');
    x.body = { issuer: 'bank-x', keys: [published('x2', k2)], peers: [] };
    await a.admin.admin.updatePeer('bank-x', { url: x.url });
    await eventually(async () => (await publishedPeers(a)).get('bank-x')?.length === 1);
    expect(await deposit('x1', k1)).toMatchObject({ status: 'rejected', reason: 'unknown_issuer' });
    expect((await deposit('x2', k2)).status).toBe('credited');
    // The peer's keys survive a restart (stored), and the list says when they were fetched.
    await a.stop();
    await a.restart();
    expect(Object.fromEntries(await publishedPeers(a))).toEqual({ 'bank-x': ['x2'] });
    expect((await a.admin.admin.listPeers())[0]!.keysFetched).toBeGreaterThan(now() - 60);
  });
});
