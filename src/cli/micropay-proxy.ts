#!/usr/bin/env node
/**
 * The `micropay-proxy` binary: the paywall proxy in front of any site
 * (`micropay-proxy --config micropay.yaml`). The same command as
 * `micropay proxy`; everything is in `src/proxy/cli.ts`.
 */
import { run } from '../proxy/cli.js';
import { processIO, reportError } from './io.js';

const io = processIO();
run(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.exitCode = reportError(e, io, 'micropay-proxy');
  },
);
