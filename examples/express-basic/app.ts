/**
 * The smallest micropay merchant: an Express app with a free front page and
 * articles at 0.002 USD each. `createApp` builds it (so tests and the demo
 * can start it on any port with any billing server); `server.ts` runs it.
 */
import express, { type Express } from 'express';
import {
  type MicropayExpressMiddleware,
  type MicropayOptions,
  micropay,
} from '../../src/middleware/express.js';

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
export type ExampleApp = Express & { readonly micropay: MicropayExpressMiddleware };

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
  const app = express();
  app.disable('x-powered-by');
  app.use(mw);
  app.get('/', (_req, res) => {
    res.json({
      name: 'News Site',
      articles: Object.entries(ARTICLES).map(([id, a]) => ({
        url: `/articles/${id}`,
        title: a.title,
        price: ARTICLE_PRICE,
      })),
    });
  });
  app.get('/articles/:id', (req, res) => {
    const a = ARTICLES[req.params.id];
    if (!a) {
      res.status(404).json({ error: 'not_found', message: 'There is no such article.' });
      return;
    }
    const paid = req.micropay;
    res.json({
      id: req.params.id,
      title: a.title,
      body: a.body,
      paidBy: paid?.buyer ?? null,
      via: paid?.kind ?? null,
    });
  });
  return Object.assign(app, { micropay: mw });
}
