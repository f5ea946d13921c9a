/**
 * The spending policy, compiled once when the wallet is made (prices parsed,
 * lists turned into sets, currencies checked to agree), and the check run
 * before every payment. The order of checks is the order a person would
 * want to hear about them: who, in what currency, how much, how much today,
 * and finally whether they agree.
 */
import { isMicropayError } from '../protocol/errors.js';
import type { Offer } from '../protocol/messages.js';
import { formatMoney, type Money, parseMoney } from '../protocol/money.js';
import { WalletError } from './errors.js';
import type { PolicySummary, PriceInput, WalletPolicy } from './types.js';

/** A policy ready to apply. */
export interface CompiledPolicy {
  summary: PolicySummary;
  confirm: WalletPolicy['confirm'];
}

function invalid(message: string): WalletError {
  return new WalletError('invalid_option', message);
}

function money(v: PriceInput | undefined, name: string): Money | null {
  if (v === undefined) return null;
  try {
    return parseMoney(v);
  } catch (e) {
    throw invalid(`policy.${name}: ${isMicropayError(e) ? e.message : String(e)}`);
  }
}

function list(v: unknown, name: string): string[] | null {
  if (v === undefined) return null;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 256)) {
    throw invalid(
      `policy.${name} must be a list of merchant ids or hosts, like ["news-site", "news.example"].`,
    );
  }
  return [...v];
}

/** Checks and compiles a policy; throws `invalid_option` naming the field. */
export function compilePolicy(p: WalletPolicy = {}): CompiledPolicy {
  if (typeof p !== 'object' || p === null)
    throw invalid('policy must be an object, like { maxPerPayment: "0.05 USD" }.');
  const maxPerPayment = money(p.maxPerPayment, 'maxPerPayment');
  const maxPerDay = money(p.maxPerDay, 'maxPerDay');
  const autoPayBelow = money(p.autoPayBelow, 'autoPayBelow');
  if (p.currency !== undefined && (typeof p.currency !== 'string' || !/^[A-Z0-9]{3,8}$/.test(p.currency))) {
    throw invalid('policy.currency must be a currency code of 3 to 8 characters A-Z or 0-9, like "USD".');
  }
  const priced = [
    ['maxPerPayment', maxPerPayment],
    ['maxPerDay', maxPerDay],
    ['autoPayBelow', autoPayBelow],
  ] as const;
  let currency = p.currency ?? null;
  for (const [name, m] of priced) {
    if (!m) continue;
    if (currency === null) currency = m.cur;
    else if (m.cur !== currency) {
      throw invalid(
        `policy.${name} is in ${m.cur} but the policy's currency is ${currency}; write every limit in one currency.`,
      );
    }
  }
  if (p.confirm !== undefined && typeof p.confirm !== 'function') {
    throw invalid('policy.confirm must be a function (offer) => boolean or Promise<boolean>.');
  }
  return {
    summary: {
      maxPerPayment,
      maxPerDay,
      autoPayBelow,
      currency,
      allowMerchants: list(p.allowMerchants, 'allowMerchants'),
      denyMerchants: list(p.denyMerchants, 'denyMerchants') ?? [],
      confirm: p.confirm !== undefined,
    },
    confirm: p.confirm,
  };
}

/** What the check needs to know besides the offer. */
export interface PolicyContext {
  /** The URL being fetched (its host matches merchant lists). */
  url: URL;
  /** Spent today in the offer's currency, including payments in flight. */
  spentToday: number;
  /** A per-call cap (`wallet.request(url, init, { maxPrice })`). */
  maxPrice: Money | null;
}

const show = (m: Money) => formatMoney(m.amt, m.cur);

/** Applies the policy to an offer: resolves when the payment may go ahead, throws a `WalletError` otherwise. */
export async function checkPolicy(policy: CompiledPolicy, offer: Offer, ctx: PolicyContext): Promise<void> {
  const s = policy.summary;
  const price = { amt: offer.amt, cur: offer.cur };
  const who = offer.name ? `${offer.name} (${offer.mer})` : offer.mer;
  const fail = (code: string, message: string) => new WalletError(code, message, { offer });
  const names = [offer.mer, ctx.url.host, ctx.url.hostname];
  const hit = s.denyMerchants.find((d) => names.includes(d));
  if (hit !== undefined)
    throw fail(
      'merchant_denied',
      `${who} is on your list of denied merchants ("${hit}"), so it was not paid.`,
    );
  if (s.allowMerchants && !s.allowMerchants.some((a) => names.includes(a))) {
    throw fail(
      'merchant_denied',
      `${who} at ${ctx.url.host} is not on your list of allowed merchants; add "${offer.mer}" to allowMerchants to pay it.`,
    );
  }
  if (s.currency !== null && offer.cur !== s.currency) {
    throw fail(
      'currency_not_allowed',
      `${who} asks ${show(price)}, but your wallet pays only in ${s.currency}.`,
    );
  }
  for (const [cap, what] of [
    [s.maxPerPayment, 'your limit per payment'],
    [ctx.maxPrice, 'the most you allowed for this request'],
  ] as const) {
    if (!cap) continue;
    if (cap.cur !== offer.cur) {
      throw fail('currency_not_allowed', `${who} asks ${show(price)}, but ${what} is in ${cap.cur}.`);
    }
    if (offer.amt > cap.amt) {
      throw fail(
        'over_payment_limit',
        `${who} asks ${show(price)} for ${offer.res}, more than ${what} (${show(cap)}).`,
      );
    }
  }
  if (s.maxPerDay && ctx.spentToday + offer.amt > s.maxPerDay.amt) {
    throw fail(
      'over_daily_budget',
      `Paying ${show(price)} to ${who} would bring today's spending to ${formatMoney(ctx.spentToday + offer.amt, offer.cur)}, over your daily budget of ${show(s.maxPerDay)} (days are UTC).`,
    );
  }
  const automatic = s.autoPayBelow ? offer.amt < s.autoPayBelow.amt : !policy.confirm;
  if (automatic) return;
  if (!policy.confirm) {
    throw fail(
      'payment_not_confirmed',
      `${who} asks ${show(price)}, at or above your automatic limit of ${show(s.autoPayBelow!)}, and no confirm callback was given to approve it.`,
    );
  }
  let ok: boolean;
  try {
    ok = (await policy.confirm(offer, { url: ctx.url.toString(), spentToday: ctx.spentToday })) === true;
  } catch (e) {
    throw new WalletError('payment_not_confirmed', `The confirm callback failed, so ${who} was not paid.`, {
      offer,
      cause: e,
    });
  }
  if (!ok)
    throw fail('payment_not_confirmed', `You declined to pay ${show(price)} to ${who} for ${offer.res}.`);
}
