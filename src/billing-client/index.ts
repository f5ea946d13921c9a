/**
 * The typed client of the billing server (`micropay/billing-client`): every
 * endpoint of PROTOCOL.md sections 2, 3, 8 and 10, with timeouts, retries
 * with backoff and jitter for idempotent calls only, and `BillingError`s
 * carrying the server's code, message and status; and the merchant's
 * deposit batcher that feeds `deposit`.
 */
export {
  type BatcherLogger,
  type DeadLetter,
  DepositBatcher,
  type DepositBatcherOptions,
  type Depositor,
} from './batcher.js';
export {
  BillingAdmin,
  BillingClient,
  type BillingClientOptions,
  createBillingClient,
  DEFAULT_USER_AGENT,
  type KeyResolverOptions,
} from './client.js';
export { BILLING_UNAVAILABLE, BillingError, type BillingErrorOptions, isBillingError } from './errors.js';
export { backoffDelay } from './http.js';
export type * from './types.js';
export {
  DEFAULT_WEBHOOK_TOLERANCE,
  EVENT_ID_HEADER,
  SIGNATURE_HEADER,
  signWebhook,
  type VerifyWebhookOptions,
  verifyWebhook,
} from './webhooks.js';
