/**
 * micropay: per-click payments over HTTP 402. The root export is the protocol
 * core; adapters and parts have their own subpaths (`micropay/express`, ...).
 */
export * from './protocol/index.js';
