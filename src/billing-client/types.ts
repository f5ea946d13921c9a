/**
 * The shapes of the billing server API (PROTOCOL.md sections 8 and 10) as the
 * client sends and receives them: accounts, ledger entries, certificates,
 * deposits, tokens, peers and settlement. Every amount is an integer of
 * micro-units; every time is Unix seconds.
 */
import type { DepositItem } from '../stores/types.js';

/** Roles an account can be created with. */
export type AccountRole = 'buyer' | 'merchant';

/** `active` accounts trade; a `disabled` buyer gets no new credential. */
export type AccountStatus = 'active' | 'disabled';

/** An account (PROTOCOL.md section 10). */
export interface Account {
  id: string;
  /** `buyer` or `merchant`; the server's own fee and external accounts show `system`. */
  role: AccountRole | 'system';
  status: AccountStatus;
  currency: string;
  /** What the billing server owes the holder, micro-units; a buyer's falls below zero as it spends. */
  balance: number;
  /** How far below zero a buyer's balance may go, micro-units. */
  creditLimit: number;
  /** Cap of a credential's offline limit, micro-units; `null` when there is no daily cap. */
  dailyLimit: number | null;
  /** A merchant's commission in basis points (250 = 2.5%). */
  commissionBps: number;
  name: string | null;
  /** A buyer's available credit (`creditLimit + balance` less open authorizations), when the server reports it. */
  available?: number;
  /** Unix seconds, when the server reports them. */
  created?: number;
  updated?: number;
}

/** One ledger entry of an account, newest first in `entries()`. */
export interface LedgerEntry {
  id: string;
  /** Unix seconds. */
  time: number;
  /** Signed micro-units this entry added to the balance. */
  amount: number;
  /** Balance after this entry. */
  balance: number;
  /**
   * `order`: a buyer's purchase; `deposit`: a merchant's net credit for one batch;
   * `fee`: commission of a batch; `adjustment`: by an admin (more kinds may come with peering).
   */
  kind: 'order' | 'deposit' | 'fee' | 'adjustment' | (string & {});
  counterparty: string | null;
  /** Resource string of an order entry. */
  res: string | null;
  oid: string | null;
  memo: string | null;
  /** Deposit batch id of order, deposit and fee entries. */
  batch: string | null;
}

/** A page of results and the cursor of the next page (`null` on the last one). */
export interface Page {
  next: string | null;
}

/** `GET /v1/me/entries`. */
export interface EntriesPage extends Page {
  entries: LedgerEntry[];
}

/** `GET /v1/admin/accounts`. */
export interface AccountsPage extends Page {
  accounts: Account[];
}

/** `POST /v1/certificates`: a fresh credential for the buyer's key. */
export interface CertificateAnswer {
  /** The `mp-cert` token. */
  cert: string;
  /** Its expiry, Unix seconds. */
  exp: number;
  /** Its offline limit, micro-units. */
  lim: number;
}

/** One order of a deposit: the credential, the order and, when it was approved online, the `mp-auth` token. */
export type DepositOrder = DepositItem;

/** `POST /v1/deposits` body. */
export interface DepositRequest {
  /** Batch id: posting the same id again returns the first answer and changes nothing. */
  batch: string;
  /** At most 1000 orders. */
  orders: DepositOrder[];
}

// A deposit's answer (`{ batch, results: [{ oid, status, reason?, amt?, fee? }], credited }`) is
// typed once, beside the batcher that consumes it.
export type { DepositAnswer, DepositResult } from './batcher.js';

/** Fields of a new account (`POST /v1/admin/accounts`). */
export interface NewAccountInput {
  /** Account id: 1 to 128 characters `[A-Za-z0-9._:-]`. */
  id: string;
  role: AccountRole;
  /** 3 to 8 characters `[A-Z0-9]`, e.g. `USD`. */
  currency: string;
  name?: string;
  /** Micro-units a buyer may owe. */
  creditLimit?: number;
  /** Cap of a credential's offline limit, micro-units; `null` for none. */
  dailyLimit?: number | null;
  /** A merchant's commission in basis points. */
  commissionBps?: number;
}

/** What `updateAccount` may change. */
export interface AccountPatch {
  status?: AccountStatus;
  creditLimit?: number;
  dailyLimit?: number | null;
  commissionBps?: number;
  name?: string | null;
}

/** An account just created and its first API token. */
export interface CreatedAccount {
  account: Account;
  /** The account's first API token: shown once, store it. */
  token: string;
  /** Id of that token, when the server says (for `revokeToken`). */
  tokenId?: string;
}

/** A new API token and its id. */
export interface IssuedToken {
  /** The token: shown once, store it. */
  token: string;
  /** Its id, for `revokeToken`. */
  tokenId: string;
}

/** Filters of `listAccounts`. */
export interface AccountFilter {
  role?: AccountRole | 'system';
  status?: AccountStatus;
  /** Page size, when the server honours it. */
  limit?: number;
}

/** An admin adjustment: a signed amount (a top-up when positive, a payout when negative). */
export interface Adjustment {
  /** Signed micro-units. */
  amt: number;
  /** Why, shown in the ledger. */
  memo?: string;
}

