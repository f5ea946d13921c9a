/**
 * `micropay/proxy`: the paywall in front of any site, as a library. The
 * `micropay-proxy` binary (and `micropay proxy`) is this plus argument
 * parsing and signals (`cli.ts`).
 *
 * @example
 * import { createProxy, loadProxyConfig } from 'micropay/proxy';
 * const proxy = createProxy(loadProxyConfig('micropay.yaml'));
 * console.log('paywall on', await proxy.listen());
 */
export {
  DEFAULT_CONFIG_FILE,
  loadProxyConfig,
  type ProxyConfig,
  type ProxyEnv,
  type ProxyRoute,
  type ProxyStoreConfig,
  type ProxyUpstream,
  parseProxyConfig,
} from './config.js';
export { type CreateProxyOptions, checkProxyConfig, createProxy, type MicropayProxy } from './server.js';
