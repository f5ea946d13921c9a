/** The wire contract of PROTOCOL.md: money, ids, tokens, messages, the payment header, keys and the verifier. */
export * from './base64url.js';
export * from './codec.js';
export * from './crypto.js';
export * from './errors.js';
export * from './header.js';
export * from './ids.js';
export * from './keys.js';
export { Lru } from './lru.js';
export * from './messages.js';
export * from './money.js';
export * from './offer.js';
export type * from './store.js';
export * from './verifier.js';
