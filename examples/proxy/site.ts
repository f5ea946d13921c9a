/**
 * The small news site the proxy example puts behind the paywall: plain
 * node:http that knows nothing about payments except, when the proxy passes
 * them, the `Micropay-Paid-*` headers saying who paid. `/live` is a websocket
 * sending the score. `startSite()` is used by `run.ts` and the test.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

const page = (title: string, body: string) =>
  `<!doctype html><meta charset="utf-8"><title>${title}</title><h1>${title}</h1>${body}\n`;

/** Starts the site on `port` (0: any free port); resolves its URL and a `close()`. */
export async function startSite(port = 0): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://site');
    const paidBy = req.headers['micropay-paid-buyer'];
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    if (url.pathname === '/') {
      res.end(
        page(
          'News Site',
          '<ul><li><a href="/articles/42">Article 42 (0.002 USD)</a>' +
            '<li><a href="/articles/free-intro">Introduction (free)</a></ul>',
        ),
      );
    } else if (url.pathname.startsWith('/articles/')) {
      const id = url.pathname.slice('/articles/'.length);
      const who = paidBy ? `<p>Thank you, ${String(paidBy)}.</p>` : '';
      res.end(page(`Article ${id}`, `<p>The full text of article ${id}.</p>${who}`));
    } else {
      res.statusCode = 404;
      res.end(page('Not found', ''));
    }
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (req.url !== '/live') return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(`score 2-1 (for ${String(req.headers['micropay-paid-buyer'] ?? 'nobody')})`);
      ws.on('message', (m) => ws.send(`you said ${m.toString()}`));
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
