/**
 * Webhook signatures of the billing server: `Micropay-Signature:
 * t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. The server
 * signs with `signWebhook`; a receiver checks with `verifyWebhook`, the same
 * function `docs/webhooks.md` prints as its ten-line example. Node only
 * (node:crypto): webhook receivers are servers.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Header carrying the signature of a delivery. */
export const SIGNATURE_HEADER = 'Micropay-Signature';
/** Header carrying the event id (the same on every retry of one event: dedupe on it). */
export const EVENT_ID_HEADER = 'Micropay-Event-Id';
/** Seconds a signature stays acceptable by default (5 minutes), both ways. */
export const DEFAULT_WEBHOOK_TOLERANCE = 300;

/** Options of `verifyWebhook`. */
export interface VerifyWebhookOptions {
  /** Largest difference between `t` and now, seconds. Default 300 (5 minutes): older (replayed) or future deliveries fail. */
  tolerance?: number;
  /** The current time, Unix seconds. Default: the system clock. */
  now?: number;
}

/** The `Micropay-Signature` value for `body` sent at `t` (Unix seconds). */
export function signWebhook(secret: string, body: string | Uint8Array, t: number): string {
  const v1 = createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');
  return `t=${t},v1=${v1}`;
}

/**
 * Checks a delivery's `Micropay-Signature` header against the raw request
 * body (the exact bytes received, before any JSON parsing). True only when a
 * `v1` signature matches and `t` is within `tolerance` of now.
 * @example
 * app.post('/hooks/micropay', express.raw({ type: 'application/json' }), (req, res) => {
 *   if (!verifyWebhook(secret, req.get('micropay-signature') ?? '', req.body)) return res.sendStatus(400);
 *   const event = JSON.parse(req.body.toString('utf8')); // { id, type, created, data }: dedupe on id
 *   res.sendStatus(204);
 * });
 */
export function verifyWebhook(
  secret: string,
  header: string,
  body: string | Uint8Array,
  { tolerance = DEFAULT_WEBHOOK_TOLERANCE, now = Date.now() / 1000 }: VerifyWebhookOptions = {},
): boolean {
  const t = /(?:^|,)\s*t=(\d{1,12})(?:,|$)/.exec(header)?.[1];
  const sigs = [...header.matchAll(/(?:^|,)\s*v1=([0-9a-f]{64})(?=,|$)/g)].map((m) =>
    Buffer.from(m[1]!, 'hex'),
  );
  if (t === undefined || !(Math.abs(now - Number(t)) <= tolerance)) return false;
  const expected = createHmac('sha256', secret).update(`${t}.`).update(body).digest();
  return sigs.some((s) => timingSafeEqual(s, expected));
}
