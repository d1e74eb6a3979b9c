// persistency/sds (CONTRACT.md section 11) with the real @waku/sds: the history behaves as
// SDS's own in-memory one (checked against it), survives a restart with its retrieval
// hints, carries two exchanging MessageChannels, holds 10,000 messages on 100 channels
// across restarts and drops one channel leaving the others. Kill -9 of a node:
// test/sds-restart.test.ts.
import { ContentMessage, Message, MessageChannel, SyncMessage } from '@waku/sds';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { type Job, key, Persistency, type PersistencyError } from '../src/index.js';
import {
  dropSdsChannel,
  HINTS_CATEGORY,
  HISTORY_CATEGORY,
  type ILocalHistory,
  messageKey,
  openSdsHistory,
  type SdsLocalHistory,
} from '../src/sds/index.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES, ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-sds-');
const utf8 = new TextEncoder();
const open: Persistency[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((p) => p.close()));
});

function instance(root: string, options: Parameters<typeof Persistency.open>[1]): Persistency {
  const p = unwrap(Persistency.open(root, options));
  open.push(p);
  return p;
}

/** SDS's own in-memory history (MessageChannel's default; @waku/sds does not export it). */
function sdsMemoryHistory(): ILocalHistory {
  return Reflect.get(new MessageChannel('model', 'model'), 'localHistory') as ILocalHistory;
}

function content(id: string, lamport: bigint, hint?: Uint8Array): ContentMessage {
  const m = new ContentMessage(
    id,
    'chat',
    'ada',
    [],
    lamport,
    undefined,
    utf8.encode(`body ${id}`),
  );
  if (hint !== undefined) m.retrievalHint = hint;
  return m;
}

/** What a history holds, comparable across implementations. */
const view = (h: ILocalHistory) =>
  h.slice().map((m) => ({
    id: m.messageId,
    lamport: m.lamportTimestamp,
    hint: m.retrievalHint === undefined ? null : [...m.retrievalHint],
    body: new TextDecoder().decode(m.content),
  }));

const load = async (job: Job, channel: string): Promise<SdsLocalHistory> =>
  unwrap(await openSdsHistory(job, channel));

