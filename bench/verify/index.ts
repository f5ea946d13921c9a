/**
 * bench/verify: full offline verification of a payment (credential cached,
 * order signature checked, replay mark and tally in the memory store) with
 * node:crypto, against the same work with @noble/ed25519. Prints ops/s and
 * the ratio measured in this one run (the machine is shared: only ratios
 * mean anything).
 */
import { randomBytes, verify } from 'node:crypto';
import { b64urlEncode } from '../../src/protocol/base64url.js';
import { decodeToken } from '../../src/protocol/codec.js';
import { generateSigningKey, signToken, tid } from '../../src/protocol/crypto.js';
import { formatPaymentHeader } from '../../src/protocol/header.js';
import { StaticKeyResolver } from '../../src/protocol/keys.js';
import { parseCredential, parseOrder } from '../../src/protocol/messages.js';
import { verifySignatureAsync } from '../../src/protocol/noble.js';
import { createVerifier } from '../../src/protocol/verifier.js';
import { MemoryPaymentStore } from '../../src/stores/memory.js';

const N = Number(process.env.BENCH_N ?? 20_000);
const now = Math.floor(Date.now() / 1000);
const bank = generateSigningKey();
const buyer = generateSigningKey();
const cert = signToken(
  {
    typ: 'mp-cert',
    v: 1,
    iss: 'bank-a',
    kid: 'k1',
    sub: 'alice',
    key: buyer.x,
    cur: 'USD',
    lim: 1e15,
    nbf: now - 10,
    exp: now + 86_400,
  },
  bank,
);
const cid = tid(cert);
const res = 'GET /articles/42';
const headers = Array.from({ length: N }, () =>
  formatPaymentHeader({
    kind: 'order',
    cert,
    order: signToken(
      {
        typ: 'mp-order',
        v: 1,
        cid,
        mer: 'news',
        res,
        amt: 2000,
        cur: 'USD',
        iat: now,
        oid: b64urlEncode(randomBytes(16)),
      },
      buyer,
    ),
  }),
);

async function nodeRun(): Promise<number> {
  const store = new MemoryPaymentStore({ maxEntries: N * 2 });
  const verifier = createVerifier({
    merchant: 'news',
    accepts: ['bank-a'],
    keys: new StaticKeyResolver({
      issuer: 'bank-a',
      keys: [{ kid: 'k1', x: bank.x, nbf: 0, exp: now + 1e6 }],
      peers: [],
    }),
    store,
  });
  const t0 = performance.now();
  // 32 payments in flight, as on a busy server: the signature checks run on libuv's thread pool.
  for (let i = 0; i < headers.length; i += 32) {
    const vs = await Promise.all(
      headers
        .slice(i, i + 32)
        .map((header) => verifier.verify({ res, price: { amt: 2000, cur: 'USD' }, header, now })),
    );
    for (const v of vs) if (!v.ok) throw new Error(`rejected: ${v.code}`);
  }
  const ms = performance.now() - t0;
  await store.close();
  return (N / ms) * 1000;
}

// The same checks with the browser backend: parse, credential once, order signature per payment.
async function nobleRun(): Promise<number> {
  const n = Math.max(500, Math.floor(N / 10));
  const seen = new Set<string>();
  const cd = decodeToken(cert, 'mp-cert');
  const c = parseCredential(cd.payload);
  if (!(await verifySignatureAsync(cd, bank.x))) throw new Error('credential');
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const h = headers[i]!;
    const orderToken = h.slice(h.indexOf('order="') + 7, -1);
    const od = decodeToken(orderToken, 'mp-order');
    const o = parseOrder(od.payload);
    if (o.cid !== cid || !(await verifySignatureAsync(od, c.key)) || seen.has(o.oid))
      throw new Error('order');
    seen.add(o.oid);
  }
  return (n / (performance.now() - t0)) * 1000;
}

// The floor: one Ed25519 check per payment through node:crypto, nothing else.
function rawRun(): number {
  const d = headers.map((h) => decodeToken(h.slice(h.indexOf('order="') + 7, -1), 'mp-order'));
  const t0 = performance.now();
  for (const x of d) if (!verify(null, x.signingInput, buyer.publicKey, x.signature)) throw new Error('raw');
  return (d.length / (performance.now() - t0)) * 1000;
}

await nodeRun(); // warm up
const rawOps = rawRun();
const nodeOps = await nodeRun();
const nobleOps = await nobleRun();
console.log(`verify (node:crypto, full offline path, 32 in flight): ${Math.round(nodeOps)} payments/s`);
console.log(`verify (@noble/ed25519, signature path):  ${Math.round(nobleOps)} payments/s`);
console.log(`raw Ed25519 verify (node:crypto, main thread only):${Math.round(rawOps)} checks/s`);
console.log(`full path / raw verify = ${(nodeOps / rawOps).toFixed(2)}`);
console.log(`ratio node:crypto / noble = ${(nodeOps / nobleOps).toFixed(1)}x`);
