/**
 * The one request function of the billing client: JSON in and out, a
 * timeout per attempt, the bearer token, and retries with exponential
 * backoff and full jitter for the calls that may safely run twice (GET, and
 * deposits, which are idempotent by batch id). Every failure becomes a
 * `BillingError`; the token never reaches a message.
 */
import { BILLING_UNAVAILABLE, BillingError } from './errors.js';

/** HTTP methods the billing API uses. */
export type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

/**
 * `User-Agent` is sent from Node only: a browser that let it through would
 * need a CORS preflight allowance the billing server does not give.
 */
export const IS_NODE = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

/** Statuses worth another attempt (besides network errors and timeouts). */
const RETRY_STATUSES = new Set([429, 502, 503, 504]);

/** Fallback codes for error answers without a JSON `{ error, message }` body. */
const STATUS_CODES: Record<number, string> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  422: 'invalid_request',
};

/** The settled configuration of one client. */
export interface HttpConfig {
  /** Base URL, ending in `/`. */
  base: URL;
  token: string | undefined;
  timeoutMs: number;
  retries: number;
  retryBaseMs: number;
  retryMaxDelayMs: number;
  fetch: typeof fetch;
  userAgent: string;
}

/** One call. */
export interface Call {
  method: Method;
  /** Path below the base URL, without a leading `/`, path segments already encoded. */
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /** The body as JSON text already encoded (it wins over `body`): large deposits (`depositBody`). */
  json?: Uint8Array<ArrayBuffer>;
  /** Whether to retry it (GET and deposits only). */
  retry: boolean;
  /** Timeout per attempt, milliseconds. */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /**
   * Answer a success with its unread body (`Answer.body` is the web ReadableStream, or null):
   * for exports that must never be buffered. The timeout covers the wait for the status line;
   * `signal` still cancels the body afterwards.
   */
  raw?: boolean;
}

/** An answer: status and parsed JSON body (`undefined` for an empty body). */
export interface Answer {
  status: number;
  body: unknown;
  headers: Headers;
}

/** Full-jitter backoff: a random delay in [0, min(cap, base * 2^attempt)). */
export function backoffDelay(
  attempt: number,
  baseMs: number,
  capMs: number,
  random: () => number = Math.random,
): number {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** attempt));
}

