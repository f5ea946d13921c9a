/**
 * The merchant's price table: `prices` and `manifest` options compiled once at
 * construction into an ordered list of matchers (first match wins), and the
 * per-request lookup that turns a request into a price, or `null` for free.
 */
import type { IncomingMessage } from 'node:http';
import { loadManifest, type PriceManifest, parseManifest } from '../compile/manifest.js';
import { type CompiledMatch, compileMatch } from '../compile/match.js';
import { isMicropayError, MicropayError } from '../protocol/errors.js';
import { type Money, parsePrice } from '../protocol/money.js';

/** What a price function sees. */
export interface PriceContext {
  req: IncomingMessage;
  method: string;
  /** The request target as received (path and query). */
  target: string;
  /** `:param` values of the matched pattern (`*` holds the rest of the path). */
  params: Record<string, string>;
}

/** A price as people write it: `"0.002 USD"`, `"$0.002"` or `{ amt, cur }` in micro-units. */
export type PriceInput = string | Money;

/** A function that prices a request when it arrives; `null` makes it free. */
export type PriceFunction = (
  ctx: PriceContext,
) => PriceInput | PricedRoute | null | Promise<PriceInput | PricedRoute | null>;

/** A priced route with its details. */
export interface PricedRoute {
  price: PriceInput;
  /** Seconds the receipt lets the buyer fetch the resource again (offer `dur`). Default: `receipts.duration`. */
  duration?: number;
  /** Shown to the buyer. */
  title?: string;
  /** Shown on the paywall page. */
  description?: string;
}

/** One entry of the `prices` option. */
export type PriceSpec = PriceInput | PricedRoute | PriceFunction | null;

/** A resolved price for one request. */
export interface ResolvedPrice {
  price: Money;
  duration: number;
  title?: string;
  description?: string;
  /** The `"METHOD /pattern"` that matched. */
  route: string;
}

type Entry =
  | { matcher: CompiledMatch; kind: 'free' }
  | { matcher: CompiledMatch; kind: 'fixed'; resolved: ResolvedPrice }
  | { matcher: CompiledMatch; kind: 'fn'; fn: PriceFunction; defaults: Omit<ResolvedPrice, 'price'> };

function optionError(message: string): MicropayError {
  return new MicropayError('invalid_option', message);
}

function checkDuration(d: unknown, where: string): number | undefined {
  if (d === undefined) return undefined;
  if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
    throw optionError(
      `${where}: duration must be a whole number of seconds (>= 0), got ${JSON.stringify(d)}.`,
    );
  }
  return d;
}

function resolve(
  spec: PriceInput | PricedRoute,
  route: string,
  defaultDuration: number,
  where: string,
): ResolvedPrice {
  const isRoute = typeof spec === 'object' && spec !== null && 'price' in spec;
  const priced = isRoute ? (spec as PricedRoute) : { price: spec as PriceInput };
  let price: Money;
  try {
    price = parsePrice(priced.price);
  } catch (e) {
    throw isMicropayError(e) ? new MicropayError(e.code, `${where}: ${e.message}`) : e;
  }
  const r: ResolvedPrice = {
    price,
    duration: checkDuration(priced.duration, where) ?? defaultDuration,
    route,
  };
  if (priced.title !== undefined) r.title = String(priced.title);
  if (priced.description !== undefined) r.description = String(priced.description);
  return r;
}

/** Options the price table is built from. */
export interface PriceTableOptions {
  prices?: Record<string, PriceSpec>;
  manifest?: string | PriceManifest;
  dynamicPrices?: Record<string, PriceFunction>;
  defaultDuration: number;
}

/** The compiled price table. */
export class PriceTable {
  private readonly entries: Entry[] = [];

  constructor(o: PriceTableOptions) {
    for (const [pattern, spec] of Object.entries(o.prices ?? {})) {
      const where = `prices[${JSON.stringify(pattern)}]`;
      let matcher: CompiledMatch;
      try {
        matcher = compileMatch(pattern);
      } catch (e) {
        throw optionError(`${where}: ${(e as Error).message}.`);
      }
      if (spec === null) this.entries.push({ matcher, kind: 'free' });
      else if (typeof spec === 'function') {
        this.entries.push({
          matcher,
          kind: 'fn',
          fn: spec,
          defaults: { duration: o.defaultDuration, route: matcher.match },
        });
      } else if (typeof spec === 'string' || (typeof spec === 'object' && spec !== null)) {
        this.entries.push({
          matcher,
          kind: 'fixed',
          resolved: resolve(spec, matcher.match, o.defaultDuration, where),
        });
      } else {
        throw optionError(
          `${where}: expected a price string, { price, duration, title }, a function or null.`,
        );
      }
    }
    if (o.manifest !== undefined) {
      const m =
        typeof o.manifest === 'string'
          ? loadManifest(o.manifest)
          : parseManifest(o.manifest, 'manifest option');
      for (const r of m.routes) {
        const matcher = compileMatch(r.match);
        const where = `manifest route ${JSON.stringify(r.match)}`;
        if (r.dynamic !== undefined) {
          const fn = o.dynamicPrices?.[r.dynamic];
          if (!fn)
            throw optionError(
              `${where} needs a price function: pass dynamicPrices: { ${r.dynamic}: (ctx) => ... }.`,
            );
          const defaults: Omit<ResolvedPrice, 'price'> = {
            duration: r.duration ?? o.defaultDuration,
            route: matcher.match,
          };
          if (r.title !== undefined) defaults.title = r.title;
          this.entries.push({ matcher, kind: 'fn', fn, defaults });
        } else {
          const spec: PricedRoute = { price: { amt: r.amt, cur: r.cur } };
          if (r.duration !== undefined) spec.duration = r.duration;
          if (r.title !== undefined) spec.title = r.title;
          this.entries.push({
            matcher,
            kind: 'fixed',
            resolved: resolve(spec, matcher.match, o.defaultDuration, where),
          });
        }
      }
    }
  }

  /** True when nothing is priced. */
  get empty(): boolean {
    return this.entries.every((e) => e.kind === 'free');
  }

  /** The price of a request, or `null` when it is free. May be a promise for function prices. */
  lookup(
    req: IncomingMessage,
    method: string,
    target: string,
  ): ResolvedPrice | null | Promise<ResolvedPrice | null> {
    for (const e of this.entries) {
      const params = e.matcher.test(method, target);
      if (!params) continue;
      if (e.kind === 'free') return null;
      if (e.kind === 'fixed') return e.resolved;
      const out = e.fn({ req, method, target, params });
      const finish = (v: PriceInput | PricedRoute | null): ResolvedPrice | null => {
        if (v === null || v === undefined) return null;
        const r = resolve(v, e.defaults.route, e.defaults.duration, `price function of ${e.defaults.route}`);
        if (r.title === undefined && e.defaults.title !== undefined) r.title = e.defaults.title;
        return r;
      };
      return out instanceof Promise ? out.then(finish) : finish(out);
    }
    return null;
  }
}
