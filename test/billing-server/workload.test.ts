/**
 * A random workload of 2000 operations (deposits with fresh, duplicate and
 * authorized orders, authorizations, adjustments, disables and enables,
 * re-posted batches, clock jumps), eight at a time so transactions race, on
 * both backends. Every currency sums to zero, every balance equals its
 * entries, and no order is ever credited twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { audit, type Buyer, backends, type Harness, startServer } from './helpers.js';

/** A small seeded PRNG (mulberry32), so a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const OPS = 2000;
const PARALLEL = 8;

describe.each(backends)('random workload on $name', ({ name, skip }) => {
  describe.skipIf(skip)(`${OPS} operations`, () => {
    let h: Harness;
    const seed = Number(process.env.WORKLOAD_SEED ?? Date.now() % 1_000_000);
    beforeAll(async () => {
      h = await startServer(name);
    });
    afterAll(async () => {
      await h.close();
    });

    it(`keeps every currency at zero and credits each order at most once (seed ${seed})`, async () => {
      const rnd = prng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
      const merchants: { id: string; token: string; cur: string }[] = [];
      for (const [i, cur] of ['USD', 'USD', 'EUR'].entries()) {
        const m = await h.merchant(`m${i}`, { currency: cur, commissionBps: int(0, 500) });
        merchants.push({ ...m, cur });
      }
      let buyers: (Buyer & { cur: string })[] = [];
      for (let i = 0; i < 12; i++) {
        const cur = i % 4 === 3 ? 'EUR' : 'USD';
        const b = await h.buyer(`b${i}`, {
          currency: cur,
          creditLimit: int(0, 50_000),
          dailyLimit: rnd() < 0.5 ? null : int(0, 20_000),
        });
        buyers.push({ ...b, cur });
      }
      type Sent = { cert: string; order: string; auth?: string; mer: string };
      const sentBy = new Map<string, Sent[]>();
      const remember = (o: Sent) => sentBy.set(o.mer, [...(sentBy.get(o.mer) ?? []).slice(-200), o]);
      const credited = new Map<string, number>();
      const batches: { mer: string; token: string; id: string }[] = [];
      let batchNo = 0;

      const op = async (): Promise<void> => {
        const r = rnd();
        if (r < 0.55) {
          const m = pick(merchants);
          const orders: { cert: string; order: string; auth?: string }[] = [];
          for (let i = int(1, 10); i > 0; i--) {
            const old = sentBy.get(m.id) ?? [];
            if (old.length > 0 && rnd() < 0.2) orders.push(pick(old));
            else {
              const b = pick(buyers.filter((x) => x.cur === m.cur));
              const o = {
                cert: b.cert,
                order: h.order(b, { mer: m.id, amt: int(1, 3000), cur: m.cur }),
                mer: m.id,
              };
              remember(o);
              orders.push(o);
            }
          }
          const id = `w${batchNo++}`;
          const res = await h.call('post', '/v1/deposits', m.token, { batch: id, orders });
          expect(res.status).toBe(200);
          batches.push({ mer: m.id, token: m.token, id });
          for (const x of res.body.results)
            if (x.status === 'credited')
              credited.set(`${m.id}/${x.oid}`, (credited.get(`${m.id}/${x.oid}`) ?? 0) + 1);
        } else if (r < 0.7) {
          const m = pick(merchants);
          const b = pick(buyers.filter((x) => x.cur === m.cur));
          const o = {
            cert: b.cert,
            order: h.order(b, { mer: m.id, amt: int(1, 20_000), cur: m.cur }),
            mer: m.id,
          };
          const res = await h.call('post', '/v1/authorizations', m.token, o);
          expect(res.status).toBe(200);
          if (res.body.status === 'approved') remember({ ...o, auth: res.body.auth });
        } else if (r < 0.8) {
          const b = pick(buyers);
          const res = await h.call('post', `/v1/admin/accounts/${b.id}/adjustments`, h.admin, {
            amt: int(-5000, 20_000) || 1,
            memo: 'workload',
          });
          expect(res.status).toBe(201);
        } else if (r < 0.88) {
          const b = pick(buyers);
          const res = await h.call('patch', `/v1/admin/accounts/${b.id}`, h.admin, {
            status: rnd() < 0.5 ? 'disabled' : 'active',
          });
          expect(res.status).toBe(200);
        } else if (r < 0.93 && batches.length > 0) {
          const b = pick(batches);
          const res = await h.call('post', '/v1/deposits', b.token, { batch: b.id, orders: [] });
          expect(res.status).toBe(200);
          expect(res.body.batch).toBe(b.id);
        } else if (r < 0.97) {
          const i = int(0, buyers.length - 1);
          const res = await h.call('post', '/v1/certificates', buyers[i]!.token, { key: buyers[i]!.key.x });
          expect([201, 403]).toContain(res.status);
          if (res.status === 201) {
            const fresh = await h.recert(buyers[i]!).catch(() => null);
            if (fresh) buyers = buyers.map((x, j) => (j === i ? { ...fresh, cur: x.cur } : x));
          }
        } else {
          h.clock.t += int(1, 200);
        }
      };

      for (let done = 0; done < OPS; done += PARALLEL) {
        await Promise.all(Array.from({ length: Math.min(PARALLEL, OPS - done) }, op));
        if (done % 400 === 0) {
          const a = await audit(h);
          expect(
            Object.values(a.balances).every((v) => v === 0),
            JSON.stringify(a),
          ).toBe(true);
        }
      }
      const a = await audit(h);
      expect(a.balances).toEqual({ USD: 0, EUR: 0 });
      expect(a.entries).toEqual({ USD: 0, EUR: 0 });
      expect(a.mismatched).toEqual([]);
      expect([...credited.values()].every((n) => n === 1)).toBe(true);
      expect(credited.size).toBeGreaterThan(100);
    });
  });
});
