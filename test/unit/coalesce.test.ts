import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { coalesceChunks } from '../../src/sinks/coalesce.ts';

/** what comes out of coalesceChunks(max) for these input pieces */
async function through(pieces: (Buffer | string)[], max?: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  const t = coalesceChunks(max);
  t.on('data', (b: Buffer) => out.push(b));
  await pipeline(Readable.from(pieces, { objectMode: false }), t);
  return out;
}

describe('coalesceChunks (one socket write per message)', () => {
  it('passes the pieces of a small message on as one piece, byte for byte', async () => {
    const pieces = ['Content-Type: text/plain\r\n', 'Subject: x\r\n', '\r\n', Buffer.from('body ü\r\n')];
    const out = await through(pieces);
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(Buffer.concat(pieces.map((p) => Buffer.from(p))))).toBe(true);
  });

  it('passes a large message on whenever it holds the limit, nothing lost', async () => {
    const pieces = Array.from({ length: 100 }, (_, i) => Buffer.alloc(1000, i));
    const out = await through(pieces, 16_000);
    // every 16 pieces of 1,000 bytes reach the limit: 6 such, then the 4,000 bytes left
    expect(out.map((b) => b.length)).toEqual([...Array(6).fill(16_000), 4000]);
    expect(Buffer.concat(out).equals(Buffer.concat(pieces))).toBe(true);
  });

  it('an empty message passes nothing on', async () => {
    expect(await through([])).toEqual([]);
  });
});
