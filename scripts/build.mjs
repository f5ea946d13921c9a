// Builds dist/esm (ES modules) and dist/cjs (CommonJS) with type declarations,
// and dist/browser/micropay-wallet.js, the browser wallet script (one IIFE).
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
const tsc = (project) =>
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', project], { stdio: 'inherit' });
tsc('tsconfig.build.json');
tsc('tsconfig.cjs.json');
writeFileSync('dist/cjs/package.json', '{ "type": "commonjs" }\n');
for (const bin of ['dist/esm/cli/micropay.js', 'dist/esm/cli/micropay-proxy.js']) {
  if (existsSync(bin)) chmodSync(bin, 0o755);
}

// The browser wallet script, bundled with the options src/middleware/wallet-script.ts uses when running from source.
const { bundleWalletScript } = await import('../dist/esm/middleware/wallet-script.js');
const script = await bundleWalletScript('src/wallet/browser-script.ts');
mkdirSync('dist/browser', { recursive: true });
writeFileSync('dist/browser/micropay-wallet.js', script);
// How the compiled wallet-script.js finds it: a module beside it that knows its own location.
writeFileSync(
  'dist/esm/middleware/wallet-script-file.js',
  "import { fileURLToPath } from 'node:url';\nexport const file = fileURLToPath(new URL('../../browser/micropay-wallet.js', import.meta.url));\n",
);
writeFileSync(
  'dist/cjs/middleware/wallet-script-file.js',
  "'use strict';\nexports.file = require('node:path').join(__dirname, '../../browser/micropay-wallet.js');\n",
);
const { gzipSync } = await import('node:zlib');
console.log(
  `dist/browser/micropay-wallet.js: ${Buffer.byteLength(script)} bytes, ${gzipSync(script).length} gzipped`,
);
