/**
 * The compiler's core over a whole site, without the file system: pages go in
 * (`add`), prices are settled across all of them at once (`resolve`: page
 * markup, then rules, then prices left by an earlier compile; conflicts are
 * errors naming both places), then each page is spliced (`render`) and the
 * manifest is built (`manifest`). `compile.ts` drives it over a directory.
 */
import { MicropayError } from '../protocol/errors.js';
import { formatMoney, type Money } from '../protocol/money.js';
import {
  analysePage,
  type LinkPricing,
  linkAttributes,
  type PageAnalysis,
  type PageLink,
  renderPage,
} from './html.js';
import { type ManifestRoute, type PriceManifest, parseManifest } from './manifest.js';
import { exactRouteProblem } from './match.js';
import { type CompiledRule, findRule } from './rules.js';

/** A problem or warning, at a place: `"site/blog/post.html:12:5"`, `"prices.yaml:3:3"`. */
export interface CompileIssue {
  /** Stable code: `price_conflict`, `invalid_price`, `unpriceable_link` ... */
  code: string;
  /** `file:line:col` of the problem. */
  source: string;
  /** A sentence saying what is wrong. */
  message: string;
}

/**
 * Thrown when pages cannot be compiled; `problems` lists every problem found,
 * not only the first. Its code is the problems' code when they share one
 * (`price_conflict`, `invalid_price`), else `compile_failed`.
 */
export class CompileError extends MicropayError {
  readonly problems: CompileIssue[];
  constructor(problems: CompileIssue[]) {
    const shown = problems.slice(0, 20).map((p) => `  ${p.source}: ${p.message}`);
    if (problems.length > 20) shown.push(`  ... and ${problems.length - 20} more`);
    const codes = new Set(problems.map((p) => p.code));
    super(
      codes.size === 1 ? [...codes][0]! : 'compile_failed',
      `Cannot compile: ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${shown.join('\n')}`,
    );
    this.name = 'MicropayError';
    this.problems = problems;
  }
}

/** Options of `SiteCompiler`. */
export interface SiteCompilerOptions {
  /** Compiled rules, tried in order. */
  rules: readonly CompiledRule[];
  /** Merchant id written on every priced link. */
  merchant?: string;
  /** `src` of the wallet script tag. */
  walletScript: string;
  /** URL the site root is served at; its path ends with `/`. */
  siteUrl: URL;
  /** Prefix of the page paths in sources, e.g. `"site/"` (may be empty). */
  label: string;
}

/** A page added to the compiler. */
export interface SitePage {
  /** Path inside the site, `/`-separated: `"blog/post.html"`. */
  path: string;
  analysis: PageAnalysis;
  /** The attributes of each priced link, after `resolve`. */
  priced: Map<PageLink, Array<[string, string]>>;
}

interface RouteAcc {
  match: string;
  money?: Money;
  dynamic?: string;
  priceSource: string;
  duration?: number;
  durationSource?: string;
  title?: string;
  textTitle?: string;
  sources: string[];
}

function describe(p: { money?: Money; dynamic?: string }): string {
  return p.money ? formatMoney(p.money.amt, p.money.cur) : `dynamic "${p.dynamic}"`;
}

function samePrice(a: { money?: Money; dynamic?: string }, b: { money?: Money; dynamic?: string }): boolean {
  if (a.money && b.money) return a.money.amt === b.money.amt && a.money.cur === b.money.cur;
  return a.dynamic !== undefined && a.dynamic === b.dynamic;
}

function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

/** Settles prices across pages and splices them; see the file header. */
export class SiteCompiler {
  readonly pages: SitePage[] = [];
  private readonly problems: CompileIssue[] = [];
  readonly warnings: CompileIssue[] = [];
  private readonly exact = new Map<string, RouteAcc>();
  private readonly fallback = new Map<string, RouteAcc>();
  private readonly ruleSources = new Map<CompiledRule, string[]>();
  private resolved = false;
  private built: PriceManifest | undefined;

  constructor(private readonly options: SiteCompilerOptions) {}

  /** Where a place in a page is, for messages and the manifest. */
  where(page: SitePage | string, link: { line: number; col: number }): string {
    const path = typeof page === 'string' ? page : page.path;
    return `${this.options.label}${path}:${link.line}:${link.col}`;
  }

