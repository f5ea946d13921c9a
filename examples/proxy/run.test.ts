/** The proxy example runs end to end: 402, paid through the proxy, receipt, free page, deposit credited. */
import { expect, it } from 'vitest';
import { runExample } from './run.js';

it('runs the proxy example end to end', async () => {
  const lines: string[] = [];
  const run = await runExample({ log: (l) => lines.push(l), proxyPort: 0, logLevel: 'silent' });
  try {
    expect(run).toMatchObject({
      unpaid: 402,
      first: 'paid',
      second: 'receipt',
      free: 'free',
      merchant: 1900,
      buyer: -2000,
    });
    expect(lines.join('\n')).toContain('Thank you, alice');
  } finally {
    await run.stop();
  }
});
