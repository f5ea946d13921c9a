/**
 * bench/proxy's payment maker for the memory run: writes one
 * `Micropay-Payment` header per line for buyers `buyer-FROM`.. (each its own
 * credential from the bank seed `BENCH_BANK_SEED`, a buyer key from a pool
 * larger than the verifier's key cache, `iat` moving one second per 1,000),
 * so that the process being measured holds none of it. Stops at EPIPE.
 */
import { generateSigningKey, signingKeyFromSeed, signToken } from '../../src/protocol/crypto.js';
import { orderHeader } from '../lib/orders.js';

const bank = signingKeyFromSeed(process.env.BENCH_BANK_SEED!);
const t0 = Number(process.env.BENCH_T0);
const to = Number(process.env.BENCH_BUYERS);
const keys = Array.from({ length: 20_000 }, () => generateSigningKey());
process.stdout.on('error', () => process.exit(0));

let i = 0;
function more(): void {
  let ok = true;
  while (ok && i < to) {
    const lines: string[] = [];
    for (const end = Math.min(to, i + 100); i < end; i++) {
      const key = keys[i % keys.length]!;
      const iat = t0 + Math.floor(i / 1000);
      const cert = signToken(
        {
          typ: 'mp-cert',
          v: 1,
          iss: 'bank-a',
          kid: 'k1',
          sub: `buyer-${i}`,
          key: key.x,
          cur: 'USD',
          lim: 5_000_000,
          nbf: t0 - 60,
          exp: t0 + 86_400,
        },
        bank,
      );
      lines.push(orderHeader(cert, key, iat));
    }
    ok = process.stdout.write(`${lines.join('\n')}\n`);
  }
  if (i < to) process.stdout.once('drain', more);
}
more();
