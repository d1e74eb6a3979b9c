/*
 * Turns near the limit of one message between threads, with the limit lowered to 4 MiB
 * (the real one is MAX_MESSAGE_BYTES, just under 4 GiB): a batch or atomic commit that
 * would take the turn's frame past it goes in a frame of its own and everything stays in
 * order; one too large even alone is refused with an event; a put after large reads or
 * watches in the same turn is neither thrown nor lost, and a watch too large for the frame
 * goes alone (found by reviews of the change that capped messages: the reads or watches had
 * filled the frame a put was written straight into, and a watch left half its record).
 */
import { describe, expect, it, vi } from 'vitest';

vi.mock('../src/protocol/bytes.js', async (original) => ({
  ...(await original<typeof import('../src/protocol/bytes.js')>()),
  MAX_MESSAGE_BYTES: 4 * 1024 * 1024,
}));

const { key, Persistency, payload, prefixRange } = await import('../src/index.js');
const { unwrap, useTempDirs } = await import('./support/env.js');
const tempDir = useTempDirs('persistency-message-turns-');
const THREAD_MODES: [string, { workerThreads: 'per-job' | number }][] = [
  ['per-job', { workerThreads: 'per-job' }],
  ['2 threads', { workerThreads: 2 }],
];

describe.each<[string, boolean, { workerThreads: 'per-job' | number }]>([
  ['per-job', false, { workerThreads: 'per-job' }],
  ['2 threads', false, { workerThreads: 2 }],
  ['per-job :memory:', true, { workerThreads: 'per-job' }],
  ['2 threads :memory:', true, { workerThreads: 2 }],
])('batches near the message limit (%s)', (_n, memory, options) => {
  it('reads, batches alone in their frame, atomic commits and flushes answer in order', async () => {
    const p = unwrap(
      Persistency.open(memory ? ':memory:' : tempDir(), {
        ...options,
        maxPayloadBytes: 8 * 1024 * 1024,
      }),
    );
    const failed: unknown[] = [];
    p.events.on('writeFailed', (e) => failed.push(e));
    const job = unwrap(await p.openJob('j'));
    const feed = job.watch('w', prefixRange(key()));
    const seen: unknown[] = [];
    const watching = (async () => {
      for await (const changes of feed) {
        seen.push(...changes);
        if (seen.length >= 3) break;
      }
    })();
    const mb = (n: number, fill: number) => new Uint8Array(n * 1024 * 1024).fill(fill);
    job.persistPut('w', key(0), payload('watched'));
    job.persist([{ kind: 'put', category: 'c', key: key(1), payload: mb(3, 1) }]);
    const r1 = job.get('c', key(1));
    job.persist([{ kind: 'put', category: 'c', key: key(2), payload: mb(3, 2) }]); // its own frame
    const r2 = job.get('c', key(2));
    job.persistPut('w', key(1), payload('watched'));
    const atomic = job.atomic().put('c', key(3), mb(3, 3)).commit(); // its own frame
    const r3 = job.get('c', key(3));
    const tooBig = job.atomic().put('c', key(4), mb(5, 4)).commit(); // too large alone
    job.persist([{ kind: 'put', category: 'c', key: key(5), payload: mb(5, 5) }]); // too large alone
    const r5 = job.get('c', key(5));
    job.persistPut('w', key(2), payload('watched'));
    const fl = job.flush();
    const [g1, g2, a3, g3, t4, g5, f] = await Promise.all([r1, r2, atomic, r3, tooBig, r5, fl]);
    await watching;
    const lens = [g1, g2, g3].map((g) => (g.isOk() ? g.value?.length : `Err(${g.error.kind})`));
    const out = {
      gets: lens,
      atomic: a3.isOk() ? 'Ok' : `Err(${a3.error.kind})`,
      tooBig: t4.isOk() ? 'Ok' : `Err(${t4.error.kind})`,
      get5: g5.isOk() ? String(g5.value) : `Err(${g5.error.kind})`,
      flush: f.isOk() ? 'Ok' : `Err(${f.error.kind} ${f.error.count})`,
      writeFailed: failed.length,
      watched: seen.length,
    };
    expect(out).toEqual({
      gets: [3 * 1024 * 1024, 3 * 1024 * 1024, 3 * 1024 * 1024],
      atomic: 'Ok',
      tooBig: 'Err(InvalidArgument)',
      get5: 'undefined',
      flush: 'Err(WriteFailed 1)',
      writeFailed: 1,
      watched: 3,
    });
    await p.close();
  });
});

