/**
 * One HTML page: finds its links with parse5 (source locations on), reads the
 * price markup they carry, and splices new attributes into their start tags
 * in the original text. Every byte outside the rewritten start tags is kept,
 * except for the one wallet script tag this inserts.
 *
 * Markup read from the page:
 * - `data-price="0.02 USD"` (also `"$0.02"`, `"€0.02"`, `"£0.02"`),
 *   `data-duration="86400"` (seconds), `data-title="..."` on `<a href>` and
 *   `<area href>`.
 *
 * Markup written, after the W3C "Common Markup for micropayment
 * per-fee-links" draft (1999), whose fields `price`, `requesturl`,
 * `merchantname`, `duration` and `title` map to `data-` attributes here,
 * plus the exact micro-units so that no script parses a decimal string:
 * - `data-micropay-price="0.02 USD"`: the price as people read it (fixed routes).
 * - `data-micropay-amt="20000"`, `data-micropay-cur="USD"`: the same in
 *   micro-units (fixed routes).
 * - `data-micropay-dynamic="livePrice"`: instead of the three above, for a
 *   price computed at request time; the wallet learns it from the 402 offer.
 * - `data-micropay-requesturl="/articles/42?x=1"`: the path and query the
 *   browser will request, resolved against the page (W3C `requesturl`).
 * - `data-micropay-merchant="news-site"`: the merchant id (`mer` of the offer),
 *   when the compiler is given one (W3C `merchantname`).
 * - `data-micropay-duration="86400"`: seconds a receipt keeps the link paid.
 * - `data-micropay-title="Article 42"`: what is bought (W3C `title`).
 * The `href` is untouched, so the link works without scripts (the server
 * answers 402 with a paywall page). No `rel` is added: `rel="payment"` names
 * a link to a payment page, not a paid resource, and a page's own `rel`
 * values are left as they are. The page gets
 * `<script src="/_micropay/wallet.js" defer data-micropay-wallet></script>`
 * before `</head>` (or at the start of the body) when it has a priced link
 * and no `script[data-micropay-wallet]` yet.
 *
 * Recompiling removes the `data-micropay-*` attributes of a link and writes
 * them afresh at the same place, so compiling the output again changes nothing.
 */
import { type DefaultTreeAdapterTypes, parse } from 'parse5';
import { isCurrency, isPrice } from '../protocol/ids.js';
import type { Money } from '../protocol/money.js';
import { parsePrice } from '../protocol/money.js';
import { DYNAMIC_NAME, isDuration } from './manifest.js';

type Node = DefaultTreeAdapterTypes.Node;
type Element = DefaultTreeAdapterTypes.Element;

/** Prefix of every attribute the compiler writes. */
export const ATTR_PREFIX = 'data-micropay-';
/** Attribute marking the wallet script tag. */
export const WALLET_ATTR = 'data-micropay-wallet';

/** How a link is priced: a fixed price or a dynamic function, with optional duration and title. */
export interface LinkPricing {
  money?: Money;
  dynamic?: string;
  duration?: number;
  title?: string;
}

/** A problem found in a page, at a place in it. */
export interface PageIssue {
  line: number;
  col: number;
  message: string;
}

/** A link found in a page. */
export interface PageLink {
  /** 1-based line and column of its start tag. */
  line: number;
  col: number;
  /** Offsets of its start tag in the page text. */
  start: number;
  end: number;
  /** Path and query the link requests on this site, or `null` (other origin, other scheme, no href). */
  target: string | null;
  /** True for an `href` that is empty or only a fragment (`#top`), a link to the page itself: never priced by a rule. */
  fragmentOnly: boolean;
  /** Price markup of the page (`data-price` ...), when present and valid. */
  markup?: LinkPricing;
  /** Price left by an earlier compile (`data-micropay-*`), when present and complete. */
  compiled?: LinkPricing;
  /** The link's text, whitespace collapsed, at most 120 characters. */
  text: string;
  /** Where the new attributes go. */
  insertAt: number;
  /** Spans of old `data-micropay-*` attributes, with the whitespace before them. */
  remove: Array<[number, number]>;
}

