/**
 * The proxy's upstream timeout (`upstreamTimeoutMs`): an upstream connection
 * busy with a request is given up when the upstream has been silent that long,
 * before its response headers or while its body is passed on.
 *
 * One timer looks at the upstream agents' busy sockets a few times per
 * timeout; a request costs nothing. Measured with callgrind (instructions per
 * free request through the proxy, 4,000 after 6,000 of warm-up): this design
 * 409,911 and 410,552; no timeout at all 410,065 to 412,310 in five runs (a
 * sixth 436,032). The two designs tried first cost more: a socket timer per
 * request (armed on the upstream request, refreshed on every read and write,
 * cleared when the agent pools the socket) 416,322 and 421,070; a `Set` of
 * the requests in flight 441,693 and 445,974, most of it in the garbage
 * collector's threads (the long-lived set pointing at young objects).
 *
 * A socket is silent while it moves no byte and is not paused: a client that
 * does not read makes the proxy pause the upstream's response, and that is not
 * the upstream's silence. Sockets leave an agent's busy list when their
 * response has been read and when a websocket upgrade has been answered, so
 * idle kept-alive connections and open tunnels are never timed out.
 */
import type { Agent } from 'node:http';
import type { Socket } from 'node:net';

/** The code of the error a silent upstream's socket is destroyed with. */
export const SILENCE_CODE = 'MICROPAY_UPSTREAM_TIMEOUT';

/** Whether an upstream error is the upstream's silence. */
export function isSilence(err: Error): boolean {
  return (err as NodeJS.ErrnoException).code === SILENCE_CODE;
}

/** Fewest and most ms between two looks. */
const MIN_TICK = 20;
const MAX_TICK = 1000;

/** What a socket had moved at the look where it last moved, and when. */
interface Seen {
  bytes: number;
  at: number;
}

/**
 * The timer. A socket silent for `ms` is destroyed with an error whose code is `SILENCE_CODE`
 * (its request then fails with it) within a quarter of `ms` more (at most a second more).
 */
export class SilenceWatch {
  private readonly seen = new WeakMap<Socket, Seen>();
  private timer: NodeJS.Timeout | null = null;
  private ms = 0;

  /** @param agents the agents whose busy sockets are looked at (read at every look). */
  constructor(private readonly agents: () => Iterable<Agent>) {}

  /** Sets the timeout, ms; 0 stops looking. */
  set(ms: number): void {
    if (ms === this.ms) return;
    this.stop();
    this.ms = ms;
    if (ms <= 0) return;
    const tick = Math.min(MAX_TICK, Math.max(MIN_TICK, Math.floor(ms / 4)));
    this.timer = setInterval(() => this.sweep(performance.now()), tick);
    this.timer.unref();
  }

  /** Stops looking. */
  close(): void {
    this.set(0);
  }

  /** One look at every busy socket (the timer's; `now` is `performance.now()`). */
  sweep(now: number): void {
    const ms = this.ms;
    if (ms <= 0) return;
    for (const agent of this.agents()) {
      for (const name in agent.sockets) {
        for (const s of agent.sockets[name] ?? []) {
          if (s.destroyed) continue;
          const bytes = s.bytesRead + (s.bytesWritten ?? 0);
          const e = this.seen.get(s);
          if (e === undefined) this.seen.set(s, { bytes, at: now });
          else if (bytes !== e.bytes || s.isPaused()) {
            e.bytes = bytes;
            e.at = now;
          } else if (now - e.at >= ms) {
            this.seen.delete(s);
            s.destroy(
              Object.assign(new Error(`The upstream sent nothing for ${ms} ms.`), { code: SILENCE_CODE }),
            );
          }
        }
      }
    }
  }

  private stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.ms = 0;
  }
}
