/**
 * `compile()`: the HTML compiler over a directory (or one file). Reads every
 * page, settles prices across all of them (nothing is written when a page has
 * a bad price or a URL is priced twice differently), then writes the rewritten
 * pages, copies every other file unchanged, and writes the price manifest.
 * Also `compilePages()`, the same over pages held in memory.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { MicropayError } from '../protocol/errors.js';
import { isId } from '../protocol/ids.js';
import type { PriceManifest } from './manifest.js';
import { type CompiledRule, compileRule, loadRules, type PriceRule } from './rules.js';
import { type CompileIssue, SiteCompiler } from './site.js';

/** Default `src` of the wallet script the compiled pages load. */
export const DEFAULT_WALLET_SCRIPT = '/_micropay/wallet.js';
/** Default file name of the manifest, inside the output directory. */
export const DEFAULT_MANIFEST_NAME = 'micropay-manifest.json';
/** Extensions of the files compiled as HTML; every other file is copied unchanged. */
export const HTML_EXTENSIONS: readonly string[] = ['.html', '.htm'];

/** Options shared by `compile` and `compilePages`. */
export interface PricingOptions {
  /**
   * Price rules: the path of a YAML rules file, or the rules themselves.
   * The first rule matching a link prices it; `data-price` in the page wins.
   * @example 'prices.yaml'
   * @example [{ match: '/articles/*', price: '0.02 USD' }, { match: '/live/*', dynamic: 'livePrice' }]
   */
  rules?: string | readonly PriceRule[];
  /**
   * Merchant id (the offer's `mer`) written on every priced link as `data-micropay-merchant`.
   * @example 'news-site'
   */
  merchant?: string;
  /**
   * URL of the wallet script added to pages with priced links. Default `/_micropay/wallet.js`.
   * @example 'https://cdn.example/micropay-wallet.js'
   */
  walletScript?: string;
  /**
   * Where the site is served: a path (`/docs/`) or an absolute URL
   * (`https://news.example/`). Pages are located under it, so relative links
   * resolve as in a browser; absolute links to its origin are priced, links
   * to any other origin are left alone. Default `/`.
   * @example 'https://news.example/'
   */
  base?: string;
}

/** Options of `compile`. */
export interface CompileOptions extends PricingOptions {
  /**
   * The directory to compile (every file under it, following symbolic links
   * to files but not to directories), or a single HTML file.
   * @example 'site'
   */
  input: string;
  /**
   * The directory to write into; created when missing. It may be `input`
   * itself (compile in place) but not a directory inside it. Files already
   * there are overwritten where the input has the same path, others are kept.
   * @example 'dist'
   */
  outDir: string;
  /**
   * Where to write the price manifest. Default `<outDir>/micropay-manifest.json`.
   * @example 'micropay-manifest.json'
   */
  manifest?: string;
  /** Called as files are read and written, e.g. to show progress. */
  onProgress?: (progress: CompileProgress) => void;
}

/** Progress of a `compile` run. */
export interface CompileProgress {
  /** `read`: pages being parsed; `write`: files being written. */
  phase: 'read' | 'write';
  /** Files done in this phase, and out of how many. */
  done: number;
  total: number;
  /** The file just done, relative to the input. */
  file: string;
}

/** What a `compile` run did. */
export interface CompileSummary {
  /** Files found in the input. */
  files: number;
  /** HTML pages among them. */
  pages: number;
  /** Links carrying a price after compiling. */
  linksPriced: number;
  /** Pages with at least one priced link. */
  pagesPriced: number;
  /** Pages whose output differs from their input. */
  pagesChanged: number;
  /** The manifest written. */
  manifest: PriceManifest;
  /** Where it was written (absolute). */
  manifestPath: string;
  /** Markup that had no effect (a price on a link to another site ...), shadowed rules. */
  warnings: CompileIssue[];
}

