/**
 * The challenge of PROTOCOL.md section 4: the offer object, its header
 * encoding, and the 402 body and headers every merchant answers with.
 */
import { b64urlEncode, utf8 } from './base64url.js';
import { isId } from './ids.js';
import type { Offer } from './messages.js';
import { formatMoney } from './money.js';

/** What a merchant knows about a priced resource when it builds an offer. */
export interface OfferInput {
  mer: string;
  acq: string;
  accepts: readonly string[];
  res: string;
  amt: number;
  cur: string;
  /** Receipt lifetime, seconds. */
  dur: number;
  /** Until when the quoted price holds (Unix seconds). */
  exp: number;
  title?: string;
  name?: string;
}

/** Builds the offer object with fields in protocol order. */
export function buildOffer(i: OfferInput): Offer {
  const o: Offer = {
    typ: 'mp-offer',
    v: 1,
    mer: i.mer,
    acq: i.acq,
    accepts: [...i.accepts],
    res: i.res,
    amt: i.amt,
    cur: i.cur,
    dur: i.dur,
    exp: i.exp,
  };
  if (i.title !== undefined) o.title = i.title;
  if (i.name !== undefined) o.name = i.name;
  return o;
}

/** The `Micropay-Offer` header value: base64url of the offer JSON. */
export function encodeOfferHeader(offer: Offer): string {
  return b64urlEncode(utf8(JSON.stringify(offer)));
}

/** The `WWW-Authenticate` header value: `Micropay realm="<mer>"`. */
export function wwwAuthenticate(mer: string): string {
  // `mer` is an identifier (no quotes or backslashes), so it needs no escaping.
  return `Micropay realm="${isId(mer) ? mer : 'micropay'}"`;
}

/** The sentence of a 402: "This resource costs 0.002 USD." */
export function priceSentence(amt: number, cur: string): string {
  return `This resource costs ${formatMoney(amt, cur)}.`;
}

/** The JSON body of a 402: `{ error, message, offer }`. */
export function challengeBody(
  offer: Offer,
  error = 'payment_required',
  message = priceSentence(offer.amt, offer.cur),
) {
  return { error, message, offer };
}
