/**
 * Load generation for the benchmarks. Throughput is measured with wrk when it
 * is installed (`apt-get install wrk`): a C load generator leaves the 2 cores
 * here to the server far better than autocannon, whose per-request header
 * setup otherwise becomes the bottleneck and flattens every ratio. Latency at a
 * fixed rate is `paced.ts`. Per-request headers (pre-signed
 * orders) are fed to wrk from a file through a small Lua script.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';

export interface LoadResult {
  rps: number;
  p99: number;
  non2xx: number;
  tool: 'wrk' | 'autocannon';
  /** Requests per CPU-second of the measured server process (when its pid is given). */
  perCpu?: number;
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 (utime, stime) of proc(5), counted from after the command name.
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * Like `load`, and also the server's requests per CPU-second: on a shared 2-core machine
 * the server never has a core to itself, so wall-clock rates of two runs are only comparable
 * through the CPU the server actually got.
 */
export async function loadMeasured(
  pid: number,
  url: string,
  headers: string[],
  seconds: number,
): Promise<LoadResult> {
  const c0 = cpuSeconds(pid);
  const r = await load(url, headers, seconds);
  const cpu = cpuSeconds(pid) - c0;
  return { ...r, perCpu: cpu > 0 ? (r.rps * seconds) / cpu : 0 };
}

export const hasWrk = (() => {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (e) {
    // wrk --version exits 1 after printing its version.
    return (e as { status?: number }).status === 1;
  }
})();

// Each request is formatted once, in init (before wrk starts its clock), so that the load
// generator's work per request is a table lookup rather than a wrk.format of a 1 KB header; without
// a file of headers no `request` function is defined and wrk sends one static request. Measured
// against a trivial node:http server (3 s runs, wrk's user CPU per request): 8.1 -> 7.2 us with
// 1 KB headers, 2.3 -> 1.6 us without. Most of wrk's cost is the kernel's (about 16 us a request).
const LUA = `
local reqs = {}
local i = 0
local header = os.getenv("BENCH_HEADER") or "Micropay-Payment"
init = function(args)
  if args[1] then
    for l in io.lines(args[1]) do reqs[#reqs + 1] = wrk.format("GET", nil, { [header] = l }) end
    request = function()
      i = i + 1
      return reqs[(i - 1) % #reqs + 1]
    end
  end
end
done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("RESULT %f %f %d\\n", summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000, non2xx))
end
`;

/**
 * Sends GETs to `url` for `seconds`; each request carries the next of `headers` (cycled) as
 * `Micropay-Payment`, or no such header when `headers` is empty.
 */
export async function load(
  url: string,
  headers: string[],
  seconds: number,
  connections = 32,
): Promise<LoadResult> {
  if (hasWrk) {
    const dir = mkdtempSync(join(tmpdir(), 'mp-bench-'));
    try {
      writeFileSync(join(dir, 'load.lua'), LUA);
      const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '-s', join(dir, 'load.lua'), url];
      if (headers.length) {
        writeFileSync(join(dir, 'headers.txt'), `${headers.join('\n')}\n`);
        args.push('--', join(dir, 'headers.txt'));
      }
      const r = spawnSync('wrk', args, { encoding: 'utf8' });
      const m = /RESULT ([\d.]+) ([\d.]+) (\d+)/.exec(r.stdout);
      if (!m) throw new Error(`wrk failed: ${r.stderr || r.stdout}`);
      return { rps: Number(m[1]), p99: Number(m[2]), non2xx: Number(m[3]), tool: 'wrk' };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  let i = 0;
  const r = await autocannon({
    url,
    connections,
    duration: seconds,
    requests: [
      {
        setupRequest: (req) => ({
          ...req,
          headers: headers.length ? { 'micropay-payment': headers[i++ % headers.length]! } : {},
        }),
      },
    ],
  });
  return { rps: r.requests.average, p99: r.latency.p99, non2xx: r.non2xx, tool: 'autocannon' };
}

/** The median of some numbers (the benches report medians of interleaved rounds). */
export function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
}
