/**
 * A receipt's payload JSON (PROTOCOL.md section 7) written by a template: the merchant makes one
 * on every paid request. Internal (not exported by the package): the verifier's, and its tests'.
 */
import type { Order } from './messages.js';

/** A receipt payload's JSON up to its `res`, for a merchant and receipt key. */
export function receiptHead(mer: string, kid: string): string {
  return `{"typ":"mp-receipt","v":1,"mer":${JSON.stringify(mer)},"kid":${JSON.stringify(kid)},`;
}

/**
 * `JSON.stringify` of the receipt (section 7) for an order, written by a template after a head
 * made once (`receiptHead`): it is made on every paid request, and `JSON.stringify` of the object
 * took about 9,700 instructions of the event loop (callgrind). The same text, byte for byte.
 */
export function receiptJson(
  head: string,
  order: Pick<Order, 'res' | 'oid' | 'amt' | 'cur'>,
  sub: string,
  iat: number,
  exp: number,
): string {
  return `${head}"res":${JSON.stringify(order.res)},"oid":${JSON.stringify(order.oid)},"amt":${order.amt},"cur":${JSON.stringify(order.cur)},"sub":${JSON.stringify(sub)},"iat":${iat},"exp":${exp}}`;
}
