// persistency/sds at its edges, from an adversarial review (each test failed before its
// fix): a message id SDS's own codec does not read back as written (a long one with a
// character outside the BMP), which was stored and then made its whole channel unloadable;
// a stored row whose id no key can hold; and a push the job refuses as a whole batch (over
// 4,294,967,280 bytes), which was kept in memory while the job dropped it.
import { ContentMessage, Message } from '@waku/sds';
import { describe, expect, it } from 'vitest';
import { key, Persistency, type PersistencyEvents } from '../src/index.js';
import { HISTORY_CATEGORY, messageKey, openSdsHistory } from '../src/sds/index.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-sds-edges-');
const utf8 = new TextEncoder();
const content = (id: string, lamport: bigint): ContentMessage =>
  new ContentMessage(id, 'chat', 'ada', [], lamport, undefined, utf8.encode(`body ${lamport}`));

// protons-runtime's UTF-8 reader works in chunks of 8,192 units: with the pair astride a
// chunk's end, the id reads back with a lone surrogate.
const ODD_ID = `${'a'.repeat(8191)}\u{1F600}${'b'.repeat(8192)}`;

describe.each(FILE_MODES)('sds history edges (%s)', (_name, _memory, options) => {
  it("a message whose id SDS's codec reads back otherwise is refused; the channel loads after a restart", async () => {
    expect((Message.decode(content(ODD_ID, 2n).encode()) as ContentMessage).messageId).not.toBe(
      ODD_ID,
    );
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    const history = unwrap(await openSdsHistory(unwrap(await p.openJob('node')), 'chat'));
    history.push(content('first', 1n));
    expect(() => history.push(content('second', 3n), content(ODD_ID, 2n))).toThrow(
      expect.objectContaining({
        kind: 'InvalidArgument',
        message: expect.stringMatching(/does not read back/),
      }),
    );
    expect(history.slice().map((m) => m.messageId)).toEqual(['first']); // nothing of that push
    unwrap(await history.flush());
    unwrap(await p.close());
    const q = unwrap(Persistency.open(root, options));
    const again = unwrap(await openSdsHistory(unwrap(await q.openJob('node')), 'chat'));
    expect(again.slice().map((m) => m.messageId)).toEqual(['first']);
    unwrap(await q.close());
  });

  it('a stored row whose id no key can hold is SDS_MISPLACED, not InvalidArgument', async () => {
    const p = unwrap(Persistency.open(tempDir(), options));
    try {
      const job = unwrap(await p.openJob('node'));
      // Written by hand, as another program could: it reads back with a lone surrogate.
      job.persistPut(HISTORY_CATEGORY, messageKey('chat', 2n, 'x'), content(ODD_ID, 2n).encode());
      const loaded = await openSdsHistory(job, 'chat');
      expect(loaded.isErr() && loaded.error).toMatchObject({
        kind: 'Backend',
        code: 'SDS_MISPLACED',
      });
    } finally {
      await p.close();
    }
  });
});

it('a push the job refuses as a whole batch throws InvalidArgument and changes nothing', async () => {
  const p = unwrap(Persistency.open(tempDir()));
  const failed: PersistencyEvents['writeFailed'][] = [];
  p.events.on('writeFailed', (e) => failed.push(e));
  try {
    const job = unwrap(await p.openJob('node'));
    const history = unwrap(await openSdsHistory(job, 'chat'));
    // Nine messages sharing one 480 MB hint: each under maxPayloadBytes, 4.32 GB together.
    const hint = new Uint8Array(480_000_000);
    const messages = Array.from({ length: 9 }, (_, i) => {
      const m = content(`m${i}`, BigInt(i + 1));
      m.retrievalHint = hint;
      return m;
    });
    expect(() => history.push(...messages)).toThrow(
      expect.objectContaining({
        kind: 'InvalidArgument',
        message: expect.stringMatching(/at most 4294967280 bytes/),
      }),
    );
    expect(history.length).toBe(0);
    expect(failed).toEqual([]); // refused to the caller, not dropped behind it
    unwrap(await history.flush());
    expect(unwrap(await job.count(HISTORY_CATEGORY, { start: key() }))).toBe(0);
  } finally {
    await p.close();
  }
});
