/**
 * The benches' billing server stands for a service on another machine: on the
 * 2 cores here it would otherwise take CPU from the merchant being measured
 * (it verifies every deposited order again). It runs at idle priority
 * (SCHED_IDLE, `chrt` from util-linux), so it gets only the CPU the merchant
 * and the load generator leave; deposits still flow, and each bench waits
 * until every charged order is credited before it reports.
 */
import { execFileSync } from 'node:child_process';
import { setPriority } from 'node:os';

/** Puts every thread of `pid` at idle priority; says which it got. */
export function idlePriority(pid: number): string {
  try {
    execFileSync('chrt', ['--idle', '--all-tasks', '--pid', '0', String(pid)], { stdio: 'ignore' });
    return 'SCHED_IDLE';
  } catch {
    setPriority(pid, 19);
    return 'nice 19';
  }
}
