/**
 * The rules file of `micropay compile --rules prices.yaml`: URL patterns that
 * price links the pages do not mark themselves, with a fixed price or a
 * dynamic one computed per request by a function the merchant registers.
 *
 * ```yaml
 * - match: /articles/*          # path pattern, optional "METHOD " prefix, default GET
 *   price: 0.02 USD             # or "$0.02", "€0.02", "£0.02"
 *   duration: 86400             # optional: seconds a receipt stays valid
 *   title: Article              # optional
 * - match: /live/:feed
 *   dynamic: livePrice          # name of the merchant's price function
 * ```
 *
 * The first rule that matches a link prices it; `data-price` in the page wins
 * over every rule. Each rule also becomes a route of the manifest, so URLs no
 * page links to are priced all the same.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { isNode, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { MicropayError } from '../protocol/errors.js';
import { type Money, parsePrice } from '../protocol/money.js';
import { DYNAMIC_NAME, isDuration, MAX_DURATION } from './manifest.js';
import { type CompiledMatch, compileMatch, PatternError } from './match.js';

/** One rule as written in the rules file (or passed in code). */
export interface PriceRule {
  /** Path pattern with an optional `"METHOD "` prefix (default `GET`): `"/articles/*"`, `"POST /api/:id"`. */
  match: string;
  /** Fixed price, `"0.02 USD"`, `"$0.02"`, `"€0.02"`, `"£0.02"`, or `{ amt, cur }` in micro-units. */
  price?: string | Money;
  /** Name of the merchant's dynamic price function, instead of `price`. */
  dynamic?: string;
  /** Seconds a receipt lets the buyer fetch the URL again without paying. */
  duration?: number;
  /** What the buyer pays for, shown by the wallet. */
  title?: string;
}

/** A validated rule, ready for matching. */
export interface CompiledRule {
  matcher: CompiledMatch;
  /** Fixed price, or `undefined` for a dynamic rule. */
  money?: Money;
  dynamic?: string;
  duration?: number;
  title?: string;
  /** Where it was written, `"prices.yaml:3:3"`, or `"rules[2]"` for rules passed in code. */
  source: string;
}

const RULE_KEYS = new Set(['match', 'price', 'dynamic', 'duration', 'title']);

/** Validates one rule. `at` names it in messages; the error is `MicropayError` code `invalid_rules`. */
export function compileRule(raw: unknown, at: string, source = at): CompiledRule {
  const bad = (why: string, cause?: unknown) =>
    new MicropayError('invalid_rules', `Price rule at ${at}: ${why}.`, { cause });
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw bad('expected a mapping like { match: "/articles/*", price: "0.02 USD" }');
  }
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (!RULE_KEYS.has(key)) throw bad(`"${key}" is not a rule field (known: ${[...RULE_KEYS].join(', ')})`);
  }
  if (typeof r.match !== 'string') throw bad('"match" must be a path pattern like "/articles/*"');
  let matcher: CompiledMatch;
  try {
    matcher = compileMatch(r.match, 'GET');
  } catch (e) {
    if (e instanceof PatternError) throw bad(`"match" ${JSON.stringify(r.match)} is not valid: ${e.message}`);
    throw e;
  }
  const rule: CompiledRule = { matcher, source };
  if ((r.price === undefined) === (r.dynamic === undefined)) {
    throw bad('give exactly one of "price" (like "0.02 USD") and "dynamic" (a function name)');
  }
  if (r.price !== undefined) {
    try {
      rule.money = parsePrice(r.price);
    } catch (e) {
      throw bad(`"price" ${JSON.stringify(r.price)} is not a price like "0.02 USD"`, e);
    }
  } else if (typeof r.dynamic !== 'string' || !DYNAMIC_NAME.test(r.dynamic)) {
    throw bad(`"dynamic" must be a function name like "livePrice", got ${JSON.stringify(r.dynamic)}`);
  } else {
    rule.dynamic = r.dynamic;
  }
  if (r.duration !== undefined) {
    if (!isDuration(r.duration))
      throw bad(`"duration" must be a whole number of seconds from 0 to ${MAX_DURATION}`);
    rule.duration = r.duration;
  }
  if (r.title !== undefined) {
    if (typeof r.title !== 'string') throw bad('"title" must be a string');
    rule.title = r.title;
  }
  return rule;
}

/**
 * Parses the text of a rules file. `source` names it in messages and in the
 * manifest's `sources` (`"prices.yaml:3:3"`). Throws `MicropayError` code
 * `invalid_rules` with the line and column of the problem.
 * @example parseRules('- match: /articles/*\n  price: 0.02 USD\n', 'prices.yaml')
 */
export function parseRules(text: string, source: string): CompiledRule[] {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const where = (node: YamlNode | null | undefined): string => {
    const offset = node?.range?.[0] ?? 0;
    const { line, col } = lineCounter.linePos(offset);
    return `${source}:${line}:${col}`;
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const { line, col } = lineCounter.linePos(e.pos[0]);
    throw new MicropayError(
      'invalid_rules',
      `Rules file ${source}:${line}:${col} is not valid YAML: ${e.message}.`,
      {
        cause: e,
      },
    );
  }
  const root = doc.contents;
  if (root === null) return [];
  if (!isSeq(root)) {
    throw new MicropayError(
      'invalid_rules',
      `Rules file ${where(root)}: expected a list of rules ("- match: /articles/*" lines).`,
    );
  }
  const values = doc.toJS() as unknown[];
  return root.items.map((item, i) => {
    const at = where(isNode(item) ? item : root);
    return compileRule(values[i], at);
  });
}

/**
 * Reads and parses a rules file; messages and sources name it by its base name.
 * @example const rules = loadRules('prices.yaml');
 */
export function loadRules(path: string): CompiledRule[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new MicropayError('invalid_rules', `Rules file ${path} cannot be read: ${(e as Error).message}.`, {
      cause: e,
    });
  }
  return parseRules(text, basename(path));
}

/** The first rule whose pattern matches a GET of `target`, or `undefined`. */
export function findRule(
  rules: readonly CompiledRule[],
  method: string,
  target: string,
): CompiledRule | undefined {
  return rules.find((r) => r.matcher.test(method, target) !== null);
}
