// persistency/sds under kill -9: "bob" (test/fixtures/sds-node.ts) is an SDS node in a child
// process whose history is kept in a job; the test is "alice" (a MessageChannel with SDS's
// in-memory history) and the network (messages travel encoded, are decoded on arrival).
// Bob is SIGKILLed with writes not flushed, restarted, then closed cleanly: what he
// restores, what he delivers after the restart, and how SDS treats a redelivered message.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  type ContentMessage,
  isContentMessage,
  Message,
  MessageChannel,
  MessageChannelEvent,
} from '@waku/sds';
import { afterAll, describe, expect, it } from 'vitest';
import { Persistency } from '../src/index.js';
import { type ILocalHistory, openSdsHistory } from '../src/sds/index.js';
import type { SdsNodeReply, SdsNodeRequest } from './fixtures/sds-node.js';
import { CHILD_TIMEOUT_MS, type Exit } from './support/children.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-sds-restart-');
const REPO = fileURLToPath(new URL('..', import.meta.url));
const JOB = 'bob';
const CHANNEL = 'chat';
const utf8 = new TextEncoder();

type Reply<T extends SdsNodeReply['t']> = Extract<SdsNodeReply, { t: T }>;

const live = new Set<Bob>();
afterAll(async () => {
  await Promise.all([...live].map((b) => b.kill()));
});

/** sds-node.ts in a child process, spoken to over IPC; its replies are awaited, never slept on. */
class Bob {
  readonly proc: ChildProcess;
  readonly exited: Promise<Exit>;
  #inbox: SdsNodeReply[] = [];
  #watchers = new Set<() => void>();
  #exit: Exit | undefined;
  #stderr = '';

