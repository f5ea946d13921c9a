/**
 * The bench's baseline: a plain http-proxy in front of the upstream with the
 * keep-alive agent micropay-proxy uses (same agent options, X-Forwarded-*
 * added), and nothing else. Prints one JSON line with its URL.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import httpProxy from 'http-proxy';

const target = process.env.BENCH_UPSTREAM!;
const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' });
const proxy = httpProxy.createProxyServer({ target, agent, xfwd: true });
proxy.on('error', (_e, _req, res) => {
  if (res instanceof http.ServerResponse && !res.headersSent) {
    res.statusCode = 502;
    res.end();
  }
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }));
});
