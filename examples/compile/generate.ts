/**
 * Builds examples/compile/after/ from examples/compile/site/: the same as
 *   micropay compile examples/compile/site -o examples/compile/after \
 *     --rules examples/compile/prices.yaml --merchant news-site
 * Run it with `npx tsx examples/compile/generate.ts`; test/compile/example.test.ts
 * checks that doing so reproduces the committed after/ exactly.
 */
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type CompileOptions, runCompile } from '../../src/compile/index.js';

/** Folder of this example. */
export const EXAMPLE_DIR = fileURLToPath(new URL('.', import.meta.url));

/** The options the example is built with, writing into `outDir`. */
export function exampleOptions(outDir: string): CompileOptions {
  return {
    input: join(EXAMPLE_DIR, 'site'),
    outDir,
    rules: join(EXAMPLE_DIR, 'prices.yaml'),
    merchant: 'news-site',
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const io = { stdout: process.stdout, stderr: process.stderr, isTTY: process.stderr.isTTY };
  process.exitCode = await runCompile(exampleOptions(join(EXAMPLE_DIR, 'after')), io);
}