/** `Retry-After` in seconds (delta form only; dates are ignored). */
function retryAfterOf(headers: Headers): number | undefined {
  const v = headers.get('retry-after');
  if (v === null || !/^\d{1,6}$/.test(v.trim())) return undefined;
  return Number(v.trim());
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Removes the token from text that came back from elsewhere (a server message echoing a header, say). */
function scrub(text: string, token: string | undefined): string {
  return token && token.length >= 4 ? text.split(token).join('[token]') : text;
}

/** `method path`, for messages. */
const label = (c: Call): string => `${c.method} /${c.path}`;

function urlOf(cfg: HttpConfig, c: Call): URL {
  const u = new URL(c.path, cfg.base);
  for (const [k, v] of Object.entries(c.query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
  return u;
}

/** Turns an error answer into a `BillingError` carrying the server's code and message. */
function errorOf(cfg: HttpConfig, c: Call, status: number, body: unknown, headers: Headers): BillingError {
  const b = (typeof body === 'object' && body !== null ? body : {}) as { error?: unknown; message?: unknown };
  const serverCode =
    typeof b.error === 'string' && /^[a-z0-9_.:-]{1,64}$/i.test(b.error) ? b.error : undefined;
  const serverMessage =
    typeof b.message === 'string' ? scrub(b.message.slice(0, 1000), cfg.token) : undefined;
  const retryAfter = retryAfterOf(headers);
  const extra = retryAfter === undefined ? {} : { retryAfter };
  if (status >= 500 || status === 429) {
    const why = serverMessage ?? (status === 429 ? 'too many requests' : 'server error');
    return new BillingError(
      BILLING_UNAVAILABLE,
      `The billing server answered ${label(c)} with ${status} (${why}). Try again later.`,
      serverCode === undefined ? { status, ...extra } : { status, serverCode, ...extra },
    );
  }
  const code = serverCode ?? STATUS_CODES[status] ?? 'billing_error';
  const message = serverMessage ?? `The billing server answered ${label(c)} with ${status}.`;
  return new BillingError(code, message, { status, ...extra });
}

/** Runs one attempt; throws `BillingError` for every failure. */
async function attempt(cfg: HttpConfig, c: Call): Promise<Answer> {
  // Its 'abort' event has passed: without this, a call whose signal was already aborted went out.
  if (c.signal?.aborted) throw abortedError(c);
  const ctl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctl.abort();
  }, c.timeoutMs);
  const onAbort = () => ctl.abort(c.signal!.reason);
  c.signal?.addEventListener('abort', onAbort, { once: true });
  let streaming = false;
  const headers: Record<string, string> = { accept: c.raw ? '*/*' : 'application/json' };
  if (IS_NODE && cfg.userAgent) headers['user-agent'] = cfg.userAgent;
  if (cfg.token !== undefined) headers.authorization = `Bearer ${cfg.token}`;
  if (c.body !== undefined || c.json !== undefined) headers['content-type'] = 'application/json';
  try {
    let res: Response;
    let text: string;
    try {
      res = await cfg.fetch(urlOf(cfg, c), {
        method: c.method,
        headers,
        body: c.json ?? (c.body === undefined ? null : JSON.stringify(c.body)),
        signal: ctl.signal,
        redirect: 'error',
      });
      if (c.raw && res.ok) {
        streaming = true;
        return { status: res.status, body: res.body, headers: res.headers };
      }
      text = await res.text();
    } catch (e) {
      if (c.signal?.aborted) throw abortedError(c);
      const why = timedOut
        ? `did not answer within ${c.timeoutMs} ms`
        : `could not be reached (${networkReason(e)})`;
      throw new BillingError(
        BILLING_UNAVAILABLE,
        `The billing server at ${cfg.base.origin} ${why} (${label(c)}).`,
        {
          status: 503,
          cause: e,
        },
      );
    }
    let body: unknown;
    if (text.length > 0) {
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
        if (res.ok) {
          throw new BillingError(
            'invalid_response',
            `The billing server answered ${label(c)} with a body that is not JSON.`,
            {
              status: 502,
            },
          );
        }
      }
    }
    if (!res.ok) throw errorOf(cfg, c, res.status, body, res.headers);
    return { status: res.status, body, headers: res.headers };
  } finally {
    clearTimeout(timer);
    // A streamed body stays cancellable by the caller's signal.
    if (!streaming) c.signal?.removeEventListener('abort', onAbort);
  }
}

/** The error of a call its caller's signal aborted. */
function abortedError(c: Call): BillingError {
  return new BillingError('aborted', `${label(c)} was aborted.`, { status: 499, cause: c.signal?.reason });
}

/** A short reason for a network failure, without anything the caller sent. */
function networkReason(e: unknown): string {
  const cause = (e as { cause?: { code?: unknown } })?.cause;
  if (cause && typeof cause.code === 'string') return cause.code;
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' ? code : 'network error';
}

/** Whether a failed attempt may be repeated. */
function retryable(e: unknown): e is BillingError {
  return e instanceof BillingError && e.code === BILLING_UNAVAILABLE && RETRY_STATUSES.has(e.status);
}

/** Runs a call with the client's retry policy; resolves the answer or throws `BillingError`. */
export async function request(cfg: HttpConfig, c: Call, random: () => number = Math.random): Promise<Answer> {
  const tries = c.retry ? cfg.retries + 1 : 1;
  for (let i = 0; ; i++) {
    try {
      return await attempt(cfg, c);
    } catch (e) {
      if (i + 1 >= tries || !retryable(e)) throw e;
      const hinted =
        e.retryAfter === undefined ? undefined : Math.min(e.retryAfter * 1000, cfg.retryMaxDelayMs);
      try {
        await sleep(hinted ?? backoffDelay(i, cfg.retryBaseMs, cfg.retryMaxDelayMs, random), c.signal);
      } catch (reason) {
        throw new BillingError('aborted', `${label(c)} was aborted.`, { status: 499, cause: reason });
      }
    }
  }
}
