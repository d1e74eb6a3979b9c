/*
 * Odd arguments an adversarial review found unhandled (each test failed before its fix):
 * - a Key whose memory was detached: the keys and payloads of a reply's rows share one
 *   ArrayBuffer, so transferring one row's payload.buffer detaches every key of the page.
 *   A put or add of such a key on the fast path threw, left half a record in the turn's
 *   frame, and then the flush never settled or the worker died with the writes before it
 *   (and, on a shared thread, its other jobs); the codec threw TypeErrors or read it as an
 *   empty key (`prefixRange` of it spanned the whole category);
 * - a list claiming 2^32 - 1 keys for getMany (the process died out of memory: now refused,
 *   since no request message can carry it) or 2^32 - 1 empty arrays for key() and payloads
 *   (minutes of encoding nothing);
 * - a clock that writes to the job (its writes vanished; then, in a first fix, the turn
 *   its write started went without the clock's time, so expired rows were read);
 * - a string-id write under an id that is not a string (the next flush of the job whose
 *   name it printed as failed).
 * Both threading modes, file and ':memory:' roots where a job is involved.
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  type Job,
  type Key,
  key,
  Persistency,
  type PersistencyEvents,
  payload,
  prefixRange,
  toKey,
  toPayload,
} from '../src/index.js';
import { orHang, unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-hostile-review-');

/** A key read back by a scan, whose page's buffer the caller then transferred away. */
async function detachedKey(job: Job): Promise<Key> {
  job.persistPut('src', key('row'), payload('its payload'));
  const [row] = unwrap(await job.scan('src', { start: key() }));
  if (row === undefined) throw new Error('no row');
  structuredClone(row.payload, { transfer: [row.payload.buffer as ArrayBuffer] });
  return row.key;
}

/** A list that says it holds 2^32 - 1 copies of `item` (a proxy: no memory behind it). */
function huge<T>(item: T): T[] {
  return new Proxy([] as T[], {
    get: (target, p) =>
      p === 'length'
        ? 2 ** 32 - 1
        : typeof p === 'string' && /^\d+$/.test(p)
          ? item
          : Reflect.get(target, p),
  });
}

