// Runs every benchmark under bench/ (or the ones named: npm run bench -- verify proxy).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

const wanted = process.argv.slice(2);
const all = readdirSync('bench', { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(`bench/${d.name}/index.ts`))
  .map((d) => d.name)
  .sort();
const names = wanted.length ? wanted : all;
let failed = 0;
for (const name of names) {
  if (!all.includes(name)) {
    console.error(`bench: no benchmark "${name}" (have: ${all.join(', ')})`);
    failed++;
    continue;
  }
  console.log(`\n== bench/${name}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', `bench/${name}/index.ts`], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
