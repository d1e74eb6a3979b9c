/*
 * The worker's chunked change log (src/worker/change-log.ts) against a plain byte array:
 * records appended, cut back to a mark (a failed batch), handed over up to a commit with
 * the rest kept, across chunk boundaries; a record never spans two chunks.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChangeLog } from '../src/worker/change-log.js';

type Step =
  | { readonly t: 'record'; readonly size: number; readonly fill: number }
  | { readonly t: 'mark' }
  | { readonly t: 'undo' }
  | { readonly t: 'commit' }
  | { readonly t: 'take' };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('record' as const),
      // Mostly small, sometimes larger than a chunk.
      size: fc.oneof(fc.integer({ min: 4, max: 300 }), fc.integer({ min: 4, max: 300_000 })),
      fill: fc.integer({ min: 0, max: 255 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ t: 'mark' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'undo' as const }) },
  { weight: 2, arbitrary: fc.constant({ t: 'commit' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'take' as const }) },
);

describe('ChangeLog', () => {
  it('hands over exactly the committed bytes and keeps the rest, whatever the chunks', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const log = new ChangeLog();
        let model: number[] = [];
        let committed = 0;
        let mark = 0;
        for (const s of steps) {
          if (s.t === 'record') {
            log.room(s.size);
            const start = log.pos;
            for (let i = 0; i < s.size; i++) {
              log.buf[start + i] = (s.fill + i) & 0xff; // no two neighbours alike
              model.push((s.fill + i) & 0xff);
            }
            log.pos = start + s.size;
          } else if (s.t === 'mark') mark = log.end;
          else if (s.t === 'undo') {
            const to = Math.max(mark, committed);
            log.truncate(to);
            model = model.slice(0, to);
          } else if (s.t === 'commit') committed = log.end;
          else {
            const chunks = log.take(committed);
            const taken = Buffer.concat(chunks);
            expect(taken.equals(Buffer.from(model.slice(0, committed)))).toBe(true);
            for (const c of chunks) expect(c.length).toBeGreaterThan(0);
            model = model.slice(committed);
            committed = 0;
            mark = 0;
          }
          expect(log.end).toBe(model.length);
        }
      }),
      { numRuns: 100 },
    );
  });
});

describe('ChangeLog, a commit in the middle of a chunk', () => {
  it('keeps the open transaction behind the commit, byte for byte, for the next hand-over', () => {
    const log = new ChangeLog();
    const append = (bytes: number[]): void => {
      log.room(bytes.length);
      log.buf.set(bytes, log.pos);
      log.pos += bytes.length;
    };
    append([1, 2, 3]);
    const committed = log.end;
    append([4, 5, 6, 7]);
    expect([...Buffer.concat(log.take(committed))]).toEqual([1, 2, 3]);
    expect(log.end).toBe(4);
    append([8]);
    expect([...Buffer.concat(log.take(log.end))]).toEqual([4, 5, 6, 7, 8]);
  });
});
