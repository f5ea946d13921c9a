/**
 * Latency at a fixed load, open loop: requests leave at evenly spaced times
 * (whether or not earlier ones have answered), over a pool of keep-alive
 * connections, and each one's latency is counted from the time it was due,
 * so a stalled server is not hidden by a client that waits for it.
 *
 * autocannon's `overallRate` is not used for this: it sends each second's
 * quota as fast as it can and then pauses, so its "half load" is full load
 * for half of every second, and its p99 is the latency at saturation.
 */
import { Agent, request } from 'node:http';

export interface PacedResult {
  /** Requests that answered 2xx. */
  ok: number;
  /** Requests that answered otherwise or failed. */
  bad: number;
  /** Latency percentiles, milliseconds. */
  p50: number;
  p99: number;
}

/**
 * GETs `url` at `rate` requests a second for `seconds`; each request carries the next of
 * `headers` (cycled) as `Micropay-Payment`, or none when it is empty.
 */
export async function paced(
  url: string,
  headers: string[],
  seconds: number,
  rate: number,
): Promise<PacedResult> {
  const u = new URL(url);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const total = Math.floor(rate * seconds);
  const latencies: number[] = [];
  let bad = 0;
  let sent = 0;
  let done = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const send = (due: number) => {
      const h = headers.length ? { 'micropay-payment': headers[sent % headers.length]! } : {};
      sent++;
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, agent, headers: h }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode! < 300) latencies.push(performance.now() - due);
          else bad++;
          if (++done === total) resolve();
        });
      });
      req.on('error', () => {
        bad++;
        if (++done === total) resolve();
      });
      req.end();
    };
    // Timers tick about once a millisecond: each tick sends every request that has come due.
    const timer = setInterval(() => {
      const now = performance.now();
      while (sent < total && t0 + (sent * 1000) / rate <= now) send(t0 + (sent * 1000) / rate);
      if (sent >= total) clearInterval(timer);
    }, 1);
  });
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    Math.round((latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0) * 100) /
    100;
  return { ok: latencies.length, bad, p50: pct(0.5), p99: pct(0.99) };
}
