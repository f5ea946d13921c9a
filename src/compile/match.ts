/**
 * Route patterns of the price manifest and the rules file: `"METHOD /path"`
 * strings, compiled once into matchers. The compiler, the middleware and the
 * proxy all match through this file so that a URL is priced by the same
 * route everywhere.
 *
 * Syntax of the path part:
 * - `/articles/42`: that path exactly (case-sensitive, not normalised; the
 *   query of the request is ignored).
 * - `/articles/:id`: `:name` as a whole segment matches one non-empty segment.
 * - `/live/*`: a trailing `*` matches the rest of the path, slashes included,
 *   and may be empty (`/live/` matches, `/live` does not).
 * - `/search?q=cats`: a pattern with a query is literal and is compared with
 *   the whole request target (path and query) exactly.
 */

/** A `"METHOD /path"` string compiled for matching. */
export interface CompiledMatch {
  /** The normalised source string, `"GET /articles/:id"`. */
  readonly match: string;
  /** Upper-case request method, `"GET"`. */
  readonly method: string;
  /** The path pattern, `"/articles/:id"`. */
  readonly pattern: string;
  /** True when the pattern has no `:param`, no `*` and may carry a query: it matches one target only. */
  readonly exact: boolean;
  /**
   * Tests a request: `target` is the request target as received (path and
   * optional query). Returns the `:param` values (`*` as `"*"`), or `null`.
   */
  test(method: string, target: string): Record<string, string> | null;
}

const METHOD = /^[A-Z]{1,20}$/;
const PARAM = /^:([A-Za-z_][A-Za-z0-9_]*)$/;

/** Why a pattern string is not valid; thrown by `compileMatch`, turned into coded errors by callers. */
export class PatternError extends Error {
  override name = 'PatternError';
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Compiles `"METHOD /path-pattern"`. When `defaultMethod` is given the method
 * may be left out (`"/articles/*"` in a rules file means `GET`).
 * Throws `PatternError` with a sentence saying what is wrong.
 * @example compileMatch('GET /articles/:id').test('GET', '/articles/42?x=1') // { id: '42' }
 */
export function compileMatch(input: string, defaultMethod?: string): CompiledMatch {
  const text = input.trim();
  let method: string;
  let pattern: string;
  const space = text.indexOf(' ');
  if (space === -1) {
    if (defaultMethod === undefined)
      throw new PatternError('expected "METHOD /path", like "GET /articles/42"');
    method = defaultMethod;
    pattern = text;
  } else {
    method = text.slice(0, space);
    pattern = text.slice(space + 1);
    if (!METHOD.test(method))
      throw new PatternError(`the method ${JSON.stringify(method)} is not an upper-case HTTP method`);
  }
  if (!pattern.startsWith('/')) throw new PatternError('the path must start with "/"');
  if (/[\s#]/.test(pattern)) throw new PatternError('the path must not contain spaces or "#"');
  if (pattern.length > 2048) throw new PatternError('the path is longer than 2048 characters');
  const match = `${method} ${pattern}`;

  if (pattern.includes('?')) {
    return {
      match,
      method,
      pattern,
      exact: true,
      test: (m, t) => (m === method && t === pattern ? {} : null),
    };
  }

  const star = pattern.indexOf('*');
  if (star !== -1 && star !== pattern.length - 1) {
    throw new PatternError('"*" may only end the path, where it matches the rest of it');
  }
  const body = star === -1 ? pattern : pattern.slice(0, -1);
  const names: string[] = [];
  let source = '';
  const segments = body.split('/');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    if (i > 0) source += '/';
    const param = PARAM.exec(seg);
    if (param) {
      if (names.includes(param[1]!)) throw new PatternError(`the parameter ":${param[1]}" appears twice`);
      names.push(param[1]!);
      source += '([^/]+)';
    } else if (seg.startsWith(':')) {
      throw new PatternError(`${JSON.stringify(seg)} is not a valid ":name" parameter`);
    } else {
      source += escapeRegExp(seg);
    }
  }
  if (star !== -1) source += '(.*)';
  const exact = names.length === 0 && star === -1;
  const re = new RegExp(`^${source}$`, 's');
  return {
    match,
    method,
    pattern,
    exact,
    test(m, target) {
      if (m !== method) return null;
      const q = target.indexOf('?');
      const path = q === -1 ? target : target.slice(0, q);
      if (exact) return path === pattern ? {} : null;
      const hit = re.exec(path);
      if (!hit) return null;
      const params: Record<string, string> = {};
      names.forEach((n, i) => {
        params[n] = hit[i + 1]!;
      });
      if (star !== -1) params['*'] = hit[names.length + 1]!;
      return params;
    },
  };
}

/**
 * Why a request target (path and optional query, as a link requests it)
 * cannot be written as an exact route, or `null` when it can: a path with a
 * `:`-segment or a `*` but no query reads as a pattern, and a route is at
 * most 2048 characters.
 */
export function exactRouteProblem(target: string): string | null {
  if (target.length > 2048) return 'it is longer than 2048 characters';
  if (target.includes('?')) return null;
  if (target.includes('*') || target.split('/').some((seg) => seg.startsWith(':'))) {
    return 'its path reads as a pattern (":" segment or "*")';
  }
  return null;
}
