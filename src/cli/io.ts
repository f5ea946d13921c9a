/**
 * What a CLI command gets: its arguments and its streams, so tests can run
 * commands in process and check what they print. Also the one way commands
 * report errors: a coded sentence, never a stack trace.
 */
import { isMicropayError } from '../protocol/errors.js';

export interface CliIO {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** A subcommand: resolves to the exit code. */
export type Command = (argv: string[], io: CliIO) => Promise<number>;

export const processIO = (): CliIO => ({
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
});

/** Prints an error as `micropay: <code>: <sentence>` and returns exit code 1 (2 for usage errors). */
export function reportError(e: unknown, io: CliIO, prog = 'micropay'): number {
  if (isMicropayError(e)) {
    io.stderr.write(`${prog}: ${e.code}: ${e.message}\n`);
    return e.code === 'usage' ? 2 : 1;
  }
  const err = e as { code?: string; message?: string };
  if (
    err?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ||
    err?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ||
    err?.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
  ) {
    io.stderr.write(`${prog}: usage: ${err.message} (see --help)\n`);
    return 2;
  }
  io.stderr.write(`${prog}: internal_error: ${err?.message ?? String(e)}\n`);
  return 1;
}
