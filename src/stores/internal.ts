/**
 * Helpers the memory and Redis stores share (argument checks, batch ids), so
 * both refuse the same input and name batches the same way. Not exported from
 * the package.
 */
import { createHash } from 'node:crypto';
import { MicropayError } from '../protocol/errors.js';
import type { AcceptRequest } from './types.js';

/** An option (or, with `code`, an argument) that must be a positive integer; `fallback` when absent. */
export function positiveInteger(
  name: string,
  value: number | undefined,
  fallback: number,
  code = 'invalid_store_option',
): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new MicropayError(code, `${name} must be a positive integer, got ${String(value)}.`);
  }
  return value;
}

/** An amount of micro-units: an integer in [0, 2^53-1]. */
export function checkAmount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new MicropayError(
      'invalid_store_argument',
      `${name} must be an integer of micro-units in [0, 2^53-1], got ${String(value)}.`,
    );
  }
}

function checkSeconds(name: string, value: number): void {
  if (!Number.isFinite(value) || value <= 0) {
    throw new MicropayError('invalid_store_argument', `${name} must be a positive number of seconds.`);
  }
}

/** Checks the numbers of an accept request; shared with the Redis store so both refuse the same input. */
export function checkAcceptRequest(req: AcceptRequest): void {
  checkSeconds('replayTtl', req.replayTtl);
  if (!Number.isFinite(req.iat)) throw new MicropayError('invalid_store_argument', 'iat must be a number.');
  if (req.tally !== null) {
    checkAmount('tally.amt', req.tally.amt);
    checkAmount('tally.limit', req.tally.limit);
    checkSeconds('tally.ttl', req.tally.ttl);
  }
}

/**
 * The id of a batch: base64url SHA-256 over a salt and the sorted entry ids, so
 * the same entries always make the same id. The salt keeps ids of different
 * queues apart: the billing server answers a re-posted batch id with its first
 * answer, so a collision would leave orders uncredited.
 */
export function batchIdOf(salt: string, sortedIds: readonly string[]): string {
  return createHash('sha256')
    .update(`${salt}\n${sortedIds.join(',')}`)
    .digest('base64url');
}
