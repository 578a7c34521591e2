// One socket write per message instead of one per MIME chunk. nodemailer streams a message as the
// pieces its MIME tree yields (headers, boundaries, each encoded part, line endings), and its SMTP
// data stream writes each piece to the socket as it comes: 9 write(2) calls a message for a small
// two-part notification, beside the one writev of its commands (strace, bench/RESULTS.md seventh
// round). Gathered in front of it, that is 2: the message and the final ".". nodemailer has no
// option for this, and socket.cork() is not ours to call on its connection, hence this transform.
import { Transform } from 'node:stream';

/** once this much is held it is passed on (a large attachment still streams) */
export const COALESCE_BYTES = 64 * 1024;

/** A Transform that passes its input on whenever it holds `maxBytes` or more, and the rest at the end. */
export function coalesceChunks(maxBytes: number = COALESCE_BYTES): Transform {
  let held: Buffer[] = [];
  let size = 0;
  const take = (): Buffer => {
    const out = held.length === 1 ? held[0]! : Buffer.concat(held, size);
    held = [];
    size = 0;
    return out;
  };
  return new Transform({
    // (strings arrive as Buffers: decodeStrings is on)
    transform(chunk: Buffer, _encoding, done) {
      held.push(chunk);
      size += chunk.length;
      if (size >= maxBytes) done(null, take());
      else done();
    },
    flush(done) {
      done(null, size ? take() : undefined);
    },
  });
}