/** A page given to `compilePages`. */
export interface PageInput {
  /** Its path inside the site, `/`-separated: `"blog/post.html"`. */
  path: string;
  html: string;
}

/** A page as `compilePages` returns it. */
export interface PageOutput {
  path: string;
  html: string;
  /** Whether `html` differs from the input. */
  changed: boolean;
  /** Links priced in it. */
  linksPriced: number;
}

/** What `compilePages` returns. */
export interface CompilePagesResult {
  pages: PageOutput[];
  manifest: PriceManifest;
  warnings: CompileIssue[];
}

/** Options resolved once for a run. */
function prepare(options: PricingOptions, label: string): SiteCompiler {
  let rules: CompiledRule[] = [];
  if (typeof options.rules === 'string') rules = loadRules(options.rules);
  else if (options.rules) rules = options.rules.map((r, i) => compileRule(r, `rules[${i}]`));
  if (options.merchant !== undefined && !isId(options.merchant)) {
    throw new MicropayError(
      'invalid_options',
      `merchant ${JSON.stringify(options.merchant)} is not a merchant id: use 1 to 128 of A-Z a-z 0-9 . _ : -.`,
    );
  }
  const walletScript = options.walletScript ?? DEFAULT_WALLET_SCRIPT;
  if (walletScript.trim() === '')
    throw new MicropayError('invalid_options', 'walletScript must not be empty.');
  let siteUrl: URL;
  try {
    siteUrl = new URL(options.base ?? '/', 'https://site.invalid');
  } catch (e) {
    throw new MicropayError('invalid_options', `base ${JSON.stringify(options.base)} is not a path or URL.`, {
      cause: e,
    });
  }
  if (siteUrl.protocol !== 'http:' && siteUrl.protocol !== 'https:') {
    throw new MicropayError(
      'invalid_options',
      `base ${JSON.stringify(options.base)} must be a path or an http(s) URL.`,
    );
  }
  siteUrl.search = '';
  siteUrl.hash = '';
  if (!siteUrl.pathname.endsWith('/')) siteUrl.pathname += '/';
  return new SiteCompiler({
    rules,
    walletScript,
    siteUrl,
    label,
    ...(options.merchant ? { merchant: options.merchant } : {}),
  });
}

/**
 * Compiles pages held in memory: the same as `compile` without files.
 * Sources in messages and in the manifest name pages by `label + path`.
 * Throws `CompileError` (a `MicropayError`) listing every problem.
 * @example compilePages([{ path: 'index.html', html }], { rules: [{ match: '/articles/*', price: '$0.02' }] })
 */
export function compilePages(
  pages: readonly PageInput[],
  options: PricingOptions = {},
  label = '',
): CompilePagesResult {
  const site = prepare(options, label);
  const added = pages.map((p) => site.add(p.path, p.html));
  site.resolve();
  const out = added.map((page, i) => {
    const html = site.render(page, pages[i]!.html);
    return { path: page.path, html, changed: html !== pages[i]!.html, linksPriced: page.priced.size };
  });
  const manifest = site.manifest();
  return { pages: out, manifest, warnings: site.warnings };
}