/** What `analysePage` finds in a page. */
export interface PageAnalysis {
  links: PageLink[];
  /** Where and what to insert for the wallet script, when the page needs one and has none. */
  walletInsert: { offset: number; text: string } | null;
  /** Invalid price markup: errors. */
  errors: PageIssue[];
  /** Markup that cannot take effect (a price on a link to another site ...): warnings. */
  warnings: PageIssue[];
}

/** Options of `analysePage`. */
export interface AnalyseOptions {
  /** Absolute URL the page is served at, e.g. `https://site.invalid/blog/post.html`. */
  pageUrl: URL;
  /** `src` of the wallet script tag to insert. */
  walletScript: string;
}

function* elements(node: Node): Generator<Element> {
  if ('tagName' in node) yield node;
  if ('childNodes' in node) for (const child of node.childNodes) yield* elements(child);
  if ('content' in node && node.content) yield* elements(node.content);
}

function attr(el: Element, name: string): string | undefined {
  return el.attrs.find((a) => a.name === name && a.namespace === undefined)?.value;
}

function textOf(el: Element): string {
  let out = '';
  const walk = (n: Node) => {
    if (n.nodeName === '#text' && 'value' in n) out += n.value;
    else if ('childNodes' in n && n.nodeName !== 'script' && n.nodeName !== 'style')
      n.childNodes.forEach(walk);
  };
  walk(el);
  const t = out.replace(/\s+/g, ' ').trim();
  return t.length > 120 ? `${t.slice(0, 119)}…` : t;
}

const WS = new Set([' ', '\t', '\n', '\r', '\f']);

/** Escapes an attribute value for a double-quoted attribute; `ascii` also escapes every non-ASCII character. */
export function escapeAttr(value: string, ascii = false): string {
  const s = value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return ascii ? asciiRefs(s) : s;
}

/** Replaces every non-ASCII character by a numeric character reference. */
function asciiRefs(s: string): string {
  return s.replace(/[^\x00-\x7e]/gu, (c) => `&#x${c.codePointAt(0)!.toString(16)};`);
}

function siteTarget(href: string, base: URL, pageUrl: URL): string | null {
  let url: URL;
  try {
    url = new URL(href, base);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (url.origin !== pageUrl.origin) return null;
  return url.pathname + url.search;
}

function readMarkup(el: Element, issues: string[]): LinkPricing | undefined {
  const price = attr(el, 'data-price');
  if (price === undefined) return undefined;
  const out: LinkPricing = {};
  try {
    out.money = parsePrice(price);
  } catch (e) {
    issues.push(`data-price ${JSON.stringify(price)} is not a price: ${(e as Error).message}`);
  }
  const duration = attr(el, 'data-duration');
  if (duration !== undefined) {
    const n = /^\s*\d{1,10}\s*$/.test(duration) ? Number(duration) : Number.NaN;
    if (isDuration(n)) out.duration = n;
    else issues.push(`data-duration ${JSON.stringify(duration)} is not a whole number of seconds`);
  }
  const title = attr(el, 'data-title');
  if (title !== undefined && title.trim() !== '') out.title = title.trim();
  return out.money ? out : undefined;
}

function readCompiled(el: Element): LinkPricing | undefined {
  const get = (k: string) => attr(el, ATTR_PREFIX + k);
  const out: LinkPricing = {};
  const dynamic = get('dynamic');
  const amt = Number(get('amt'));
  const cur = get('cur');
  if (dynamic !== undefined && DYNAMIC_NAME.test(dynamic)) out.dynamic = dynamic;
  else if (isPrice(amt) && isCurrency(cur)) out.money = { amt, cur };
  else return undefined;
  const duration = get('duration');
  if (duration !== undefined && /^\d{1,10}$/.test(duration) && isDuration(Number(duration)))
    out.duration = Number(duration);
  const title = get('title');
  if (title !== undefined && title !== '') out.title = title;
  return out;
}

/** Offset just past the tag name of the start tag at `start`. */
function tagNameEnd(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length && !WS.has(text[i]!) && text[i] !== '/' && text[i] !== '>') i++;
  return i;
}

