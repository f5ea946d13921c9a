/**
 * `fetch` over `node:http` and `node:https`, for the merchant's billing client
 * (deposits, online authorizations, the key set) in a process that proxies or
 * serves HTTP itself.
 *
 * Node's global `fetch` (undici) brings its own sockets and parser: after a
 * proxy's first deposits, node's socket and stream code, which every request
 * of the site runs through, also sees undici's objects, and V8 makes that
 * shared code handle both shapes. Through this one, deposits use the same
 * `http.Agent` and `IncomingMessage` code as the site's own traffic. Counted
 * with callgrind on micropay-proxy's event loop (bench/proxy's upstream, 3,000
 * free requests on 8 connections after 6,000 free and 900 paid ones, whose
 * deposits went out meanwhile), a free request cost 346,900 to 347,900
 * instructions with deposits through the global `fetch` and 343,200 to
 * 344,600 through this one (four runs each).
 *
 * It implements what the billing client asks of `fetch`: a `URL` or string,
 * `method`, `headers` as a record, a string or byte body, `signal`, and
 * `redirect: 'error'` (any 3xx rejects, as undici's does). The answer is a
 * real `Response` whose body streams from the socket.
 */
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';

/** Options of `nodeFetch`. */
export interface NodeFetchOptions {
  /** Most connections kept open to one billing server. Default 16. */
  maxSockets?: number;
}

/** Statuses whose answer has no body (a `Response` refuses one). */
const NULL_BODY = new Set([101, 204, 205, 304]);

/** A `fetch` for the billing client over keep-alive `node:http(s)` agents (see the module's comment). */
export function nodeFetch(options: NodeFetchOptions = {}): typeof fetch {
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 16, scheduling: 'lifo' as const };
  const agents = { http: new http.Agent(agentOptions), https: new https.Agent(agentOptions) };
  const f = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> =>
    new Promise<Response>((resolve, reject) => {
      const url = input instanceof URL ? input : new URL(typeof input === 'string' ? input : input.url);
      const secure = url.protocol === 'https:';
      if (!secure && url.protocol !== 'http:') {
        reject(new TypeError(`fetch: ${url.protocol} URLs are not supported, only http: and https:.`));
        return;
      }
      const signal = init.signal ?? undefined;
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const headers = headerRecord(init.headers);
      const body = bodyOf(init.body);
      if (body !== undefined) headers['content-length'] = String(body.byteLength);
      const method = (init.method ?? 'GET').toUpperCase();
      const req = (secure ? https : http).request(url, {
        method,
        headers,
        agent: secure ? agents.https : agents.http,
      });
      let settled = false;
      const onAbort = () =>
        req.destroy(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => signal?.removeEventListener('abort', onAbort);
      req.on('error', (e) => {
        done();
        if (settled) return;
        settled = true;
        reject(new TypeError('fetch failed', { cause: signal?.aborted ? signal.reason : e }));
      });
      req.on('response', (res) => {
        settled = true;
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400 && init.redirect === 'error') {
          done();
          res.resume();
          reject(new TypeError('fetch failed', { cause: new Error(`unexpected redirect (${status})`) }));
          return;
        }
        const h = new Headers();
        const raw = res.rawHeaders;
        for (let i = 0; i < raw.length; i += 2) h.append(raw[i]!, raw[i + 1]!);
        res.once('close', done);
        const stream = NULL_BODY.has(status) || method === 'HEAD' ? null : Readable.toWeb(res);
        if (stream === null) res.resume();
        resolve(
          new Response(stream as ReadableStream<Uint8Array> | null, {
            status,
            statusText: res.statusMessage ?? '',
            headers: h,
          }),
        );
      });
      req.end(body);
    });
  return f as typeof fetch;
}

/** `init.headers` as a plain record of lower-case names. */
function headerRecord(h: HeadersInit | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (h === undefined) return out;
  if (h instanceof Headers) {
    h.forEach((v, k) => {
      out[k] = v;
    });
  } else for (const [k, v] of Array.isArray(h) ? h : Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}

/** `init.body` as bytes; only strings and byte arrays are sent by the billing client. */
function bodyOf(b: RequestInit['body']): Uint8Array | undefined {
  if (b === undefined || b === null) return undefined;
  if (typeof b === 'string') return Buffer.from(b, 'utf8');
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  throw new TypeError('fetch: only a string or byte body is supported here.');
}
