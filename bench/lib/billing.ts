/**
 * The benches' billing server (the real one, SQLite in memory), in a process
 * of its own so that deposits do not take CPU from the merchant or proxy being
 * measured. Prints one JSON line: its URL, the merchant token, a buyer
 * credential with a large offline limit, and the buyer's seed.
 */
import { createBillingClient } from '../../src/billing-client/index.js';
import { createBillingServer } from '../../src/billing-server/index.js';
import { exportSeed, generateSigningKey } from '../../src/protocol/crypto.js';

const billing = await createBillingServer({ issuer: 'bank-a', db: ':memory:', logger: false });
const url = await billing.listen(0, '127.0.0.1');
const admin = createBillingClient({ url, token: billing.adminToken });
const merchant = await admin.admin.createAccount({ id: 'news-site', role: 'merchant', currency: 'USD' });
const buyer = await admin.admin.createAccount({
  id: 'alice',
  role: 'buyer',
  currency: 'USD',
  creditLimit: 1e13,
  dailyLimit: null,
});
const key = generateSigningKey();
const cert = (await createBillingClient({ url, token: buyer.token }).createCertificate(key.x)).cert;
console.log(
  JSON.stringify({
    url,
    merchantToken: merchant.token,
    cert,
    seed: Buffer.from(exportSeed(key)).toString('hex'),
  }),
);