  constructor(root: string, threads: string) {
    const args = ['--import', 'tsx', 'test/fixtures/sds-node.ts', root, threads, JOB, CHANNEL];
    this.proc = spawn(process.execPath, args, {
      cwd: REPO,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.proc.stderr?.setEncoding('utf8').on('data', (s: string) => {
      this.#stderr += s;
    });
    this.proc.on('message', (m: SdsNodeReply) => {
      this.#inbox.push(m);
      for (const w of [...this.#watchers]) w();
    });
    this.exited = new Promise((resolve) => {
      this.proc.on('close', (code, signal) => {
        this.#exit = { code, signal };
        for (const w of [...this.#watchers]) w();
        resolve(this.#exit);
      });
    });
    live.add(this);
    void this.exited.then(() => live.delete(this));
  }

  /** The next reply of type `t`; rejects on an `error` reply, an exit, or CHILD_TIMEOUT_MS. */
  next<T extends SdsNodeReply['t']>(t: T): Promise<Reply<T>> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = this.#inbox.findIndex((m) => m.t === t || m.t === 'error');
        const m = i < 0 ? undefined : this.#inbox.splice(i, 1)[0];
        if (m?.t === 'error') done(() => reject(new Error(`bob: ${m.message}`)));
        else if (m !== undefined) done(() => resolve(m as Reply<T>));
        else if (this.#exit !== undefined)
          done(() =>
            reject(
              new Error(`bob exited ${JSON.stringify(this.#exit)} before ${t}: ${this.#stderr}`),
            ),
          );
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`no ${t} from bob in ${CHILD_TIMEOUT_MS} ms`))),
        CHILD_TIMEOUT_MS,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.#watchers.delete(check);
        settle();
      };
      this.#watchers.add(check);
      check();
    });
  }

  ask<T extends SdsNodeReply['t']>(request: SdsNodeRequest, t: T): Promise<Reply<T>> {
    this.proc.send(request);
    return this.next(t);
  }

  kill(): Promise<Exit> {
    if (this.#exit === undefined) this.proc.kill('SIGKILL');
    return this.exited;
  }
}

/** A message on the network: its id, SDS wire encoding (base64), and the hint the network gave it (hex). */
interface Wire {
  id: string;
  bytes: string;
  hint: string;
}

const decode = (w: Wire): ContentMessage => {
  const m = Message.decode(Buffer.from(w.bytes, 'base64'));
  if (m === undefined || !isContentMessage(m)) throw new Error(`${w.id} is not a content message`);
  return m;
};

describe.each(FILE_MODES)('an SDS node killed and restarted (%s)', (_name, _memory, options) => {
  const threads = String(options.workerThreads);
  const wires = new Map<string, Wire>(); // every message on the network, by id
  const alice = new MessageChannel(CHANNEL, 'alice');
  const aliceDelivered: string[] = [];
  alice.addEventListener(MessageChannelEvent.InMessageDelivered, (e) => {
    aliceDelivered.push(e.detail);
  });
  let root: string;
  let bob: Bob;
  let flushed: string[] = [];
  const unflushed: string[] = [];
  const bobSent: string[] = [];
  let restored: string[] = [];
  let last: string[] = []; // bob's history as he last reported it

  const wire = (id: string | undefined): Wire => {
    const w = id === undefined ? undefined : wires.get(id);
    if (w === undefined) throw new Error(`no message ${id} on the network`);
    return w;
  };

  async function aliceSends(text: string): Promise<Wire> {
    const hint = randomBytes(8);
    let sent: Wire | undefined;
    alice.pushOutgoingMessage(utf8.encode(text), async (m) => {
      const bytes = Buffer.from(m.encode()).toString('base64');
      sent = { id: m.messageId, bytes, hint: hint.toString('hex') };
      return { success: true, retrievalHint: hint };
    });
    await alice.processTasks();
    if (sent === undefined) throw new Error('alice did not send');
    wires.set(sent.id, sent);
    return sent;
  }

  const bobReceives = (w: Wire, dedupe = false) =>
    bob.ask({ t: 'receive', bytes: w.bytes, hint: w.hint, dedupe }, 'received');

  /** The order SDS's own in-memory history gives these messages, fed to it newest first. */
  function sdsOrder(ids: string[]): string[] {
    const model = Reflect.get(
      new MessageChannel(CHANNEL, 'model'),
      'localHistory',
    ) as ILocalHistory;
    for (const id of [...ids].reverse()) model.push(decode(wire(id)));
    return model.slice().map((m) => m.messageId);
  }

  it('a: restores every flushed message and no invented one, in SDS order, with its hint', async () => {
    root = tempDir();
    bob = new Bob(root, threads);
    expect((await bob.next('ready')).history).toEqual([]);
    let r: Reply<'received'> | undefined;
    for (let i = 0; i < 6; i++) {
      const w = await aliceSends(`alice ${i}`);
      r = await bobReceives(w);
      expect(r).toMatchObject({ messageId: w.id, skipped: false, delivered: [w.id], missing: [] });
    }
    // even before any restart, SDS delivers a redelivered message again (see c)
    const first = wire(r?.history[0]);
    const again = await bobReceives(first);
    expect(again).toEqual({ ...r, messageId: first.id, delivered: [first.id] });
    for (let i = 0; i < 2; i++) {
      const hint = randomBytes(8).toString('hex');
      const s = await bob.ask({ t: 'send', text: `bob ${i}`, hint }, 'sent');
      wires.set(s.messageId, { id: s.messageId, bytes: s.bytes, hint });
      bobSent.push(s.messageId);
      alice.pushIncomingMessage(decode(wire(s.messageId)), Buffer.from(hint, 'hex'));
      await alice.processTasks();
      expect(aliceDelivered).toEqual(bobSent);
    }
    const f = await bob.ask({ t: 'flush' }, 'flushed');
    expect(f.ok).toBe(true);
    expect(f.history).toHaveLength(8);
    expect(new Set(f.history)).toEqual(new Set(wires.keys()));
    expect(f.history).toEqual(sdsOrder(f.history));
    flushed = f.history;

    for (let i = 6; i < 10; i++) {
      const w = await aliceSends(`alice ${i}`); // depends on bob's two as well
      r = await bobReceives(w);
      expect(r).toMatchObject({ delivered: [w.id], missing: [] });
      unflushed.push(w.id);
      last = r?.history ?? [];
    }
    expect(last).toEqual([...flushed, ...unflushed]);
    expect(await bob.kill()).toEqual({ code: null, signal: 'SIGKILL' });

    bob = new Bob(root, threads);
    const ready = await bob.next('ready');
    restored = ready.history;
    expect(restored).toEqual(expect.arrayContaining(flushed));
    for (const id of restored) expect(wires.has(id)).toBe(true);
    const extra = restored.filter((id) => !flushed.includes(id));
    expect(extra).toEqual(unflushed.slice(0, extra.length));
    expect(restored).toEqual(sdsOrder(restored));
    expect(restored).toEqual(last.slice(0, restored.length));
    expect(ready.hints).toEqual(restored.map((id) => wire(id).hint));
    last = restored;
  });

  it('b: after the restart, messages depending on restored ones are delivered at once', async () => {
    const lost = unflushed.filter((id) => !restored.includes(id));
    for (const id of lost) {
      // the network redelivers what the kill lost: its dependencies are all restored
      expect(await bobReceives(wire(id))).toMatchObject({ delivered: [id], missing: [] });
    }
    const before = [...wires.keys()];
    const fresh = new MessageChannel(CHANNEL, 'carol'); // an empty in-memory history, for contrast
    const freshMissing: string[] = [];
    fresh.addEventListener(MessageChannelEvent.InMessageMissing, (e) => {
      freshMissing.push(...e.detail.map((h) => h.messageId));
    });
    const sent: string[] = [];
    let r: Reply<'received'> | undefined;
    for (let i = 10; i < 13; i++) {
      const w = await aliceSends(`alice ${i}`);
      sent.push(w.id);
      if (i === 10) {
        fresh.pushIncomingMessage(decode(w), Buffer.from(w.hint, 'hex'));
        await fresh.processTasks();
        expect(new Set(freshMissing)).toEqual(new Set(before));
      }
      r = await bobReceives(w);
      expect(r).toMatchObject({ messageId: w.id, skipped: false, delivered: [w.id], missing: [] });
    }
    expect(r?.history).toEqual([...restored, ...lost, ...sent]);
    expect(r?.history).toEqual(sdsOrder(r?.history ?? []));
    last = r?.history ?? [];
  });

  it('c: a redelivered old message stays once in the history; has() keeps it from a second delivery', async () => {
    const old = wire(flushed[0]); // alice's first message, restored from the job
    expect(last.filter((id) => id === old.id)).toHaveLength(1);
    const checked = await bobReceives(old, true);
    expect(checked).toEqual({
      t: 'received',
      messageId: old.id,
      skipped: true,
      delivered: [],
      missing: [],
      history: last,
    });
    // without the app-level check SDS 0.0.8 delivers it again, though the history does not
    // change: its duplicate map is in memory and holds only its own and once-buffered messages
    const unchecked = await bobReceives(old, false);
    expect(unchecked).toEqual({ ...checked, skipped: false, delivered: [old.id] });
    // bob's own message coming back is ignored by SDS, check or not
    const own = await bobReceives(wire(bobSent[0]), false);
    expect(own).toMatchObject({ skipped: false, delivered: [], missing: [], history: last });
    expect((await bob.ask({ t: 'flush' }, 'flushed')).history).toEqual(last);
  });

  it('d: closed cleanly, bob leaves in the job the history he last reported', async () => {
    bob.proc.send({ t: 'close' } satisfies SdsNodeRequest);
    expect(await bob.exited).toEqual({ code: 0, signal: null });
    const p = unwrap(Persistency.open(root, options));
    try {
      const job = unwrap(await p.openJob(JOB));
      const history = unwrap(await openSdsHistory(job, CHANNEL)).slice();
      expect(history.map((m) => m.messageId)).toEqual(last);
      expect(history.map((m) => Buffer.from(m.retrievalHint ?? []).toString('hex'))).toEqual(
        last.map((id) => wire(id).hint),
      );
      expect(history.map((m) => m.encode())).toEqual(last.map((id) => decode(wire(id)).encode()));
    } finally {
      await p.close();
    }
  });
});