function lineStart(text: string, offset: number): { start: number; indent: string } | null {
  let i = offset;
  while (i > 0 && (text[i - 1] === ' ' || text[i - 1] === '\t')) i--;
  if (i > 0 && text[i - 1] !== '\n') return null;
  return { start: i, indent: text.slice(i, offset) };
}

function newlineAt(text: string, lineStartOffset: number): string {
  return text[lineStartOffset - 2] === '\r' ? '\r\n' : '\n';
}

function walletInsertion(text: string, all: Element[], tag: string): { offset: number; text: string } {
  const head = all.find((e) => e.tagName === 'head' && e.sourceCodeLocation?.endTag);
  const endTag = head?.sourceCodeLocation?.endTag;
  if (head && endTag) {
    const line = lineStart(text, endTag.startOffset);
    if (line && line.start > 0) {
      // Indent like the head's last child that starts a line, else like </head>.
      let indent = line.indent;
      const kids = head.childNodes.filter((c): c is Element => 'tagName' in c && !!c.sourceCodeLocation);
      const last = kids[kids.length - 1];
      const lastLine = last ? lineStart(text, last.sourceCodeLocation!.startOffset) : null;
      if (lastLine) indent = lastLine.indent;
      return { offset: line.start, text: `${indent}${tag}${newlineAt(text, line.start)}` };
    }
    return { offset: endTag.startOffset, text: tag };
  }
  const body = all.find((e) => e.tagName === 'body');
  const bodyStart = body?.sourceCodeLocation?.startTag;
  if (bodyStart) {
    const at = bodyStart.endOffset;
    const nl = text.startsWith('\r\n', at) ? '\r\n' : text[at] === '\n' ? '\n' : '';
    if (nl) {
      // A line of its own, indented like the line after <body>.
      let i = at + nl.length;
      while (text[i] === ' ' || text[i] === '\t') i++;
      return { offset: at + nl.length, text: `${text.slice(at + nl.length, i)}${tag}${nl}` };
    }
    return { offset: at, text: tag };
  }
  // No <head> end tag and no <body> start tag (a fragment): before the body's first located node.
  const first = body?.childNodes.find((c) => c.sourceCodeLocation);
  // Never before a byte order mark: it must stay the first character.
  const offset = Math.max(first?.sourceCodeLocation?.startOffset ?? 0, text.startsWith('\uFEFF') ? 1 : 0);
  const line = lineStart(text, offset);
  if (line) {
    const nl = text.includes('\r\n') ? '\r\n' : '\n';
    return { offset: line.start, text: `${line.indent}${tag}${nl}` };
  }
  return { offset, text: tag };
}

/**
 * Parses a page and finds its links, their price markup, and where the
 * wallet script would go. Pure: reads nothing but `text`.
 */
