/**
 * The smallest micropay merchant on Koa 3: a free front page and articles at
 * 0.002 USD each. `createApp` builds it (so tests and demos can start it on
 * any port with any billing server); `server.ts` runs it.
 */
import Koa from 'koa';
import {
  type MicropayKoaMiddleware,
  type MicropayOptions,
  micropay,
  type PaymentInfo,
} from '../../src/middleware/koa.js';

/** The articles on sale, by id. */
export const ARTICLES: Record<string, { title: string; body: string }> = {
  '42': {
    title: 'The answer, explained',
    body: 'Forty-two is the answer. The question took a little longer to work out.',
  },
  '43': {
    title: 'Paying per click',
    body: 'Cents and fractions of a cent, paid as you read: no subscription, no account at each site.',
  },
};

/** The price of an article. */
export const ARTICLE_PRICE = '0.002 USD';

/** Options of `createApp`: those of `micropay()` except the prices, which are this example's. */
export type ExampleAppOptions = Omit<MicropayOptions, 'prices' | 'manifest' | 'dynamicPrices'>;

/** The example app, with its micropay middleware (for `close()` and the deposit batcher). */
export type ExampleApp = Koa & { readonly micropay: MicropayKoaMiddleware };

const ARTICLE_PATH = /^\/articles\/([^/]+)$/;

/**
 * Builds the example merchant.
 * @example
 * const app = createApp({ merchant: 'news-site', billing: { url: 'http://127.0.0.1:4000', token: merchantToken } });
 * const server = app.listen(3000);
 * // ... later: server.close(); await app.micropay.close();
 */
export function createApp(options: ExampleAppOptions): ExampleApp {
  const mw = micropay({
    name: 'News Site',
    ...options,
    prices: {
      // Unknown articles are free, so they get an honest 404 rather than a paywall.
      'GET /articles/:id': ({ params }) => {
        const a = ARTICLES[params.id ?? ''];
        return a ? { price: ARTICLE_PRICE, title: a.title } : null;
      },
    },
  });
  const app = new Koa();
  app.use(mw);
  // No router, to keep the example to Koa itself: two routes by hand.
  app.use((ctx) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return; // Koa answers 404
    if (ctx.path === '/') {
      ctx.body = {
        name: 'News Site',
        articles: Object.entries(ARTICLES).map(([id, a]) => ({
          url: `/articles/${id}`,
          title: a.title,
          price: ARTICLE_PRICE,
        })),
      };
      return;
    }
    const m = ARTICLE_PATH.exec(ctx.path);
    if (!m) return;
    const id = m[1]!;
    const a = ARTICLES[id];
    if (!a) {
      ctx.status = 404;
      ctx.body = { error: 'not_found', message: 'There is no such article.' };
      return;
    }
    // Who paid, and how (an order, or the receipt of an earlier one).
    const paid = ctx.state.micropay as PaymentInfo | undefined;
    ctx.body = { id, title: a.title, body: a.body, paidBy: paid?.buyer ?? null, via: paid?.kind ?? null };
  });
  return Object.assign(app, { micropay: mw });
}