/** A channel on an in-process "network": every message sent is delivered, encoded, to the others. */
class Network {
  readonly #nodes: MessageChannel[] = [];
  #hints = 0;
  join(channel: MessageChannel): MessageChannel {
    this.#nodes.push(channel);
    return channel;
  }
  async send(from: MessageChannel, text: string): Promise<void> {
    from.pushOutgoingMessage(utf8.encode(text), async (m) => {
      const hint = utf8.encode(`hint-${this.#hints++}`);
      for (const to of this.#nodes)
        if (to !== from) to.pushIncomingMessage(Message.decode(m.encode()) as Message, hint);
      return { success: true, retrievalHint: hint };
    });
    await from.processTasks();
    for (const to of this.#nodes) await to.processTasks();
  }
}

describe.each(ROOT_MODES)('SdsLocalHistory (%s)', (_name, memory, options) => {
  const root = () => (memory ? ':memory:' : tempDir());

  it('orders, deduplicates and refuses exactly as SDS’s in-memory history, and reloads the same (property)', async () => {
    const p = instance(root(), options);
    const job = unwrap(await p.openJob('node'));
    // Few ids and close timestamps, so ties and one id pushed at two timestamps are common;
    // ids beyond lowercase hex, so SDS's collation order differs from the keys' byte order.
    const message = fc
      .record({
        id: fc.constantFrom('a1', 'a2', 'B1', 'b1', 'x_y', 'x-y', 'Zed', 'é', '10', '9'),
        lamport: fc.bigInt({ min: 1_700_000_000_000n, max: 1_700_000_000_004n }),
        hint: fc.option(fc.uint8Array({ maxLength: 4 }), { nil: undefined }),
      })
      .map(({ id, lamport, hint }) => content(id, lamport, hint));
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(message, { maxLength: 4 }), { maxLength: 8 }),
        async (pushes) => {
          const channel = `c${run++}`;
          const ours = await load(job, channel);
          const theirs = sdsMemoryHistory();
          for (const batch of pushes) expect(ours.push(...batch)).toBe(theirs.push(...batch));
          expect(view(ours)).toEqual(view(theirs));
          for (const m of theirs.slice()) expect(ours.has(m.messageId)).toBe(true);
          unwrap(await ours.flush());
          expect(view(await load(job, channel))).toEqual(view(theirs));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('keeps the wire encoding in sds.history and the hint in sds.hints, under (channel, lamport, id)', async () => {
    const p = instance(root(), options);
    const job = unwrap(await p.openJob('node'));
    const history = await load(job, 'room');
    const m = content('f00d', 1_700_000_000_123n, new Uint8Array([1, 2, 3]));
    history.push(m, content('beef', 1_700_000_000_124n));
    unwrap(await history.flush());
    const at = messageKey('room', 1_700_000_000_123n, 'f00d');
    const stored = unwrap(await job.get(HISTORY_CATEGORY, at)) as Uint8Array;
    expect([...stored]).toEqual([...m.encode()]);
    const decoded = Message.decode(stored) as ContentMessage;
    expect([decoded.messageId, decoded.lamportTimestamp]).toEqual(['f00d', 1_700_000_000_123n]);
    expect([...(unwrap(await job.get(HINTS_CATEGORY, at)) as Uint8Array)]).toEqual([1, 2, 3]);
    const noHint = messageKey('room', 1_700_000_000_124n, 'beef');
    expect(unwrap(await job.get(HINTS_CATEGORY, noHint))).toBeUndefined();
    expect(unwrap(await job.scanPrefix(HISTORY_CATEGORY, key('room'))).map((r) => r.key)).toEqual([
      at,
      noHint,
    ]);
  });

  it('carries two MessageChannels exchanging messages: both histories as SDS keeps them, and reloaded', async () => {
    const p = instance(root(), options);
    const [alice, bob] = [unwrap(await p.openJob('alice')), unwrap(await p.openJob('bob'))];
    const [ha, hb] = [await load(alice, 'chat'), await load(bob, 'chat')];
    const net = new Network();
    const a = net.join(new MessageChannel('chat', 'alice', {}, ha));
    const b = net.join(new MessageChannel('chat', 'bob', {}, hb));
    for (let i = 0; i < 30; i++) await net.send(i % 3 === 2 ? b : a, `message ${i}`);
    expect(ha.length).toBe(30);
    const ids = (h: ILocalHistory) => h.slice().map((m) => m.messageId);
    expect(ids(ha)).toEqual(ids(hb));
    // SDS's in-memory history fed the same messages in another order holds them in this order.
    const theirs = sdsMemoryHistory();
    theirs.push(...hb.slice().reverse());
    expect(ids(theirs)).toEqual(ids(ha));
    expect(hb.slice().every((m) => m.retrievalHint !== undefined)).toBe(true);
    unwrap(await alice.flush());
    unwrap(await bob.flush());
    expect(view(await load(alice, 'chat'))).toEqual(view(ha));
    expect(view(await load(bob, 'chat'))).toEqual(view(hb));
  });

  it('writes the new hint when SDS sends a message again (the same object pushed once more)', async () => {
    const p = instance(root(), options);
    const job = unwrap(await p.openJob('node'));
    const history = await load(job, 'room');
    const channel = new MessageChannel('room', 'ada', {}, history);
    for (const hint of ['first send', 'resend']) {
      // Unacknowledged, so SDS sends the same message again with the hint of this send.
      channel.pushOutgoingMessage(utf8.encode('hello'), async () => ({
        success: true,
        retrievalHint: utf8.encode(hint),
      }));
      await channel.processTasks();
    }
    expect(view(history).map((m) => m.hint)).toEqual([[...utf8.encode('resend')]]);
    unwrap(await history.flush());
    expect(view(await load(job, 'room'))).toEqual(view(history));
  });

  it('refuses sync and ephemeral messages and unstorable keys as a whole push, writing nothing', async () => {
    const p = instance(root(), options);
    const job = unwrap(await p.openJob('node'));
    const history = await load(job, 'room');
    const sync = new SyncMessage('s', 'room', 'ada', [], 5n, undefined, undefined);
    expect(() => history.push(content('ok', 1n), sync as unknown as ContentMessage)).toThrow(
      /sync and ephemeral messages cannot be stored/,
    );
    const e = (() => {
      try {
        history.push(content('ok', 1n), content('too big', 2n ** 64n));
      } catch (thrown) {
        return thrown as PersistencyError;
      }
      throw new Error('push did not throw');
    })();
    expect(e.kind).toBe('InvalidArgument');
    expect(history.length).toBe(0);
    unwrap(await history.flush());
    expect(unwrap(await job.count(HISTORY_CATEGORY, { start: key() }))).toBe(0);
  });

  it('refuses a message the job would not store (over maxPayloadBytes) as a whole push, memory and file unchanged', async () => {
    const p = instance(root(), { ...options, maxPayloadBytes: 2_000 });
    const job = unwrap(await p.openJob('node'));
    const history = await load(job, 'room');
    const failures: unknown[] = [];
    p.events.on('writeFailed', (e) => failures.push(e));
    history.push(content('x', 5n));
    const big = content('x', 3n);
    big.content = new Uint8Array(5_000);
    const before = view(history);
    for (const push of [() => history.push(big), () => history.push(content('y', 9n), big)]) {
      expect(push).toThrow(expect.objectContaining({ kind: 'InvalidArgument' }));
      expect(view(history)).toEqual(before);
    }
    unwrap(await history.flush());
    expect(failures).toEqual([]);
    expect(view(await load(job, 'room'))).toEqual(before);
  });

  it('refuses a channel id that is not a string or too long, as an Err, touching no channel', async () => {
    const p = instance(root(), options);
    const job = unwrap(await p.openJob('node'));
    const room = await load(job, 'room');
    room.push(content('aa', 1n));
    for (const bad of [[], {}, 7, 'x'.repeat(70_000)] as unknown as string[]) {
      expect((await openSdsHistory(job, bad))._unsafeUnwrapErr().kind).toBe('InvalidArgument');
      expect(dropSdsChannel(job, bad)._unsafeUnwrapErr().kind).toBe('InvalidArgument');
    }
    expect(dropSdsChannel(job, 'other').isOk()).toBe(true);
    unwrap(await job.flush());
    expect(view(await load(job, 'room'))).toEqual(view(room));
  });

  it('answers Err for a closed job, a job that is not one, and rows that are not SDS messages', async () => {
    const p = instance(root(), options);
    const job = unwrap(await p.openJob('node'));
    const notJob = await openSdsHistory({} as Job, 'room');
    expect(notJob._unsafeUnwrapErr().kind).toBe('InvalidArgument');

    job.persistPut(HISTORY_CATEGORY, messageKey('junk', 1n, 'x'), new Uint8Array([0xff, 0xff]));
    const junk = (await openSdsHistory(job, 'junk'))._unsafeUnwrapErr();
    expect([junk.kind, junk.code]).toEqual(['Backend', 'SDS_UNDECODABLE']);
    expect(junk.message).toContain('"junk"');
    const elsewhere = messageKey('moved', 2n, 'x');
    job.persistPut(HISTORY_CATEGORY, elsewhere, content('x', 1n).encode());
    const moved = (await openSdsHistory(job, 'moved'))._unsafeUnwrapErr();
    expect([moved.kind, moved.code]).toEqual(['Backend', 'SDS_MISPLACED']);
    // Other channels of the job are unaffected.
    expect((await load(job, 'room')).length).toBe(0);

    unwrap(await p.closeJob('node'));
    expect((await openSdsHistory(job, 'room'))._unsafeUnwrapErr().kind).toBe('Closed');
  });
});

describe.each(FILE_MODES)('SDS histories across restarts (%s)', (_name, _memory, options) => {
  it('10,000 messages on 100 channels in 10 jobs survive restarts; a dropped channel leaves the others', async () => {
    const root = tempDir();
    const channels = Array.from({ length: 100 }, (_, i) => `channel-${i}`);
    const jobOf = (c: number) => `node-${c % 10}`;
    const expected = new Map<string, ReturnType<typeof view>>();

    /** One life of the service: load every channel, check it, send `n` more messages on each. */
    async function life(n: number): Promise<Map<string, SdsLocalHistory>> {
      const p = instance(root, options);
      const histories = new Map<string, SdsLocalHistory>();
      for (const [c, id] of channels.entries()) {
        const history = await load(unwrap(await p.openJob(jobOf(c))), id);
        expect(view(history), id).toEqual(expected.get(id) ?? []);
        const node = new MessageChannel(id, `sender-${c}`, {}, history);
        for (let i = 0; i < n; i++)
          node.pushOutgoingMessage(utf8.encode(`${id} #${history.length + i}`), async () => ({
            success: true,
            retrievalHint: utf8.encode(`${id}/${i}`),
          }));
        await node.processTasks();
        expected.set(id, view(history));
        histories.set(id, history);
      }
      unwrap(await p.close());
      return histories;
    }

    await life(40);
    await life(60);
    const third = await life(0);
    for (const id of channels) expect(third.get(id)?.length).toBe(100);
    // SDS's order within a channel: lamport timestamps strictly increase as a node sends.
    const lamports =
      third
        .get('channel-7')
        ?.slice()
        .map((m) => m.lamportTimestamp) ?? [];
    expect(lamports.every((t, i) => i === 0 || t > (lamports[i - 1] as bigint))).toBe(true);

    const p = instance(root, options);
    const job = unwrap(await p.openJob(jobOf(7)));
    const dropped = await load(job, 'channel-7');
    dropped.drop();
    expect(dropped.length).toBe(0);
    unwrap(dropSdsChannel(unwrap(await p.openJob(jobOf(13))), 'channel-13'));
    unwrap(await p.close());
    expected.set('channel-7', []);
    expected.set('channel-13', []);
    await life(0);
    // Nothing of the dropped channels is left behind in their jobs, hints included.
    const q = instance(root, options);
    const again = unwrap(await q.openJob(jobOf(7)));
    for (const category of [HISTORY_CATEGORY, HINTS_CATEGORY]) {
      expect(unwrap(await again.scanPrefix(category, key('channel-7')))).toEqual([]);
    }
    expect(unwrap(await again.count(HISTORY_CATEGORY, { start: key() }))).toBe(900);
  }, 120_000);
});
