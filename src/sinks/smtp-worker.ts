// Worker-thread entry of the threaded SMTP sink (see smtp-thread.ts): runs the in-process sink.
import { parentPort, workerData } from 'node:worker_threads';
import { coerceError } from '../util/errors.ts';
import { createInProcessSmtpSink } from './smtp.ts';
import { SendError } from './types.ts';
import type { WorkerInit, WorkerReply, WorkerRequest } from './smtp-thread.ts';

const { cfg, baseDir } = workerData as WorkerInit;
const sink = createInProcessSmtpSink(cfg, baseDir);
const port = parentPort!;

function errorReply(id: number, err: unknown): WorkerReply {
  const e =
    err instanceof SendError
      ? err
      : new SendError(coerceError(err).message, { kind: 'retry', code: 'EWORKER' });
  return { id, ok: false, error: e.toJSON() };
}

port.on('message', (req: WorkerRequest) => {
  let work: Promise<WorkerReply>;
  switch (req.op) {
    case 'send':
      work = sink.send(req.msg).then((result) => ({ id: req.id, ok: true, result }));
      break;
    case 'verify':
      work = sink.verify().then(() => ({ id: req.id, ok: true }));
      break;
    case 'close':
      work = sink.close().then(() => ({ id: req.id, ok: true }));
      break;
  }
  void work.then(
    (reply) => port.postMessage(reply),
    (err: unknown) => port.postMessage(errorReply(req.id, err)),
  );
});
