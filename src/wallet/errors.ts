/**
 * The wallet's error: a `MicropayError` with a stable code and a sentence a
 * buyer can act on. Policy refusals carry the wallet's own codes; a merchant
 * that refuses a payment surfaces with the merchant's code and message
 * (`merchantCode`), a billing server failure with `billingCode`.
 */
import { MicropayError } from '../protocol/errors.js';
import type { Offer } from '../protocol/messages.js';

/**
 * The codes the wallet itself raises. A merchant's refusal keeps the merchant's code
 * (`declined`, `limit_exceeded`, `payment_required`, ...), so `code` is any string.
 */
export type WalletErrorCode =
  | 'over_payment_limit'
  | 'over_daily_budget'
  | 'merchant_denied'
  | 'currency_not_allowed'
  | 'issuer_not_accepted'
  | 'payment_not_confirmed'
  | 'no_credential'
  | 'no_offer'
  | 'invalid_offer'
  | 'offer_mismatch'
  | 'invalid_option'
  | 'invalid_key'
  | 'wallet_store_failed'
  | 'no_indexeddb';

/** Options of `WalletError`. */
export interface WalletErrorOptions {
  /** HTTP status of the answer that caused it, when one did. */
  status?: number;
  /** The merchant's error code, when a merchant refused the payment. */
  merchantCode?: string;
  /** The offer being paid, when there was one. */
  offer?: Offer;
  /** The billing server's error code, when getting a credential failed. */
  billingCode?: string;
  cause?: unknown;
}

/** A payment the wallet would not make, or one a merchant or the billing server refused. */
export class WalletError extends MicropayError {
  /** The merchant's own code when a merchant refused (also in `code`). */
  readonly merchantCode: string | undefined;
  /** The billing server's code when a credential could not be had. */
  readonly billingCode: string | undefined;
  /** The offer concerned, if any. */
  readonly offer: Offer | undefined;

  constructor(code: WalletErrorCode | (string & {}), message: string, options: WalletErrorOptions = {}) {
    const base: { status?: number; cause?: unknown } = {};
    if (options.status !== undefined) base.status = options.status;
    if (options.cause !== undefined) base.cause = options.cause;
    super(code, message, base);
    this.name = 'WalletError';
    this.merchantCode = options.merchantCode;
    this.billingCode = options.billingCode;
    this.offer = options.offer;
  }
}

/** True for a `WalletError`, also one from another copy of the package. */
export function isWalletError(e: unknown): e is WalletError {
  return e instanceof WalletError || (e instanceof Error && e.name === 'WalletError' && 'code' in e);
}
