import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastHistogram } from '../../src/middleware/histogram.js';

const buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1, 1];
// Bounds exactly, between them, above all, zero, and sums that round.
const values = [0, 0.0005, 0.0004, 0.001, 0.0011, 0.003, 0.1, 0.7, 1, 1.5, 42, 0.1 + 0.2, 1e-9];

/** The exposition of a prom-client histogram and of a FastHistogram fed the same observations. */
async function both(
  labelNames: string[],
  feed: (observe: (labels: Record<string, string>, v: number) => void) => void,
): Promise<[string, string]> {
  const a = new Registry();
  const b = new Registry();
  const ref = new Histogram({ name: 'h_seconds', help: 'A histogram', labelNames, buckets, registers: [a] });
  const fast = new FastHistogram({
    name: 'h_seconds',
    help: 'A histogram',
    labelNames,
    buckets,
    registers: [b],
  });
  feed((labels, v) => {
    if (labelNames.length) ref.observe(labels, v);
    else ref.observe(v);
    fast.series(labels).observe(v);
  });
  return [await a.metrics(), await b.metrics()];
}

describe('FastHistogram', () => {
  it('exports what prom-client exports for the same observations, labelled', async () => {
    const [ref, fast] = await both(['outcome'], (observe) => {
      for (const v of values) observe({ outcome: 'free' }, v);
      for (const v of values.slice(3)) observe({ outcome: 'paid' }, v * 2);
    });
    expect(fast).toBe(ref);
    expect(fast).toContain('h_seconds_bucket{le="0.001",outcome="free"} 5');
    expect(fast).not.toContain('outcome="error"');
  });

  it('exports what prom-client exports without labels, observed or not', async () => {
    expect((await both([], () => {}))[1]).toBe((await both([], () => {}))[0]);
    const [ref, fast] = await both([], (observe) => {
      for (const v of values) observe({}, v);
    });
    expect(fast).toBe(ref);
    expect(fast).toContain(`h_seconds_count ${values.length}`);
  });

  it('keeps one series per label set, counts observe() in it, and forgets everything on reset', async () => {
    const r = new Registry();
    const h = new FastHistogram({
      name: 'x_seconds',
      help: 'x',
      labelNames: ['outcome'],
      buckets,
      registers: [r],
    });
    const s = h.series({ outcome: 'paid' });
    expect(h.series({ outcome: 'paid' })).toBe(s);
    s.observe(0.002);
    h.observe({ outcome: 'paid' }, 0.002);
    s.observe(Number.NaN); // not counted
    expect(await r.metrics()).toContain('x_seconds_count{outcome="paid"} 2');
    h.reset();
    expect(await r.metrics()).not.toContain('x_seconds_count');
    s.observe(0.5);
    expect(await r.metrics()).toContain('x_seconds_count{outcome="paid"} 1');
  });
});