describe.each(ROOT_MODES)('odd arguments (%s)', (_name, memory, options) => {
  const open = () => unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));

  it.each(['persistPut', 'persistAdd'] as const)(
    'a detached Key given to %s on its fast path is one writeFailed; the writes around it land',
    async (method) => {
      const p = open();
      const failed: PersistencyEvents['writeFailed'][] = [];
      p.events.on('writeFailed', (e) => failed.push(e));
      try {
        const job = unwrap(await p.openJob('j'));
        const bystander = unwrap(await p.openJob('bystander'));
        job.persistPut('c', key('warm'), payload('w')); // 'c' is known: the fast path
        job.persistAdd('c', key('n'), 1);
        unwrap(await job.flush());
        const k = await detachedKey(job);
        job.persistPut('c', key('before'), payload('before'));
        expect(() =>
          method === 'persistPut'
            ? job.persistPut('c', k, payload('x'))
            : job.persistAdd('c', k, 1),
        ).not.toThrow();
        const sameTurn = job.flush(); // in the same frame as the refused write
        job.persistPut('c', key('after'), payload('after'));
        const flushed = await orHang(sameTurn, 20_000);
        expect(flushed !== 'hung' && flushed.isErr() && flushed.error).toMatchObject({
          kind: 'WriteFailed',
          count: 1,
        });
        expect(failed).toMatchObject([{ reason: 'invalid', error: { kind: 'InvalidArgument' } }]);
        expect(failed[0]?.error.message).toMatch(/detached/);
        unwrap(await job.flush());
        expect(unwrap(await job.get('c', key('before')))).toEqual(payload('before'));
        expect(unwrap(await job.get('c', key('after')))).toEqual(payload('after'));
        expect(job.running).toBe(true);
        bystander.persistPut('c', key(1), payload(1));
        unwrap(await bystander.flush());
      } finally {
        expect((await p.close()).isOk()).toBe(true);
      }
    },
  );

  it('a detached Key is InvalidArgument for reads and for the codec, which never reads it as another', async () => {
    const p = open();
    try {
      const job = unwrap(await p.openJob('j'));
      const k = await detachedKey(job);
      for (const r of [
        await job.get('src', k),
        await job.getMany('src', [key('row'), k]),
        await job.scanPrefix('src', k),
        await job.count('src', { start: k }),
      ])
        expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
      expect(() => k.bytes).toThrow(expect.objectContaining({ kind: 'InvalidArgument' }));
      expect(() => prefixRange(k)).toThrow(expect.objectContaining({ kind: 'InvalidArgument' }));
      expect(() => key('a', k)).toThrow(expect.objectContaining({ kind: 'InvalidArgument' }));
      expect(String(k)).toBe('(detached)');
      expect(inspect(k)).toBe('Key<(detached)>');
      expect(k.equals(key())).toBe(false);
      expect(k.byteLength).toBe(0);
      expect(unwrap(await job.get('src', key('row')))).toEqual(payload('its payload'));
    } finally {
      await p.close();
    }
  });

  it('getMany of a list claiming 2^32 - 1 keys is InvalidArgument before reading one', async () => {
    const p = open();
    try {
      const job = unwrap(await p.openJob('j'));
      const r = await job.getMany('c', huge(key(1)));
      expect(r.isErr() && r.error).toMatchObject({ kind: 'InvalidArgument' });
      expect(r.isErr() && r.error.message).toMatch(/4294967295 keys cannot travel in one request/);
      expect(unwrap(await job.getMany('c', [key(1)]))).toEqual([undefined]);
    } finally {
      await p.close();
    }
  });

  it.each([
    ['once', true],
    ['at every reading', false],
  ])(
    "a clock that writes to its job %s: the writes land, and the turn's reads go by its time",
    async (_how, once) => {
      let time = 1_000_000;
      let armed = !once;
      let job: Job | undefined;
      const clock = () => {
        if (armed && job !== undefined) {
          if (once) armed = false;
          job.persistAdd('audit', key('reads'), 1);
        }
        return time;
      };
      const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), { ...options, clock }));
      try {
        job = unwrap(await p.openJob('j'));
        job.persistPut('c', key(1), payload(1), { expireInMs: 1000 });
        unwrap(await job.flush());
        expect(unwrap(await job.get('c', key(1)))).toEqual(payload(1));
        time += 5000; // key 1 has expired by the clock
        armed = true; // the next frame's reading of the clock writes to the job
        expect(unwrap(await job.get('c', key(1)))).toBeUndefined();
        expect(unwrap(await job.get('audit', key('reads')))).toBeDefined();
      } finally {
        await p.close();
      }
    },
  );

  it("a string-id write under an id that is not a string fails no job's flush", async () => {
    const p = open();
    const failed: PersistencyEvents['writeFailed'][] = [];
    p.events.on('writeFailed', (e) => failed.push(e));
    try {
      const seven = unwrap(await p.openJob('7'));
      p.persistPut(7 as unknown as string, 'c', key(1), payload(1));
      expect(failed).toMatchObject([{ jobId: '7', reason: 'notFound' }]);
      seven.persistPut('c', key(2), payload(2));
      unwrap(await seven.flush());
      unwrap(await p.flush('7'));
    } finally {
      await p.close();
    }
  });
});

it('key() and payloads of a list claiming 2^32 - 1 empty arrays are refused, not encoded for minutes', () => {
  const started = performance.now();
  for (const encode of [() => key(huge([])), () => toKey(huge([])), () => toPayload(huge([]))])
    expect(encode).toThrow(
      expect.objectContaining({
        kind: 'InvalidArgument',
        message: expect.stringMatching(/more than 1048576 empty arrays and objects/),
      }),
    );
  // Not a timing assertion: a guard that the refusal came before 2^32 visits (minutes).
  expect(performance.now() - started).toBeLessThan(60_000);
});
