/**
 * Several billing server instances on one PostgreSQL database and one key
 * directory: they share accounts, tokens and keys, a rotation on one is seen
 * by the other at once for verification, and racing deposits of one order
 * through two instances credit it once.
 */
import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BillingServer, createBillingServer } from '../../src/billing-server/index.js';
import { decodeToken, signToken, tid } from '../../src/protocol/index.js';
import { pgUrl } from '../helpers/services.js';
import { expectBalanced, type Harness, startServer } from './helpers.js';

describe.skipIf(!pgUrl)('two instances on one PostgreSQL database', () => {
  let h: Harness;
  let b: BillingServer;
  let bUrl: string;
  beforeAll(async () => {
    h = await startServer('postgres');
    b = await createBillingServer(h.opts);
    bUrl = await b.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await b.close();
    await h.close();
  });
  const onB = (method: 'get' | 'post', path: string, token: string, body?: object) => {
    const r = request(bUrl)[method](path).set('Authorization', `Bearer ${token}`);
    return body ? r.send(body) : r;
  };

  it('share accounts, tokens, keys and the ledger', async () => {
    const m = await h.merchant('news');
    const alice = await h.buyer('alice');
    expect((await onB('get', '/v1/me', m.token)).body.account.id).toBe('news');
    const keysA = (await h.call('get', '/.well-known/micropay/keys')).body;
    expect((await request(bUrl).get('/.well-known/micropay/keys')).body).toEqual(keysA);

    // A rotates; B verifies a credential signed by the new key right away.
    const kid = (await h.call('post', '/v1/admin/keys/rotate', h.admin)).body.kid;
    const fresh = await h.recert(alice);
    expect(decodeToken(fresh.cert, 'mp-cert').payload.kid).toBe(kid);
    const d = await onB('post', '/v1/deposits', m.token, {
      batch: 'x1',
      orders: [{ cert: fresh.cert, order: h.order(fresh, { mer: 'news' }) }],
    });
    expect(d.body.results[0].status).toBe('credited');

    // Racing deposits of the same orders through both instances credit each once.
    for (let round = 0; round < 5; round++) {
      const orders = Array.from({ length: 20 }, () => ({
        cert: fresh.cert,
        order: signToken(
          {
            typ: 'mp-order',
            v: 1,
            cid: tid(fresh.cert),
            mer: 'news',
            res: 'GET /x',
            amt: 3,
            cur: 'USD',
            iat: h.clock.t,
            oid: randomBytes(16).toString('base64url'),
          },
          fresh.key,
        ),
      }));
      const [ra, rb] = await Promise.all([
        h.call('post', '/v1/deposits', m.token, { batch: `a${round}`, orders }),
        onB('post', '/v1/deposits', m.token, { batch: `b${round}`, orders }),
      ]);
      for (let i = 0; i < orders.length; i++) {
        expect([ra.body.results[i].status, rb.body.results[i].status].sort()).toEqual([
          'credited',
          'duplicate',
        ]);
      }
    }
    expect((await onB('get', '/v1/me', alice.token)).body.account.balance).toBe(-(1000 + 5 * 20 * 3));
    await expectBalanced(h);
  });
});
