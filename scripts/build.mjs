// Builds dist/esm (ES modules) and dist/cjs (CommonJS) with type declarations.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, rmSync, writeFileSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
const tsc = (project) =>
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', project], { stdio: 'inherit' });
tsc('tsconfig.build.json');
tsc('tsconfig.cjs.json');
writeFileSync('dist/cjs/package.json', '{ "type": "commonjs" }\n');
for (const bin of ['dist/esm/cli/micropay.js', 'dist/esm/cli/micropay-proxy.js']) {
  if (existsSync(bin)) chmodSync(bin, 0o755);
}