  /** Parses one page; `path` is its place in the site, `/`-separated. */
  add(path: string, text: string): SitePage {
    const pageUrl = new URL(encodePath(path), this.options.siteUrl);
    const analysis = analysePage(text, { pageUrl, walletScript: this.options.walletScript });
    const page: SitePage = { path, analysis, priced: new Map() };
    for (const e of analysis.errors)
      this.problems.push({ code: 'invalid_price', source: this.where(path, e), message: e.message });
    for (const w of analysis.warnings) {
      this.warnings.push({ code: 'unpriceable_link', source: this.where(path, w), message: w.message });
    }
    this.pages.push(page);
    return page;
  }

  private accumulate(
    map: Map<string, RouteAcc>,
    key: string,
    pricing: LinkPricing,
    source: string,
    text: string,
  ): RouteAcc {
    let acc = map.get(key);
    if (!acc) {
      acc = { match: key, priceSource: source, sources: [] };
      if (pricing.money) acc.money = pricing.money;
      else acc.dynamic = pricing.dynamic!;
      map.set(key, acc);
    } else if (!samePrice(acc, pricing)) {
      this.problems.push({
        code: 'price_conflict',
        source,
        message: `${key} is priced ${describe(acc)} at ${acc.priceSource} but ${describe(pricing)} at ${source}`,
      });
    }
    if (pricing.duration !== undefined) {
      if (acc.duration === undefined) {
        acc.duration = pricing.duration;
        acc.durationSource = source;
      } else if (acc.duration !== pricing.duration) {
        this.problems.push({
          code: 'price_conflict',
          source,
          message: `${key} has duration ${acc.duration} at ${acc.durationSource} but ${pricing.duration} at ${source}`,
        });
      }
    }
    if (pricing.title !== undefined && acc.title === undefined) acc.title = pricing.title;
    if (acc.textTitle === undefined && text !== '') acc.textTitle = text;
    acc.sources.push(source);
    return acc;
  }

  private accPricing(acc: RouteAcc): LinkPricing {
    const p: LinkPricing = acc.money ? { money: acc.money } : { dynamic: acc.dynamic! };
    if (acc.duration !== undefined) p.duration = acc.duration;
    const title = acc.title ?? acc.textTitle;
    if (title !== undefined) p.title = title;
    return p;
  }

  /**
   * Settles every link's price. Throws `CompileError` listing all problems:
   * invalid markup, and a URL priced twice differently (naming both places).
   */
  resolve(): void {
    if (this.resolved) return;
    this.resolved = true;
    const choice = new Map<PageLink, { pricing: LinkPricing; target: string }>();

    // 1. Page markup: exact routes, which win over rules everywhere they are linked.
    for (const page of this.pages) {
      for (const link of page.analysis.links) {
        if (!link.markup || link.target === null) continue;
        const source = this.where(page, link);
        const problem = exactRouteProblem(link.target);
        if (problem) {
          this.warnings.push({
            code: 'unpriceable_link',
            source,
            message: `${link.target} cannot be priced: ${problem}`,
          });
          continue;
        }
        this.accumulate(this.exact, `GET ${link.target}`, link.markup, source, link.text);
      }
    }
    for (const page of this.pages) {
      for (const link of page.analysis.links) {
        if (!link.markup || link.target === null) continue;
        const acc = this.exact.get(`GET ${link.target}`);
        if (acc) choice.set(link, { pricing: this.accPricing(acc), target: link.target });
      }
    }

    // 2. Unmarked links: a URL priced by markup elsewhere, else the first rule, else an earlier compile's price.
    const fallbackLinks: Array<[PageLink, string]> = [];
    for (const page of this.pages) {
      for (const link of page.analysis.links) {
        if (link.markup || link.target === null || link.fragmentOnly) continue;
        const source = this.where(page, link);
        const acc = this.exact.get(`GET ${link.target}`);
        if (acc) {
          acc.sources.push(source);
          choice.set(link, { pricing: this.accPricing(acc), target: link.target });
          continue;
        }
        const rule = findRule(this.options.rules, 'GET', link.target);
        if (rule) {
          const pricing: LinkPricing = rule.money ? { money: rule.money } : { dynamic: rule.dynamic! };
          if (rule.duration !== undefined) pricing.duration = rule.duration;
          const title = rule.title ?? link.text;
          if (title !== '') pricing.title = title;
          choice.set(link, { pricing, target: link.target });
          const list = this.ruleSources.get(rule) ?? [];
          list.push(source);
          this.ruleSources.set(rule, list);
          continue;
        }
        if (link.compiled && exactRouteProblem(link.target) === null) {
          this.accumulate(this.fallback, `GET ${link.target}`, link.compiled, source, '');
          fallbackLinks.push([link, link.target]);
        }
      }
    }
    for (const [link, target] of fallbackLinks) {
      choice.set(link, { pricing: this.accPricing(this.fallback.get(`GET ${target}`)!), target });
    }

    if (this.problems.length > 0) throw new CompileError(this.problems);

    for (const page of this.pages) {
      for (const link of page.analysis.links) {
        const c = choice.get(link);
        if (!c) continue;
        const attrs = linkAttributes(c.pricing, c.target, this.options.merchant, (m) =>
          formatMoney(m.amt, m.cur),
        );
        page.priced.set(link, attrs);
      }
    }
  }

