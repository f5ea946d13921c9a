/**
 * Probes the real services the integration tests use (Redis, PostgreSQL, and
 * Chromium for test/browser).
 * Without CI, a missing service makes its tests skip, and this says so loudly.
 * With CI=true a missing service is a failure, never a skip.
 */
import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import type { TestProject } from 'vitest/node';

export const REDIS_URL = process.env.MICROPAY_TEST_REDIS ?? 'redis://127.0.0.1:6379';
export const PG_URL = process.env.MICROPAY_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
export const CHROMIUM = process.env.MICROPAY_TEST_CHROMIUM ?? '/usr/bin/chromium';

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function reachable(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const sock = net.connect({ host: u.hostname, port: Number(u.port) });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string | null;
    pgUrl: string | null;
    chromium: string | null;
  }
}

export default async function setup(project: TestProject): Promise<void> {
  const [redis, pg] = await Promise.all([reachable(REDIS_URL), reachable(PG_URL)]);
  const chromium = executable(CHROMIUM);
  const missing = [
    !redis && `Redis (${REDIS_URL})`,
    !pg && `PostgreSQL (${PG_URL})`,
    !chromium && `Chromium (${CHROMIUM}; apt-get install -y chromium)`,
  ].filter(Boolean);
  if (missing.length > 0) {
    if (process.env.CI === 'true') {
      throw new Error(
        `CI=true and these services are not reachable: ${missing.join(', ')}. Start them (see README).`,
      );
    }
    const bar = '!'.repeat(78);
    console.warn(
      `\n${bar}\n!! SKIPPING the tests that need ${missing.join(' and ')}: not reachable.\n!! Start them (see README) to run the whole suite.\n${bar}\n`,
    );
  }
  project.provide('redisUrl', redis ? REDIS_URL : null);
  project.provide('pgUrl', pg ? PG_URL : null);
  project.provide('chromium', chromium ? CHROMIUM : null);
}
