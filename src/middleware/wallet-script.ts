/**
 * The browser wallet script as text, for servers to send (the middleware
 * core answers `GET /_micropay/wallet.js` with it).
 *
 * In the package it is `dist/browser/micropay-wallet.js`, written by
 * `npm run build`. This module finds it through `wallet-script-file.js`, a
 * two-line module the build writes beside this one's compiled copies (its
 * own location needs `import.meta.url` or `__dirname`, which code compiled
 * both to ES modules and CommonJS cannot use). Running from the TypeScript
 * source (tests, tsx) there is no such module, so the entry
 * `src/wallet/browser-script.ts` is bundled with esbuild (a devDependency)
 * on first use, with the same options as the build. Either way the result
 * is kept: it is read or bundled once per process.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { MicropayError } from '../protocol/errors.js';

/** Where pages load the wallet script from by default (compiled pages and the paywall page). */
export const WALLET_SCRIPT_PATH = '/_micropay/wallet.js';

/** The script and its strong ETag. */
export interface WalletScriptAsset {
  /** The script, UTF-8. */
  body: Buffer;
  /** `"<sha256 base64url>"`, for `ETag` and `If-None-Match`. */
  etag: string;
}

/** esbuild options of the browser bundle; `scripts/build.mjs` uses the same. */
export const WALLET_BUNDLE_OPTIONS = {
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  legalComments: 'none',
  charset: 'utf8',
} as const;

// Variables, so that neither TypeScript nor a bundler of the user's server tries to resolve them up front.
const LOCATOR = './wallet-script-file.js';
const ESBUILD = 'esbuild';

let cached: Promise<WalletScriptAsset> | null = null;

/** The built file, when this module runs from the package's `dist`. */
async function builtFile(): Promise<string | null> {
  try {
    const m = (await import(LOCATOR)) as { file?: unknown; default?: { file?: unknown } };
    const file = m.file ?? m.default?.file;
    return typeof file === 'string' && existsSync(file) ? file : null;
  } catch {
    return null;
  }
}

/** `src/wallet/browser-script.ts` of the checkout the process runs in, if there is one. */
function sourceEntry(): string | null {
  try {
    const req = createRequire(path.join(process.cwd(), 'noop.js'));
    const root = path.dirname(req.resolve('micropay/package.json'));
    const entry = path.join(root, 'src', 'wallet', 'browser-script.ts');
    return existsSync(entry) ? entry : null;
  } catch {
    return null;
  }
}

/** Bundles the browser entry with esbuild, in memory. */
export async function bundleWalletScript(entry: string): Promise<string> {
  const esbuild = (await import(ESBUILD)) as typeof import('esbuild');
  const out = await esbuild.build({
    ...WALLET_BUNDLE_OPTIONS,
    target: [...WALLET_BUNDLE_OPTIONS.target],
    entryPoints: [entry],
    write: false,
    logLevel: 'silent',
  });
  return out.outputFiles[0]!.text;
}

async function load(): Promise<WalletScriptAsset> {
  let text: string | null = null;
  const file = await builtFile();
  if (file) text = await readFile(file, 'utf8');
  else {
    const entry = sourceEntry();
    if (entry) text = await bundleWalletScript(entry);
  }
  if (text === null) {
    throw new MicropayError(
      'wallet_script_unavailable',
      'The browser wallet script is missing: dist/browser/micropay-wallet.js was not built. Run `npm run build` (or reinstall micropay).',
    );
  }
  const body = Buffer.from(text, 'utf8');
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url')}"` };
}

/**
 * The wallet script and its ETag, read (or bundled) once per process.
 * @example
 * const { body, etag } = await walletScriptAsset();
 */
export function walletScriptAsset(): Promise<WalletScriptAsset> {
  if (!cached) {
    cached = load();
    cached.catch(() => {
      cached = null; // try again next time (a build may have happened meanwhile)
    });
  }
  return cached;
}

/**
 * The browser wallet script (an IIFE), to serve as `application/javascript`.
 * @example
 * app.get('/wallet.js', async (_req, res) => res.type('js').send(await walletScript()));
 */
export async function walletScript(): Promise<string> {
  return (await walletScriptAsset()).body.toString('utf8');
}
