// The channels' public face: the contract (types.ts) and the factory that picks how the SMTP
// channel runs (on a worker thread by default, or in-process).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type pino from 'pino';
import type { SmtpConfig } from '../config/index.ts';
import { createInProcessSmtpSink } from './smtp.ts';
import { createThreadedSmtpSink } from './smtp-thread.ts';
import type { SmtpSink } from './types.ts';

export { attempt, SendError } from './types.ts';
export type { Attempt, Channel, FailureKind, SendErrorInit, SmtpSendResult, SmtpSink } from './types.ts';
export { classifySmtpError, toMailOptions } from './smtp.ts';

export interface SmtpSinkOptions {
  /** tls.ca is read relative to this (the config file's directory) */
  baseDir: string;
  logger?: pino.Logger;
  /**
   * Run nodemailer on the calling thread instead of a worker thread (default false; the daemon
   * follows smtp.thread, see app.ts). The worker gives sending a core of its own, so the sockets
   * keep moving while the main thread polls, renders and commits, at the cost of a second V8
   * isolate.
   */
  inProcess?: boolean;
}

/**
 * Whether the daemon runs nodemailer on a worker thread: smtp.thread when set, else only when each
 * commit waits for an fsync (SQLite synchronous=full), which would stall sockets on that thread.
 * On one thread the daemon's own work (polling, rendering, commits) and nodemailer's take turns;
 * the worker gives sending a core of its own, for 15-25 MB more resident (bench/RESULTS.md, fourth
 * round: 0.61 of plain pooled nodemailer's rate on one thread, 0.67 with the worker).
 */
export function smtpOnWorker(cfg: SmtpConfig, fsyncPerCommit: boolean): boolean {
  return cfg.thread ?? fsyncPerCommit;
}

export function createSmtpSink(cfg: SmtpConfig, opts: SmtpSinkOptions): SmtpSink {
  if (cfg.tls.rejectUnauthorized === false) {
    opts.logger?.warn(
      { host: cfg.host, port: cfg.port },
      'SMTP TLS certificate verification is DISABLED (smtp.tls.rejectUnauthorized: false): ' +
        'anyone on the network path can read the mail and the SMTP password',
    );
  }
  // read here so that a missing CA file fails at start-up, on the caller's thread
  if (cfg.tls.ca) readFileSync(resolve(opts.baseDir, cfg.tls.ca));
  return opts.inProcess
    ? createInProcessSmtpSink(cfg, opts.baseDir)
    : createThreadedSmtpSink(cfg, opts.baseDir);
}