/** A peer billing server (PROTOCOL.md section 9). */
export interface Peer {
  issuer: string;
  url: string;
  /** Whether this server holds a token to present at the peer (the token is never shown). */
  hasToken?: boolean;
  /** Id of the token the peer presents here. */
  tokenId?: string | null;
  /** Interchange fee this server keeps, as issuer, on each order the peer claims here (basis points). */
  feeBps?: number;
  /** When the peer's key set was last fetched, Unix seconds; `null` before the first success. */
  keysFetched?: number | null;
  created?: number;
  updated?: number;
}

/** `POST /v1/admin/peers` body. */
export interface NewPeerInput {
  /** The peer's issuer id. */
  issuer: string;
  /** The peer's base URL. */
  url: string;
  /** The token this server presents at the peer, when already known. */
  token?: string;
  /** Interchange fee this server keeps, as issuer, on orders the peer claims here: basis points (default 0). */
  feeBps?: number;
}

/** A peer just added, and the token the peer presents here. */
export interface AddedPeer {
  peer: Peer;
  /** The token the peer presents to this server: send it to the peer's admin. */
  token: string;
}

/** `PATCH /v1/admin/peers/:issuer` body. */
export interface PeerPatch {
  url?: string;
  /** The token this server presents at the peer (`null`: none). */
  token?: string | null;
  /** Interchange fee this server keeps, as issuer, on orders the peer claims here: basis points. */
  feeBps?: number;
}

/** Net position with one peer in one currency; `net > 0`: the peer owes us. */
export interface SettlementPosition {
  peer: string;
  currency: string;
  net: number;
  /** Orders under the peer's credentials credited here, not yet acknowledged by the peer (claims in transit). */
  pending?: number;
}

/** `POST /v1/admin/keys/rotate` answer. */
export interface RotatedKey {
  /** Id of the new signing key, which signs from now on. */
  kid: string;
}

/** Per-call options. */
export interface CallOptions {
  /** Aborts the call (and any retry wait). */
  signal?: AbortSignal;
  /** Overrides the client's timeout for this call, per attempt, milliseconds. */
  timeoutMs?: number;
}

/** A statement bound: Unix seconds, a `Date`, or text the server reads (`2026-11-01`, or ISO 8601 with a zone). */
export type TimeBound = number | Date | string;

/** `GET /v1/me/statement` parameters. */
export interface StatementParams {
  /** Start, inclusive. Default: the beginning of the ledger. */
  from?: TimeBound;
  /** End, exclusive; a bare date (`2026-11-30`) counts that whole day. Default: no end. */
  to?: TimeBound;
  /** `json` (default): one JSON document; `csv`: RFC 4180 with a header row. */
  format?: 'json' | 'csv';
}

/** `GET /v1/admin/statements` parameters: a month, or `from`/`to`. */
export interface AdminStatementParams extends StatementParams {
  /** A month in UTC, `YYYY-MM` (e.g. `2026-11`); instead of `from`/`to`. */
  period?: string;
}

/** Totals of one currency over a statement's period, micro-units. */
export interface StatementCurrencyTotals {
  currency: string;
  entries: number;
  /** Sum of the positive amounts. */
  credits: number;
  /** Sum of the negative amounts (negative). */
  debits: number;
  net: number;
  /** Commission kept (on merchants' deposit entries). */
  fees: number;
}

/** `GET /v1/admin/statements/summary`: how many entries a period holds, and its totals. */
export interface StatementSummary {
  from: number;
  to: number | null;
  entries: number;
  totals: StatementCurrencyTotals[];
}

/** Event types of webhooks. */
export type WebhookEventType =
  | 'deposit.credited'
  | 'order.rejected'
  | 'account.disabled'
  | 'settlement.updated';

/** What a webhook delivery's body holds. Dedupe on `id`: a delivery may come more than once. */
export interface WebhookEvent<T = Record<string, unknown>> {
  id: string;
  type: WebhookEventType;
  /** When the change happened, Unix seconds. */
  created: number;
  data: T;
}

/** A registered webhook endpoint (its secret is never shown again). */
export interface Webhook {
  id: string;
  url: string;
  events: WebhookEventType[];
  created: number;
}

/** `POST /v1/admin/webhooks` body. */
export interface NewWebhookInput {
  /** An http(s) URL without credentials. */
  url: string;
  events: WebhookEventType[];
  /** 16 to 256 printable characters; generated when left out. */
  secret?: string;
}

/** A webhook just registered, with its signing secret: shown only this once, store it. */
export interface CreatedWebhook {
  webhook: Webhook;
  secret: string;
}

/** One attempt of a delivery. */
export interface WebhookAttempt {
  attempt: number;
  /** Unix milliseconds. */
  time: number;
  /** The endpoint's HTTP status, `null` without an answer. */
  status: number | null;
  error: string | null;
  ms: number;
}

/** One event's delivery to one endpoint (the delivery log). */
export interface WebhookDelivery {
  id: string;
  event: string;
  type: WebhookEventType;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  /** Unix milliseconds. */
  created: number;
  /** When the next attempt is due (Unix milliseconds), while pending. */
  nextAttempt: number | null;
  lastStatus: number | null;
  lastError: string | null;
  /** When it was delivered or given up (Unix milliseconds). */
  done: number | null;
  log: WebhookAttempt[];
}

/** `GET /v1/admin/webhooks/:id/deliveries`. */
export interface DeliveriesPage extends Page {
  deliveries: WebhookDelivery[];
}
