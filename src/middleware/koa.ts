/**
 * `micropay/koa`: the merchant as Koa middleware, a thin adapter over
 * `MicropayCore`. The handler sees who paid what in `ctx.state.micropay`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MicropayError } from '../protocol/errors.js';
import { MicropayCore, type MicropayOptions } from './core.js';

export type { Charge, HandleOptions, MicropayOptions, Outcome, PaymentInfo } from './core.js';
export { MicropayCore, settleCharge } from './core.js';

/** The part of a Koa context the adapter uses (keeps koa an optional peer dependency). */
export interface KoaLikeContext {
  req: IncomingMessage;
  res: ServerResponse;
  originalUrl: string;
  state: Record<string, unknown>;
  respond?: boolean;
}

/** The Koa middleware, with the core and `close()` attached. */
export interface MicropayKoaMiddleware {
  (ctx: KoaLikeContext, next: () => Promise<unknown>): Promise<void>;
  readonly core: MicropayCore;
  close(): Promise<void>;
}

/**
 * Creates the micropay middleware for Koa 3.
 * @example
 * import Koa from 'koa';
 * import { micropay } from 'micropay/koa';
 * const app = new Koa();
 * app.use(micropay({ merchant: 'news-site', billing: { url: 'http://127.0.0.1:4000', token: process.env.MERCHANT_TOKEN! },
 *   prices: { 'GET /articles/:id': '0.002 USD' } }));
 * app.use((ctx) => { ctx.body = `paid by ${ctx.state.micropay?.buyer}`; });
 */
export function micropay(options: MicropayOptions, ...misuse: unknown[]): MicropayKoaMiddleware {
  // `app.use(micropay)` calls this with (ctx, next): catch it with a sentence.
  if (misuse.length > 0 || (options as unknown as { req?: unknown })?.req !== undefined) {
    throw new MicropayError(
      'invalid_option',
      'Call micropay({...}) and pass its result to app.use(), not app.use(micropay).',
    );
  }
  const core = new MicropayCore(options);
  const mw = async (ctx: KoaLikeContext, next: () => Promise<unknown>): Promise<void> => {
    const o = await core.handle(ctx.req, ctx.res, ctx.originalUrl);
    if (o.action === 'answered') {
      // The core has written the answer to the raw response; Koa must not write again.
      ctx.respond = false;
      return;
    }
    if (o.action === 'paid') ctx.state.micropay = o.info;
    await next();
  };
  return Object.assign(mw, { core, close: () => core.close() });
}
