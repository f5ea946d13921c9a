/**
 * Helpers of the compiler tests: undoing exactly what the compiler inserts,
 * so a test can check that every other byte of a page is unchanged.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES = fileURLToPath(new URL('../fixtures/compile/', import.meta.url));

/** The new attributes on a link, as the compiler writes them. */
const COMPILED_ATTR = / data-micropay-(?:price|amt|cur|dynamic|requesturl|merchant|duration|title)="[^"]*"/g;
/** The wallet script tag, on a line of its own or inline. */
const WALLET_LINE = /^[ \t]*<script src="[^"]*" defer data-micropay-wallet><\/script>\r?\n/m;
const WALLET_INLINE = /<script src="[^"]*" defer data-micropay-wallet><\/script>/;

/** Removes what the compiler inserts into a page (latin1 strings work too: the markers are ASCII). */
export function stripCompiled(page: string): string {
  const withoutAttrs = page.replace(COMPILED_ATTR, '');
  return WALLET_LINE.test(withoutAttrs)
    ? withoutAttrs.replace(WALLET_LINE, '')
    : withoutAttrs.replace(WALLET_INLINE, '');
}

/** A fresh temporary directory. */
export function tempDir(prefix = 'micropay-compile-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Every file under `root`, `/`-separated and sorted, with its bytes. */
export function readTree(root: string, dir = ''): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of readdirSync(join(root, dir)).sort()) {
    const rel = dir ? `${dir}/${name}` : name;
    if (statSync(join(root, rel)).isDirectory()) {
      for (const [k, v] of readTree(root, rel)) out.set(k, v);
    } else {
      out.set(rel, readFileSync(join(root, rel)));
    }
  }
  return out;
}