export function analysePage(text: string, options: AnalyseOptions): PageAnalysis {
  const doc = parse(text, { sourceCodeLocationInfo: true });
  const all = [...elements(doc)];
  const errors: PageIssue[] = [];
  const warnings: PageIssue[] = [];
  const baseEl = all.find((e) => e.tagName === 'base' && attr(e, 'href') !== undefined);
  let base = options.pageUrl;
  if (baseEl) {
    try {
      base = new URL(attr(baseEl, 'href')!.trim(), options.pageUrl);
    } catch {
      // An unusable <base href> is ignored, as browsers do.
    }
  }

  const links: PageLink[] = [];
  const seen = new Set<number>();
  let hasWallet = false;
  for (const el of all) {
    if (el.tagName === 'script' && attr(el, WALLET_ATTR) !== undefined) hasWallet = true;
    if (el.tagName !== 'a' && el.tagName !== 'area') continue;
    if (el.namespaceURI !== 'http://www.w3.org/1999/xhtml') continue;
    const loc = el.sourceCodeLocation?.startTag;
    // Elements the parser recreated (misnested formatting tags) have no location: the original is enough.
    if (!loc || seen.has(loc.startOffset)) continue;
    seen.add(loc.startOffset);
    const issues: string[] = [];
    const markup = readMarkup(el, issues);
    for (const message of issues) errors.push({ line: loc.startLine, col: loc.startCol, message });
    const compiled = readCompiled(el);
    const href = attr(el, 'href');
    const target = href === undefined ? null : siteTarget(href.trim(), base, options.pageUrl);
    if (attr(el, 'data-price') !== undefined && target === null) {
      warnings.push({
        line: loc.startLine,
        col: loc.startCol,
        message:
          href === undefined
            ? 'data-price on a link without href is ignored'
            : `data-price on ${JSON.stringify(href)} is ignored: only links to this site can be priced`,
      });
    }
    if (target === null && !markup && !compiled) continue;
    const attrLocs = el.sourceCodeLocation?.attrs ?? {};
    const remove: Array<[number, number]> = [];
    let insertAt = tagNameEnd(text, loc.startOffset);
    for (const [name, a] of Object.entries(attrLocs)) {
      if (name.startsWith(ATTR_PREFIX)) {
        let s = a.startOffset;
        while (s > loc.startOffset && WS.has(text[s - 1]!)) s--;
        remove.push([s, a.endOffset]);
      } else if (a.endOffset > insertAt) {
        insertAt = a.endOffset;
      }
    }
    const link: PageLink = {
      line: loc.startLine,
      col: loc.startCol,
      start: loc.startOffset,
      end: loc.endOffset,
      target,
      fragmentOnly: href !== undefined && (href.trim() === '' || href.trim().startsWith('#')),
      text: textOf(el),
      insertAt,
      remove,
    };
    if (markup) link.markup = markup;
    if (compiled) link.compiled = compiled;
    links.push(link);
  }
  const tag = `<script src="${escapeAttr(options.walletScript)}" defer ${WALLET_ATTR}></script>`;
  return { links, walletInsert: hasWallet ? null : walletInsertion(text, all, tag), errors, warnings };
}

/** The attributes a priced link gets, in order. */
export function linkAttributes(
  pricing: LinkPricing,
  target: string,
  merchant: string | undefined,
  formatPrice: (m: Money) => string,
): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (pricing.money) {
    out.push(['price', formatPrice(pricing.money)]);
    out.push(['amt', String(pricing.money.amt)]);
    out.push(['cur', pricing.money.cur]);
  } else if (pricing.dynamic) {
    out.push(['dynamic', pricing.dynamic]);
  }
  out.push(['requesturl', target]);
  if (merchant !== undefined) out.push(['merchant', merchant]);
  if (pricing.duration !== undefined) out.push(['duration', String(pricing.duration)]);
  if (pricing.title !== undefined && pricing.title !== '') out.push(['title', pricing.title]);
  return out.map(([k, v]) => [ATTR_PREFIX + k, v]);
}

/**
 * Splices a page: each link in `priced` gets its old `data-micropay-*`
 * attributes removed and `attrs` written after its last other attribute;
 * the wallet script goes in when at least one link is priced. `ascii`
 * escapes non-ASCII characters of the new values (for pages not in UTF-8).
 */
export function renderPage(
  text: string,
  analysis: PageAnalysis,
  priced: ReadonlyMap<PageLink, Array<[string, string]>>,
  ascii = false,
): string {
  type Edit = { at: number; end: number; text: string; order: number };
  const edits: Edit[] = [];
  for (const [link, attrs] of priced) {
    for (const [s, e] of link.remove) edits.push({ at: s, end: e, text: '', order: 1 });
    const added = attrs.map(([k, v]) => ` ${k}="${escapeAttr(v, ascii)}"`).join('');
    edits.push({ at: link.insertAt, end: link.insertAt, text: added, order: 0 });
  }
  if (priced.size > 0 && analysis.walletInsert) {
    const w = analysis.walletInsert;
    edits.push({ at: w.offset, end: w.offset, text: ascii ? asciiRefs(w.text) : w.text, order: 0 });
  }
  edits.sort((a, b) => a.at - b.at || a.order - b.order);
  let out = '';
  let pos = 0;
  for (const e of edits) {
    out += text.slice(pos, e.at) + e.text;
    pos = Math.max(pos, e.end, e.at);
  }
  return out + text.slice(pos);
}
