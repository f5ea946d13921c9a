/**
 * `micropay billing statements`: exports every account's ledger entries of a
 * month (or a range) from a running billing server, as CSV or JSON, to a
 * file or stdout: what a billing run imports. The export streams through
 * (never held in memory); on a terminal a progress bar runs on stderr, and
 * when stderr is piped nothing is printed there. A file is written as
 * FILE.part and renamed once complete, so a cut transfer never looks whole.
 */
import { once } from 'node:events';
import { createWriteStream, renameSync, rmSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { BillingClient } from '../../../billing-client/index.js';
import type { AdminStatementParams } from '../../../billing-client/types.js';
import { MicropayError } from '../../../protocol/errors.js';
import type { CliIO } from '../../io.js';
import { COMMON, CONNECTION_HELP, clientOf } from './admin.js';
import { usage } from './format.js';

const CMD = 'billing statements';

export const STATEMENTS_HELP = `Usage: micropay billing statements --period YYYY-MM [--format csv|json] [-o FILE] [connection options]
       micropay billing statements --from DATE [--to DATE] [--format csv|json] [-o FILE]

Exports every account's ledger entries of a month, one line per entry with its
running balance, and totals per currency: what a billing run imports.

Options:
  --period YYYY-MM      a calendar month in UTC, e.g. 2026-11
  --from DATE           instead of --period: start (inclusive), a date (2026-11-01),
                        an ISO time with a zone (2026-11-01T00:00:00Z) or Unix seconds
  --to DATE             end (exclusive; a bare date counts that whole day)
  --format csv|json     RFC 4180 CSV with a header row (default), or one JSON document
  -o, --output FILE     write to FILE (as FILE.part, renamed when complete); default stdout

A progress bar runs on stderr when it is a terminal; piped, the command is quiet.

${CONNECTION_HELP}

Example:
  micropay billing statements --period 2026-11 --format csv -o 2026-11.csv
`;

const MONTH = /^\d{4}-(0[1-9]|1[0-2])$/;

/**
 * Counts the entries going by in the export's bytes, without parsing it. CSV:
 * a record ends at a CRLF outside quotes (a doubled quote toggles twice), and
 * an entry's record starts with `e` (`entry`; the header starts `record`, a
 * totals row `total`). JSON: each entry starts a line with `{`.
 */
class EntryCounter {
  entries = 0;
  private quoted = false;
  private atStart = true;
  private prev = 0;
  constructor(private readonly format: 'csv' | 'json') {}

  feed(chunk: Uint8Array): void {
    const csv = this.format === 'csv';
    let prev = this.prev;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (csv) {
        if (this.atStart) {
          if (b === 0x65) this.entries++;
          this.atStart = false;
        }
        if (b === 0x22) this.quoted = !this.quoted;
        else if (b === 0x0a && prev === 0x0d && !this.quoted) this.atStart = true;
      } else if (b === 0x7b && prev === 0x0a) this.entries++;
      prev = b;
    }
    this.prev = prev;
  }
}

const number = (n: number) => n.toLocaleString('en-US');
const megabytes = (n: number) => `${(n / 1_048_576).toFixed(1)} MB`;

/** The bar on a terminal's stderr, redrawn at most ten times a second. */
class Progress {
  total: number | null = null;
  private last = 0;
  constructor(private readonly io: CliIO) {}

  draw(entries: number, bytes: number, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    let line: string;
    if (this.total !== null && this.total > 0) {
      const f = Math.min(1, entries / this.total);
      const width = 30;
      const full = Math.round(f * width);
      line = `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${String(Math.floor(f * 100)).padStart(3)}%  ${number(entries)} / ${number(this.total)} entries  ${megabytes(bytes)}`;
    } else line = `${number(entries)} entries  ${megabytes(bytes)}`;
    this.io.stderr.write(`\r${line}\x1b[K`);
  }

  done(text: string): void {
    this.io.stderr.write(`\r\x1b[K${text}\n`);
  }
}

/** Writes a chunk, waiting for `drain` when the stream's buffer is full. */
async function put(out: NodeJS.WritableStream, chunk: Uint8Array): Promise<void> {
  if (!out.write(chunk)) await once(out, 'drain');
}

/** Runs `micropay billing statements ...`. */
export async function statements(argv: string[], io: CliIO): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(STATEMENTS_HELP);
    return 0;
  }
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      ...COMMON,
      period: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      format: { type: 'string' },
      output: { type: 'string', short: 'o' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 0)
    throw usage(`Unexpected argument ${JSON.stringify(positionals[0]!.slice(0, 64))}.`, CMD);
  const format = values.format ?? 'csv';
  if (format !== 'csv' && format !== 'json') throw usage('--format must be "csv" or "json".', CMD);
  const params: AdminStatementParams = { format };
  if (values.period !== undefined) {
    if (!MONTH.test(values.period))
      throw usage(
        `--period ${JSON.stringify(values.period.slice(0, 32))} is not a month: write it YYYY-MM, like 2026-11.`,
        CMD,
      );
    if (values.from !== undefined || values.to !== undefined)
      throw usage('Give --period, or --from/--to, not both.', CMD);
    params.period = values.period;
  } else if (values.from !== undefined || values.to !== undefined) {
    if (values.from !== undefined) params.from = values.from;
    if (values.to !== undefined) params.to = values.to;
  } else throw usage('--period YYYY-MM is required (or --from and --to).', CMD);

  const client: BillingClient = clientOf(values, io);
  const tty = io.stderr.isTTY === true;
  const progress = tty ? new Progress(io) : null;
  const started = Date.now();
  // The entry count only feeds the bar: asked alongside, never waited for.
  const { format: _f, ...range } = params;
  const summary = progress
    ? client.admin.statementSummary(range).then(
        (s) => {
          progress.total = s.entries;
        },
        () => {},
      )
    : null;
  const body = await client.admin.statements(params);

  const target = values.output === undefined ? null : path.resolve(io.cwd, values.output);
  const part = target === null ? null : `${target}.part`;
  let file: WriteStream | null = null;
  const counter = new EntryCounter(format);
  let bytes = 0;
  const reader = body.getReader();
  try {
    if (part !== null) {
      file = createWriteStream(part, { flags: 'w', mode: 0o600 });
      await once(file, 'open');
    }
    const out: NodeJS.WritableStream = file ?? io.stdout;
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (e) {
        throw new MicropayError(
          'export_interrupted',
          `The export was cut off after ${megabytes(bytes)}; nothing was kept. Run the command again.`,
          { cause: e },
        );
      }
      if (next.done) break;
      bytes += next.value.length;
      counter.feed(next.value);
      await put(out, next.value);
      progress?.draw(counter.entries, bytes);
    }
    if (file) {
      const f = file;
      await new Promise<void>((resolve, reject) => {
        f.once('error', reject);
        f.end(() => resolve());
      });
      renameSync(part!, target!);
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    file?.destroy();
    if (part !== null) rmSync(part, { force: true });
    if (progress) io.stderr.write('\n');
    throw e;
  }
  if (progress) {
    // A short export can beat its own count; the final bar waits for it a moment.
    await Promise.race([summary, new Promise((r) => setTimeout(r, 500).unref())]);
    progress.draw(counter.entries, bytes, true);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    progress.done(
      `Wrote ${number(counter.entries)} entries (${megabytes(bytes)}) to ${target ?? 'stdout'} in ${secs} s.`,
    );
  }
  return 0;
}
