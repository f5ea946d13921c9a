/** Key prefixes that keep parallel test files apart in one Redis, and the cleanup after them. */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

/** A prefix no other test file or run uses. */
export function testPrefix(tag: string): string {
  return `micropay-test:${tag}:${randomBytes(6).toString('hex')}:`;
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(url: string, prefix: string): Promise<void> {
  const client = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await client.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    await client.quit();
  }
}