async function listFiles(root: string, dir = ''): Promise<string[]> {
  const entries = await readdir(join(root, dir), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const entry of entries) {
    const rel = dir === '' ? entry.name : `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...(await listFiles(root, rel)));
    else if (entry.isFile()) out.push(rel);
    // A symbolic link is followed to a file, never to a directory (no cycles).
    else if (entry.isSymbolicLink() && (await stat(join(root, rel)).catch(() => null))?.isFile())
      out.push(rel);
  }
  return out;
}

function isHtml(path: string): boolean {
  const lower = path.toLowerCase();
  return HTML_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes a page: UTF-8 when it is valid UTF-8, else byte for byte (latin1), so that every byte survives. */
function decode(bytes: Buffer): { text: string; utf8: boolean } {
  try {
    return { text: UTF8.decode(bytes), utf8: true };
  } catch {
    return { text: bytes.toString('latin1'), utf8: false };
  }
}

function digest(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Compiles a directory of HTML pages into click-and-pay pages and a price
 * manifest: see `PricingOptions` and `CompileOptions`. Throws `CompileError`
 * (code `price_conflict`, `invalid_price` or `compile_failed`) before writing
 * anything when a page has a bad price or a URL is priced twice differently;
 * `invalid_rules` for a bad rules file; `invalid_options` for bad options.
 * @example
 * const summary = await compile({ input: 'site', outDir: 'dist', rules: 'prices.yaml', merchant: 'news-site' });
 * console.log(`${summary.linksPriced} links priced, manifest at ${summary.manifestPath}`);
 */
export async function compile(options: CompileOptions): Promise<CompileSummary> {
  const input = resolve(options.input);
  const outDir = resolve(options.outDir);
  const manifestPath = resolve(options.manifest ?? join(outDir, DEFAULT_MANIFEST_NAME));
  let inputStat: Awaited<ReturnType<typeof stat>>;
  try {
    inputStat = await stat(input);
  } catch (e) {
    throw new MicropayError(
      'invalid_options',
      `Input ${options.input} cannot be read: ${(e as Error).message}.`,
      {
        cause: e,
      },
    );
  }
  let root: string;
  let files: string[];
  if (inputStat.isDirectory()) {
    if (outDir !== input && (outDir + sep).startsWith(input + sep)) {
      throw new MicropayError(
        'invalid_options',
        `The output directory ${options.outDir} is inside the input ${options.input}: choose one outside it (or the input itself).`,
      );
    }
    root = input;
    files = await listFiles(root);
  } else {
    root = dirname(input);
    files = [basename(input)];
  }
  const label = inputStat.isDirectory() ? `${basename(input)}/` : '';
  const site = prepare(options, label);
  const progress = options.onProgress;

  const htmlFiles = files.filter(isHtml);
  const pages = new Map<string, { page: ReturnType<SiteCompiler['add']>; hash: string; utf8: boolean }>();
  let done = 0;
  for (const file of htmlFiles) {
    const bytes = await readFile(join(root, file));
    const { text, utf8 } = decode(bytes);
    pages.set(file, { page: site.add(file, text), hash: digest(bytes), utf8 });
    progress?.({ phase: 'read', done: ++done, total: htmlFiles.length, file });
  }
  site.resolve();
  const manifest = site.manifest();

  let pagesChanged = 0;
  let pagesPriced = 0;
  done = 0;
  const sameDir = root === outDir;
  for (const file of files) {
    const from = join(root, file);
    const to = join(outDir, file);
    const entry = pages.get(file);
    if (entry) {
      // Read again rather than keep every page in memory; the offsets found must still hold.
      const bytes = await readFile(from);
      if (digest(bytes) !== entry.hash) {
        throw new MicropayError(
          'compile_failed',
          `${label}${file} changed while it was being compiled; run again.`,
        );
      }
      if (entry.page.priced.size > 0) pagesPriced++;
      const { text } = decode(bytes);
      const html = site.render(entry.page, text, !entry.utf8);
      const changed = html !== text;
      if (changed) pagesChanged++;
      if (changed || !sameDir) {
        await mkdir(dirname(to), { recursive: true });
        await writeFile(to, changed ? Buffer.from(html, entry.utf8 ? 'utf8' : 'latin1') : bytes);
      }
    } else if (!sameDir) {
      await mkdir(dirname(to), { recursive: true });
      await copyFile(from, to);
    }
    progress?.({ phase: 'write', done: ++done, total: files.length, file });
  }
  await mkdir(dirname(manifestPath), { recursive: true });
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);

  return {
    files: files.length,
    pages: htmlFiles.length,
    linksPriced: site.linksPriced,
    pagesPriced,
    pagesChanged,
    manifest,
    manifestPath,
    warnings: site.warnings,
  };
}
