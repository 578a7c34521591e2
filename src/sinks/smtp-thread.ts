// The SMTP sink on a worker thread (smtp.thread; the default with SQLite synchronous=full):
// nodemailer's MIME building and SMTP sessions get a core of their own, so they do not take turns
// with the loop that polls Salesforce, renders, commits outbox state to SQLite (synchronously,
// node:sqlite; with synchronous=full an fsync per commit) and serves HTTP. Same SmtpSink contract
// as in-process.
import { Worker } from 'node:worker_threads';
import type { SmtpConfig } from '../config/index.ts';
import type { RenderedMessage } from '../types.ts';
import { SendError, type SendErrorInit, type SmtpSendResult, type SmtpSink } from './types.ts';

type Request = { op: 'send'; msg: RenderedMessage } | { op: 'verify' } | { op: 'close' };
export type WorkerRequest = Request & { id: number };

export type WorkerReply =
  | { id: number; ok: true; result?: SmtpSendResult }
  | { id: number; ok: false; error: SendErrorInit & { message: string } };

export interface WorkerInit {
  cfg: SmtpConfig;
  baseDir: string;
}

interface Pending {
  op: WorkerRequest['op'];
  resolve: (r: SmtpSendResult | undefined) => void;
  reject: (e: SendError) => void;
}

export function createThreadedSmtpSink(cfg: SmtpConfig, baseDir: string): SmtpSink {
  let worker: Worker | undefined;
  let nextId = 1;
  let closed = false;
  const pending = new Map<number, Pending>();

  const spawn = (): Worker => {
    // smtp-worker.js beside this file when running the build (dist/), smtp-worker.ts from sources
    const ext = import.meta.url.endsWith('.js') ? 'js' : 'ts';
    const w = new Worker(new URL(`./smtp-worker.${ext}`, import.meta.url), {
      workerData: { cfg, baseDir } satisfies WorkerInit,
      // Bounded so the thread's heap does not grow lazily far beyond what sending needs; the young
      // generation stays roomy: nodemailer allocates per message, and a small one costs ~20%
      // throughput in scavenges (bench/throughput.ts).
      resourceLimits: { maxOldGenerationSizeMb: 128, maxYoungGenerationSizeMb: 32 },
    });
    w.on('message', (reply: WorkerReply) => {
      const p = pending.get(reply.id);
      if (!p) return;
      pending.delete(reply.id);
      if (pending.size === 0) w.unref();
      if (reply.ok) p.resolve(reply.result);
      else p.reject(new SendError(reply.error.message, reply.error));
    });
    const fail = (err: Error): void => {
      if (worker === w) worker = undefined;
      // a message the dead thread was sending may have gone out: only 'uncertain' is safe for it
      for (const [id, p] of pending) {
        pending.delete(id);
        p.reject(
          new SendError(`SMTP worker thread failed: ${err.message}`, {
            kind: p.op === 'send' ? 'uncertain' : 'retry',
            code: 'EWORKER',
            cause: err,
          }),
        );
      }
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    w.unref();
    return w;
  };

  const call = (req: Request): Promise<SmtpSendResult | undefined> => {
    if (closed && req.op !== 'close') {
      return Promise.reject(new SendError('SMTP sink is closed', { kind: 'retry', code: 'ECONNECTION' }));
    }
    worker ??= spawn();
    const w = worker;
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { op: req.op, resolve, reject });
      // keep the process alive while a request is out, not while the pool idles
      w.ref();
      w.postMessage({ ...req, id } satisfies WorkerRequest);
    });
  };

  return {
    channel: 'email',
    async send(msg) {
      return (await call({ op: 'send', msg }))!;
    },
    async verify() {
      await call({ op: 'verify' });
    },
    async close() {
      if (closed) return;
      closed = true;
      const w = worker;
      if (!w) return;
      try {
        await call({ op: 'close' });
      } finally {
        worker = undefined;
        await w.terminate();
      }
    },
  };
}
