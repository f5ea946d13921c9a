/** Which real services this run has; tests that need one use `describe.skipIf(!redisUrl)`. */
import { inject } from 'vitest';

export const redisUrl: string | null = inject('redisUrl');
export const pgUrl: string | null = inject('pgUrl');
