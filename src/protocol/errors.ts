/**
 * The one error class of micropay. Every error a person can meet carries a
 * stable `code` (PROTOCOL.md section 6 codes, `invalid_request`, config codes)
 * and a sentence that says what to do. Messages never contain secrets.
 */

export interface MicropayErrorOptions {
  /** HTTP status to answer with, where the error reaches a client. */
  status?: number;
  cause?: unknown;
}

export class MicropayError extends Error {
  /** Stable, machine-readable code, e.g. `invalid_price` or `malformed_payment`. */
  readonly code: string;
  /** HTTP status where the error is answered over HTTP; undefined elsewhere. */
  readonly status: number | undefined;

  constructor(code: string, message: string, options: MicropayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MicropayError';
    this.code = code;
    this.status = options.status;
  }

  /** The JSON error body of PROTOCOL.md section 8: `{ error, message }`. */
  toJSON(): { error: string; message: string } {
    return { error: this.code, message: this.message };
  }
}

/** True for a `MicropayError`, also one from another copy of the package (ESM and CJS loaded together). */
export function isMicropayError(e: unknown): e is MicropayError {
  return (
    e instanceof MicropayError ||
    (e instanceof Error && e.name === 'MicropayError' && typeof (e as { code?: unknown }).code === 'string')
  );
}
