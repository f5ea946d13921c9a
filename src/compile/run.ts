/**
 * `runCompile()`: what the `micropay compile` command does once its arguments
 * are parsed. Runs `compile`, shows progress on a terminal, prints warnings
 * and problems to stderr and a summary to stdout, and returns the exit code.
 * The CLI entry (src/cli/) only parses arguments and calls it.
 */
import { relative } from 'node:path';
import { isMicropayError } from '../protocol/errors.js';
import { type CompileOptions, type CompileProgress, compile } from './compile.js';
import { CompileError } from './site.js';

/** Where `runCompile` writes. `process` fits: `{ stdout: process.stdout, stderr: process.stderr, isTTY: process.stderr.isTTY }`. */
export interface CompileIO {
  /** Receives the summary. */
  stdout: { write(chunk: string): unknown };
  /** Receives progress, warnings and problems. */
  stderr: { write(chunk: string): unknown };
  /** Whether stderr is a terminal: progress is shown only then. */
  isTTY?: boolean;
  /** Least milliseconds between two progress lines. Default 100. */
  progressInterval?: number;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * Compiles as `compile` does and reports like a command: returns `0` on
 * success, `1` when the pages, rules or options are at fault (the reasons
 * go to stderr). Unexpected errors are thrown.
 * @example
 * const code = await runCompile({ input: 'site', outDir: 'dist', rules: 'prices.yaml' },
 *   { stdout: process.stdout, stderr: process.stderr, isTTY: process.stderr.isTTY });
 * process.exitCode = code;
 */
export async function runCompile(options: CompileOptions, io: CompileIO): Promise<number> {
  const interval = io.progressInterval ?? 100;
  let last = -Infinity;
  let shown = false;
  const clear = () => {
    if (shown) io.stderr.write('\r\x1b[K');
    shown = false;
  };
  const onProgress = (p: CompileProgress) => {
    options.onProgress?.(p);
    if (!io.isTTY) return;
    const now = Date.now();
    if (now - last < interval && p.done !== p.total) return;
    last = now;
    const verb = p.phase === 'read' ? 'reading' : 'writing';
    const file = p.file.length > 50 ? `...${p.file.slice(-47)}` : p.file;
    io.stderr.write(`\r\x1b[Kmicropay compile: ${verb} ${p.done}/${p.total} ${file}`);
    shown = true;
  };
  try {
    const s = await compile({ ...options, onProgress });
    clear();
    for (const w of s.warnings) io.stderr.write(`warning: ${w.source}: ${w.message}\n`);
    const manifest = relative(process.cwd(), s.manifestPath) || s.manifestPath;
    io.stdout.write(
      `Compiled ${plural(s.files, 'file')} (${plural(s.pages, 'page')}): ` +
        `${plural(s.linksPriced, 'link')} priced on ${plural(s.pagesPriced, 'page')}, ` +
        `${plural(s.pagesChanged, 'page')} changed; ` +
        `manifest ${manifest} (${plural(s.manifest.routes.length, 'route')}).\n`,
    );
    return 0;
  } catch (e) {
    clear();
    if (e instanceof CompileError) {
      for (const p of e.problems) io.stderr.write(`error: ${p.source}: ${p.message}\n`);
      io.stderr.write(`micropay compile: nothing written, ${plural(e.problems.length, 'problem')} to fix.\n`);
      return 1;
    }
    if (isMicropayError(e)) {
      io.stderr.write(`error: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