  /** The page's new text (call after `resolve`). `ascii` escapes non-ASCII in new values. */
  render(page: SitePage, text: string, ascii = false): string {
    if (!this.resolved) throw new Error('SiteCompiler.render called before resolve');
    return renderPage(text, page.analysis, page.priced, ascii);
  }

  /** Number of links priced over all pages (after `resolve`). */
  get linksPriced(): number {
    return this.pages.reduce((n, p) => n + p.priced.size, 0);
  }

  /** The price manifest: exact routes of the pages first, then the rules in order. */
  manifest(): PriceManifest {
    if (!this.resolved) throw new Error('SiteCompiler.manifest called before resolve');
    if (this.built) return this.built;
    const routes: ManifestRoute[] = [];
    const fromAcc = (acc: RouteAcc): ManifestRoute => {
      const extra: { duration?: number; title?: string; sources: string[] } = { sources: acc.sources };
      if (acc.duration !== undefined) extra.duration = acc.duration;
      const title = acc.title ?? acc.textTitle;
      if (title !== undefined) extra.title = title;
      return acc.money
        ? {
            match: acc.match,
            price: formatMoney(acc.money.amt, acc.money.cur),
            ...acc.money,
            ...ordered(extra),
          }
        : { match: acc.match, dynamic: acc.dynamic!, ...ordered(extra) };
    };
    for (const acc of this.exact.values()) routes.push(fromAcc(acc));
    for (const acc of this.fallback.values()) routes.push(fromAcc(acc));
    const taken = new Map(routes.map((r) => [r.match, r.sources?.[0] ?? '']));
    for (const rule of this.options.rules) {
      const match = rule.matcher.match;
      if (taken.has(match)) {
        this.warnings.push({
          code: 'shadowed_rule',
          source: rule.source,
          message: `rule ${match} is never used: ${taken.get(match)} prices the same URL`,
        });
        continue;
      }
      const extra: { duration?: number; title?: string; sources: string[] } = {
        sources: [rule.source, ...(this.ruleSources.get(rule) ?? [])],
      };
      if (rule.duration !== undefined) extra.duration = rule.duration;
      if (rule.title !== undefined) extra.title = rule.title;
      routes.push(
        rule.money
          ? { match, price: formatMoney(rule.money.amt, rule.money.cur), ...rule.money, ...ordered(extra) }
          : { match, dynamic: rule.dynamic!, ...ordered(extra) },
      );
      taken.set(match, rule.source);
    }
    // Self-check: what the compiler writes, the middleware must accept.
    this.built = parseManifest({ micropay: 'manifest', version: 1, routes }, 'compiled manifest');
    return this.built;
  }
}

function ordered(extra: { duration?: number; title?: string; sources: string[] }): {
  duration?: number;
  title?: string;
  sources: string[];
} {
  const out: { duration?: number; title?: string; sources: string[] } = {} as { sources: string[] };
  if (extra.duration !== undefined) out.duration = extra.duration;
  if (extra.title !== undefined) out.title = extra.title;
  out.sources = extra.sources;
  return out;
}
