/**
 * The error every billing client call throws: a `MicropayError` carrying the
 * billing server's `code`, `message` and HTTP `status`. Anything that may
 * succeed when tried again later (the server unreachable, a timeout, a 5xx,
 * a 429) has the code `billing_unavailable`, so a caller needs one test to
 * decide between "retry later" and "this will never work".
 */
import { MicropayError } from '../protocol/errors.js';

/** The code of every failure that may succeed later: network errors, timeouts, 5xx, 429. */
export const BILLING_UNAVAILABLE = 'billing_unavailable';

/** Options of `BillingError`. */
export interface BillingErrorOptions {
  /** HTTP status the server answered, or 503 when it could not be reached. */
  status: number;
  /** The `error` code of the server's body when it differs from `code` (a 5xx body's own code). */
  serverCode?: string;
  /** Seconds from the server's `Retry-After`, when it sent one. */
  retryAfter?: number;
  cause?: unknown;
}

/**
 * A failed billing server call. `code` is the server's error code
 * (`no_such_account`, `invalid_request`, ...) or `billing_unavailable` when
 * the call may succeed later; `message` never contains the API token.
 */
export class BillingError extends MicropayError {
  /** HTTP status (503 when the server could not be reached or did not answer in time). */
  declare readonly status: number;
  /** The server's own code, when a retryable answer (5xx, 429) carried one. */
  readonly serverCode: string | undefined;
  /** Seconds the server asked to wait (`Retry-After`), when it said. */
  readonly retryAfter: number | undefined;

  constructor(code: string, message: string, options: BillingErrorOptions) {
    super(
      code,
      message,
      options.cause === undefined
        ? { status: options.status }
        : { status: options.status, cause: options.cause },
    );
    this.name = 'BillingError';
    this.serverCode = options.serverCode;
    this.retryAfter = options.retryAfter;
  }

  /** True when trying again later may succeed (`code === 'billing_unavailable'`). */
  get retryable(): boolean {
    return this.code === BILLING_UNAVAILABLE;
  }
}

/** True for a `BillingError`, also one from another copy of the package (ESM and CJS loaded together). */
export function isBillingError(e: unknown): e is BillingError {
  return (
    e instanceof BillingError ||
    (e instanceof Error &&
      e.name === 'BillingError' &&
      typeof (e as { code?: unknown }).code === 'string' &&
      typeof (e as { status?: unknown }).status === 'number')
  );
}
