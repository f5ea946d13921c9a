/**
 * What a test file opens and must shut at the end: HTTP servers on ephemeral
 * ports (their connections cut, then closed) and anything else with a
 * `close()` (middleware, stores), closed after the servers, last opened first
 * (a middleware's batcher still reads the store it was given), failures ignored.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export class Opened {
  private readonly servers: Server[] = [];
  private readonly closers: (() => Promise<void>)[] = [];

  /** Listens on 127.0.0.1 and an ephemeral port; resolves the server's base URL. */
  async listen(server: Server): Promise<string> {
    this.servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Closes these too at the end, after the servers. */
  onClose(...closers: (() => Promise<void>)[]): void {
    this.closers.push(...closers);
  }

  async close(): Promise<void> {
    for (const s of this.servers.splice(0)) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
    for (const c of this.closers.splice(0).reverse()) await c().catch(() => {});
  }
}
