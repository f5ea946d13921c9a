/**
 * The wallet's types in one place: the signer and stores an entry plugs in
 * (Node: node:crypto and files; browsers: @noble/ed25519 and IndexedDB), the
 * spending policy, the persisted state, and what a payment leaves behind.
 * Every amount is integer micro-units; every time is Unix seconds.
 */
import type { Offer, Order } from '../protocol/messages.js';
import type { Money } from '../protocol/money.js';

/** Signs orders with the buyer's Ed25519 key. */
export interface Signer {
  /** The buyer's public key, base64url of 32 bytes (what the credential is issued for). */
  publicKey(): Promise<string>;
  /** Signs an order payload into an `mp-order` token. */
  sign(payload: Order): Promise<string>;
}

/** Where the buyer's 32-byte Ed25519 seed lives. Node: `fileKeyStore`; browsers: `indexedDbKeyStore`. */
export interface KeyStore {
  /** The stored seed, or `null` when there is none yet. */
  load(): Promise<Uint8Array | null>;
  /** Stores a new seed. */
  save(seed: Uint8Array): Promise<void>;
}

/** Where the wallet keeps its state between runs. Default: memory (`memoryWalletStore`). */
export interface WalletStore {
  /** The saved state, or `null` when there is none yet. */
  load(): Promise<WalletState | null>;
  /** Saves the whole state (it is small: bounded history and receipts). */
  save(state: WalletState): Promise<void>;
}

/** A price as people write it (`"0.01 USD"`, `"$0.01"`) or `{ amt, cur }` in micro-units. */
export type PriceInput = string | Money;

/** What a `confirm` callback learns about the payment it is asked about. */
export interface ConfirmContext {
  /** The URL being fetched. */
  url: string;
  /** What was already spent today in the offer's currency, micro-units. */
  spentToday: number;
}

/**
 * The spending policy: what the wallet pays without asking. Every limit is
 * checked before anything is signed; a refusal throws a `WalletError`.
 * @example
 * { maxPerPayment: '0.05 USD', maxPerDay: '2 USD', denyMerchants: ['spam-news'],
 *   autoPayBelow: '0.01 USD', confirm: (offer) => window.confirm(`Pay ${offer.amt / 1e6} ${offer.cur}?`) }
 */
export interface WalletPolicy {
  /** Most one payment may cost (`over_payment_limit` above it). */
  maxPerPayment?: PriceInput;
  /** Most spent per day, days in UTC (`over_daily_budget` past it). */
  maxPerDay?: PriceInput;
  /** When set, pay only these merchants: each entry is a merchant id (`mer`) or a host (`news.example:8080`). */
  allowMerchants?: string[];
  /** Never pay these merchants (merchant ids or hosts); checked before `allowMerchants`. */
  denyMerchants?: string[];
  /** Pay only in this currency (`currency_not_allowed` otherwise). Default: the currency of the limits, if any. */
  currency?: string;
  /**
   * Payments below this amount are made without asking; from it on, `confirm` decides.
   * Without `autoPayBelow`, `confirm` (when given) is asked about every payment.
   */
  autoPayBelow?: PriceInput;
  /** Asked before a payment that is not automatic; `false` refuses it (`payment_not_confirmed`). */
  confirm?: (offer: Offer, context: ConfirmContext) => boolean | Promise<boolean>;
}

/** The credential the wallet holds, as stored. */
export interface StoredCredential {
  /** The `mp-cert` token. */
  cert: string;
  /** `tid(cert)`, the `cid` of every order paid under it. */
  cid: string;
  iss: string;
  sub: string;
  /** The buyer public key it was issued for. */
  key: string;
  cur: string;
  /** Offline limit per merchant, micro-units. */
  lim: number;
  nbf: number;
  exp: number;
}

/** A merchant's receipt kept for re-access. */
export interface StoredReceipt {
  /** `<origin> <resource string>`: the site and the resource it opens. */
  key: string;
  /** The `mp-receipt` token, sent back as is. */
  token: string;
  mer: string;
  res: string;
  exp: number;
}

/** One payment the wallet made. */
export interface PaymentRecord {
  /** When it was paid, Unix seconds. */
  time: number;
  /** The URL fetched. */
  url: string;
  /** Merchant id, and its display name when the offer had one. */
  mer: string;
  name?: string;
  /** What was bought, when the offer said. */
  title?: string;
  /** The resource string paid for. */
  res: string;
  amt: number;
  cur: string;
  /** The order id (the merchant's and the billing server's reference). */
  oid: string;
  /** The buyer account that paid. */
  sub: string;
  /** Status of the merchant's answer. */
  status: number;
  /** Until when the receipt lets the resource be fetched again, when there was one. */
  receiptExp?: number;
}

/** Everything the wallet persists. */
export interface WalletState {
  v: 1;
  /** The billing server the credential came from. */
  billingUrl: string;
  credential: StoredCredential | null;
  /** Unexpired receipts (at most 1000). */
  receipts: StoredReceipt[];
  /** Payments, oldest first (the newest 1000). */
  history: PaymentRecord[];
  /** Spending of the current UTC day, by currency. */
  spent: { day: string; amounts: Record<string, number> };
}

/** What `wallet.status()` reports. */
export interface WalletStatus {
  billingUrl: string;
  /** The buyer public key (base64url). */
  publicKey: string;
  /** The credential held, or `null` before the first one. */
  credential: Omit<StoredCredential, 'cert' | 'cid'> | null;
  /** Whether the credential would be renewed before the next payment. */
  renewDue: boolean;
  /** Spent today (UTC), by currency, micro-units. */
  spentToday: Record<string, number>;
  /** The policy with its prices as integers. */
  policy: PolicySummary;
  /** Receipts still valid. */
  receipts: number;
}

/** The policy as the wallet applies it (prices parsed). */
export interface PolicySummary {
  maxPerPayment: Money | null;
  maxPerDay: Money | null;
  autoPayBelow: Money | null;
  currency: string | null;
  allowMerchants: string[] | null;
  denyMerchants: string[];
  confirm: boolean;
}

/** Per-call options of `wallet.request`. */
export interface PayOptions {
  /** Most this one request may cost, on top of the policy (`over_payment_limit` above it). */
  maxPrice?: PriceInput;
}

/** What `wallet.request` resolves. */
export interface WalletResponse {
  /** The merchant's response (its body unread). */
  response: Response;
  /** How access was had: `free` (no payment asked), `receipt` (an earlier payment), `paid` (now). */
  via: 'free' | 'receipt' | 'paid';
  /** The payment made, when `via` is `paid` and the merchant charged it. */
  payment: PaymentRecord | null;
}
