/**
 * What the billing server offers browsers, mounted on its app by one call
 * before the API routes: CORS for the browser wallet's calls (`cors.ts`)
 * and the account pages at `/` (`pages.ts`, sessions in `session.ts`).
 * The `/v1/...` API and its bearer tokens are untouched by either.
 */
import type { Express } from 'express';
import type { AppContext } from '../http.js';
import { corsForWallet } from './cors.js';
import { accountPages } from './pages.js';

export { CORS_MAX_AGE, corsForWallet, parseCorsOrigins } from './cors.js';
export { accountPages } from './pages.js';

/**
 * Mounts CORS for the wallet and the account pages on the billing server's app.
 * @example
 * mountWeb(app, ctx); // in createApp, before the API routes
 */
export function mountWeb(app: Express, ctx: AppContext): void {
  app.use(corsForWallet(ctx.corsOrigins));
  app.use(accountPages(ctx));
}
