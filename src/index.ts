/**
 * micropay: per-click payments over HTTP 402. The root export is the protocol
 * core and the stores; adapters and parts have their own subpaths
 * (`micropay/express`, `micropay/koa`, `micropay/proxy`, `micropay/billing-client`,
 * `micropay/billing-server`, `micropay/wallet`, `micropay/compile`).
 */
export * from './protocol/index.js';
export * from './stores/index.js';
