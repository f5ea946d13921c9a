/**
 * The HTML compiler: existing pages into click-and-pay links plus the price
 * manifest the middleware and the proxy load. The public entry of
 * `src/compile/`; the `micropay compile` command calls `runCompile`.
 */
export {
  type CompileOptions,
  type CompilePagesResult,
  type CompileProgress,
  type CompileSummary,
  compile,
  compilePages,
  DEFAULT_MANIFEST_NAME,
  DEFAULT_WALLET_SCRIPT,
  HTML_EXTENSIONS,
  type PageInput,
  type PageOutput,
  type PricingOptions,
} from './compile.js';
export { ATTR_PREFIX, WALLET_ATTR } from './html.js';
export {
  type CompiledManifestRoute,
  compileManifest,
  type DynamicManifestRoute,
  type FixedManifestRoute,
  loadManifest,
  type ManifestRoute,
  type ManifestRouteBase,
  matchManifest,
  type PriceManifest,
  parseManifest,
} from './manifest.js';
export { type CompiledMatch, compileMatch, PatternError } from './match.js';
export { type CompiledRule, loadRules, type PriceRule, parseRules } from './rules.js';
export { type CompileIO, runCompile } from './run.js';
export { CompileError, type CompileIssue } from './site.js';
