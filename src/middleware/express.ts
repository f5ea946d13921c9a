/**
 * `micropay/express`: the merchant as Express middleware, a thin adapter over
 * `MicropayCore`. The handler sees who paid what in `req.micropay`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MicropayError } from '../protocol/errors.js';
import { MicropayCore, type MicropayOptions, type PaymentInfo } from './core.js';

export type { Charge, HandleOptions, MicropayOptions, Outcome, PaymentInfo } from './core.js';
export { MicropayCore, settleCharge } from './core.js';

declare module 'node:http' {
  interface IncomingMessage {
    /** What was paid for this request (set by micropay on priced routes). */
    micropay?: PaymentInfo;
  }
}

type Next = (err?: unknown) => void;

/** The Express middleware, with the core and `close()` attached. */
export interface MicropayExpressMiddleware {
  (req: IncomingMessage & { originalUrl?: string }, res: ServerResponse, next: Next): void;
  /** The framework-neutral core (metrics, dead letters, deposits). */
  readonly core: MicropayCore;
  /** Stops taking payments and drains deposits. */
  close(): Promise<void>;
}

/**
 * Creates the micropay middleware for Express 5.
 * @example
 * import express from 'express';
 * import { micropay } from 'micropay/express';
 * const app = express();
 * app.use(micropay({ merchant: 'news-site', billing: { url: 'http://127.0.0.1:4000', token: process.env.MERCHANT_TOKEN! },
 *   prices: { 'GET /articles/:id': '0.002 USD' } }));
 * app.get('/articles/:id', (req, res) => res.send(`paid by ${req.micropay?.buyer}`));
 */
export function micropay(options: MicropayOptions, ...misuse: unknown[]): MicropayExpressMiddleware {
  // `app.use(micropay)` calls this with (req, res, next): catch it with a sentence, as helmet does.
  if (misuse.length > 0 || (options as unknown as { method?: unknown })?.method !== undefined) {
    throw new MicropayError(
      'invalid_option',
      'Call micropay({...}) and pass its result to app.use(), not app.use(micropay).',
    );
  }
  const core = new MicropayCore(options);
  const mw = (req: IncomingMessage & { originalUrl?: string }, res: ServerResponse, next: Next): void => {
    core.handle(req, res, req.originalUrl ?? req.url).then((o) => {
      if (o.action === 'answered') return;
      if (o.action === 'paid') req.micropay = o.info;
      next();
    }, next);
  };
  return Object.assign(mw, { core, close: () => core.close() });
}