describe.each(THREAD_MODES)('a put after large reads in one turn (%s)', (_n, options) => {
  it('persistPut does not throw; the reads and the put are answered in order', async () => {
    const p = unwrap(Persistency.open(tempDir(), options));
    const failures: unknown[] = [];
    p.events.on('writeFailed', (e) => failures.push(e));
    const job = unwrap(await p.openJob('j'));
    job.persistPut('c', key(1), payload('one'));
    unwrap(await job.flush());
    const part = new Uint8Array(65_535).fill(7); // a key part's limit; a key has many
    const big = key(...Array.from({ length: 24 }, () => part)); // ~1.5 MiB
    const reads = [job.get('c', big), job.get('c', big)]; // ~3 MiB of frame
    let thrown: unknown;
    try {
      job.persistPut('c', key(2), new Uint8Array(1536 * 1024)); // would take it past 4 MiB
    } catch (e) {
      thrown = e;
    }
    const after = job.get('c', key(1));
    const flushed = await job.flush();
    const got = await Promise.all([...reads, after]);
    // The big keys are not there; key(1) holds payload('one').
    expect(got.map((r) => (r.isOk() ? (r.value?.length ?? 'none') : r.error.kind))).toEqual([
      'none',
      'none',
      payload('one').length,
    ]);
    const stored = unwrap(await job.get('c', key(2)));
    expect([failures.length, stored?.length]).toEqual([0, 1536 * 1024]);
    await p.close();
    expect(thrown).toBeUndefined();
    expect(flushed.isOk()).toBe(true);
  });
});

describe.each(THREAD_MODES)('two watches with large bounds in one turn (%s)', (_n, options) => {
  it('neither throws, and the job keeps working', async () => {
    const p = unwrap(Persistency.open(tempDir(), options));
    const failed: unknown[] = [];
    p.events.on('jobFailed', (e) => failed.push(e));
    const job = unwrap(await p.openJob('j'));
    const part = new Uint8Array(65_535).fill(7);
    const big = (n: number) => key(n, ...Array.from({ length: 20 }, () => part)); // ~1.25 MiB
    // The second did not fit the frame: it threw, and left half its record there.
    const feeds = [
      job.watch('c', { start: big(1), stop: big(2) }),
      job.watch('c', { start: big(3), stop: big(4) }),
    ];
    job.persistPut('d', key(1), payload('one'));
    unwrap(await job.flush());
    expect(unwrap(await job.get('d', key(1)))).toEqual(payload('one'));
    expect(failed).toEqual([]);
    for (const feed of feeds) await feed.return?.();
    await p.close();
  });
});

describe.each(THREAD_MODES)(
  'a put after a watch with large bounds in one turn (%s)',
  (_n, options) => {
    it('persistPut does not throw and the put is stored', async () => {
      const p = unwrap(Persistency.open(tempDir(), options));
      const job = unwrap(await p.openJob('j'));
      const part = new Uint8Array(65_535).fill(7);
      const big = (n: number) => key(n, ...Array.from({ length: 20 }, () => part)); // ~1.25 MiB
      const feed = job.watch('c', { start: big(1), stop: big(2) }); // ~2.5 MiB of frame, not sent
      let thrown: unknown;
      try {
        job.persistPut('c', key(2), new Uint8Array(1536 * 1024)); // would take it past 4 MiB
      } catch (e) {
        thrown = e;
      }
      const flushed = await job.flush();
      const stored = unwrap(await job.get('c', key(2)));
      await feed.return?.();
      await p.close();
      expect({
        thrown: thrown === undefined ? 'none' : String(thrown),
        flush: flushed.isOk() ? 'Ok' : flushed.error.kind,
        stored: stored?.length,
      }).toEqual({ thrown: 'none', flush: 'Ok', stored: 1536 * 1024 });
    });
  },
);
