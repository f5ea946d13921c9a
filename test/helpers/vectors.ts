/**
 * Loads the shared test vectors: `../shared/vectors/v1.json` beside the
 * checkout when present (as in CI), else the synced copy under `test/vectors/`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const shared = fileURLToPath(new URL('../../../shared/vectors/v1.json', import.meta.url));
const copy = fileURLToPath(new URL('../vectors/v1.json', import.meta.url));

export const sharedVectorsPath: string | null = existsSync(shared) ? shared : null;
export const copyVectorsPath = copy;

interface Payload extends Record<string, unknown> {
  typ: string;
}
export interface Vectors {
  keys: Record<string, { seed: string; x: string }>;
  billingKeys: {
    issuer: string;
    keys: { kid: string; x: string; nbf: number; exp: number }[];
    peers: { issuer: string; keys: { kid: string; x: string; nbf: number; exp: number }[] }[];
  };
  now: number;
  tokens: {
    cert: { payload: Payload; token: string; tid: string };
    order: { payload: Payload; token: string; tid: string };
    receipt: { payload: Payload; token: string; key: string };
    paymentHeader: string;
  };
  badTokens: { name: string; token: string; typ: string; key: string }[];
  merchant: {
    mer: string;
    accepts: string[];
    res: string;
    price: { amt: number; cur: string };
    onlineThreshold: number;
    freshness: number;
    skew: number;
  };
  merchantCases: { name: string; header: string; expect: string; before?: string[] }[];
}

export const vectors: Vectors = JSON.parse(readFileSync(sharedVectorsPath ?? copy, 'utf8'));
