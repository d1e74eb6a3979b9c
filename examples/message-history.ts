/*
 * Message history: a chat service with one job per community. Each channel keeps
 *
 *   meta  key(channelId)                     -> one blob: topic, Lamport clock, counts
 *   log   key(channelId, lamport, messageId) -> author, text   (append-only)
 *
 * It appends under a Lamport clock (a late message from a peer sorts into the past, ties
 * broken by message id), pages through history newest first with scanPrefix + limit and
 * the `after` cursor, reads a whole channel lazily from a snapshot with iteratePrefix (an
 * archive export that later writes do not disturb), evicts the oldest messages past a cap
 * in one atomic batch, and drops a channel with persistDeletePrefix. Run it twice: the
 * clocks and the capped history carry over.
 *
 *   npm run example:history            # root ./data/history
 *   npm run example:history -- /tmp/x  # another root
 */
import { readdirSync } from 'node:fs';
import type { Result } from 'neverthrow';
import {
  decodeKey,
  decodePayload,
  type Job,
  type KvRow,
  key,
  Persistency,
  type PersistencyError,
  payload,
  prefixRange,
  type TxOp,
} from '../src/index.js';

const root = process.argv[2] ?? './data/history';
/** The most messages a channel keeps; the sweep evicts the oldest beyond it. */
const HISTORY_CAP = 20;
const PAGE_SIZE = 8;

const p = Persistency.instance(root)._unsafeUnwrap();
let writeFailures = 0;
p.events.on('writeFailed', (e) => {
  writeFailures++;
  console.error(`  ! write failed on ${e.jobId}: ${e.error.message}`);
});

function step(title: string): void {
  console.log(`\n== ${title}`);
}

/** The Ok value; an Err is a bug in this demo, so it throws the PersistencyError. */
function ok<T>(r: Result<T, PersistencyError>): T {
  if (r.isErr()) throw r.error;
  return r.value;
}

/** What a channel's `meta` row holds: the whole channel state, rewritten as one blob. */
interface ChannelState {
  topic: string;
  /** The Lamport clock: the highest timestamp this channel has seen. */
  clock: number;
  /** Messages in the log now. */
  stored: number;
  /** Messages evicted past the cap, ever. */
  evicted: number;
}

function stateBlob(s: ChannelState): Uint8Array {
  return payload(s.topic, s.clock, s.stored, s.evicted);
}

function readState(blob: Uint8Array): ChannelState {
  const [topic, clock, stored, evicted] = decodePayload(blob, [
    'string',
    'number',
    'number',
    'number',
  ]);
  return { topic, clock, stored, evicted };
}

interface Message {
  readonly lamport: number;
  readonly id: string;
  readonly author: string;
  readonly text: string;
}

function messageOf(row: KvRow): Message {
  const [, lamport, id] = decodeKey(row.key, ['string', 'number', 'string']);
  const [author, text] = decodePayload(row.payload, ['string', 'string']);
  return { lamport, id, author, text };
}

/** One community: one job, so one SQLite file and one worker thread. */
class Community {
  readonly #states = new Map<string, ChannelState>();

  constructor(readonly job: Job) {}

  /** The channel's state: cached, or read from its `meta` blob, or new. */
  async channel(channelId: string, topic: string): Promise<ChannelState> {
    const cached = this.#states.get(channelId);
    if (cached !== undefined) return cached;
    const blob = ok(await this.job.get('meta', key(channelId)));
    const state = blob === undefined ? { topic, clock: 0, stored: 0, evicted: 0 } : readState(blob);
    this.#states.set(channelId, state);
    return state;
  }

  #metaOp(channelId: string, s: ChannelState): TxOp {
    return { kind: 'put', category: 'meta', key: key(channelId), payload: stateBlob(s) };
  }

  /**
   * Append one message. `lamport` is the sender's timestamp: absent for a local message
   * (the clock ticks), given for one received from a peer (the clock catches up with it).
   * The message and the new channel state go in one batch: they are never out of step.
   */
  append(
    channelId: string,
    msg: { id: string; author: string; text: string; lamport?: number },
  ): number {
    const s = this.#states.get(channelId);
    if (s === undefined) throw new Error(`load channel ${channelId} first`);
    const lamport = msg.lamport ?? s.clock + 1;
    s.clock = Math.max(s.clock, lamport);
    s.stored++;
    this.job.persist([
      {
        kind: 'put',
        category: 'log',
        key: key(channelId, lamport, msg.id),
        payload: payload(msg.author, msg.text),
      },
      this.#metaOp(channelId, s),
    ]);
    return lamport;
  }

  /**
   * Newest first, PAGE_SIZE at a time: the last key of a page is the cursor (`after`) of the
   * next, which starts strictly below it. Messages arriving meanwhile neither shift a page
   * nor repeat one.
   */
  async page(channelId: string, after?: KvRow): Promise<KvRow[]> {
    const options = { reverse: true, limit: PAGE_SIZE, ...(after && { after: after.key }) };
    return ok(await this.job.scanPrefix('log', key(channelId), options));
  }

  /**
   * Export a channel oldest first, lazily: pages of 64 rows from a snapshot taken at the
   * first row, so memory stays at a page or two however long the history, and messages
   * appended while it runs are not in this export (the next one has them).
   */
  async *archive(channelId: string): AsyncGenerator<Message> {
    for await (const row of this.job.iteratePrefix('log', key(channelId), { pageSize: 64 })) {
      yield messageOf(row);
    }
  }

  /** Evict the oldest messages past the cap: every delete and the new state, all or none. */
  async evictPastCap(channelId: string): Promise<Message[]> {
    const s = this.#states.get(channelId);
    if (s === undefined) throw new Error(`load channel ${channelId} first`);
    const stored = ok(await this.job.count('log', prefixRange(key(channelId))));
    if (stored <= HISTORY_CAP) return [];
    const oldest = ok(
      await this.job.scanPrefix('log', key(channelId), { limit: stored - HISTORY_CAP }),
    );
    s.stored -= oldest.length;
    s.evicted += oldest.length;
    this.job.persist([
      ...oldest.map((row): TxOp => ({ kind: 'delete', category: 'log', key: row.key })),
      this.#metaOp(channelId, s),
    ]);
    return oldest.map(messageOf);
  }

  /**
   * Drop a channel: its whole log by prefix, then its state. Two batches (committed in one
   * group, as they are issued in one turn); were they ever split by a crash, what is left
   * is an empty channel, which the next drop removes. `persist([{ kind: 'deletePrefix', … },
   * { kind: 'delete', … }])` would make the pair atomic.
   */
  drop(channelId: string): void {
    this.job.persistDeletePrefix('log', key(channelId));
    this.job.persistDelete('meta', key(channelId));
    this.#states.delete(channelId);
  }
}

function line(rows: readonly KvRow[]): string {
  return rows
    .map(messageOf)
    .map((m) => `${m.lamport}:${m.author}`)
    .join(' ');
}

async function open(id: string): Promise<Community> {
  return new Community(ok(await p.openJob(id)));
}

step(`open one job per community under ${p.rootDir}`);
const rust = await open('rust-lang');
const garden = await open('gardening');
const general = await rust.channel('general', 'anything Rust');
console.log(
  `  opened ${rust.job.id} and ${garden.job.id}; files: ${readdirSync(p.rootDir)
    .filter((f) => f.endsWith('.db'))
    .sort()
    .join(', ')}`,
);
console.log(
  `  rust-lang/#general from earlier runs: clock ${general.clock}, ${general.stored} stored, ${general.evicted} evicted`,
);

step('append 30 local messages to rust-lang/#general (message + channel state: one batch each)');
const authors = ['ada', 'bob', 'cy'];
const firstLamport = general.clock + 1;
for (let i = 0; i < 30; i++) {
  const lamport = general.clock + 1;
  rust.append('general', {
    id: `local-${lamport}`,
    author: authors[i % authors.length] as string,
    text: `message ${lamport}`,
  });
}
console.log(`  lamport ${firstLamport}..${general.clock}; clock is now ${general.clock}`);

step('a peer message stamped in the past arrives late, and two peers tie on one timestamp');
const late = general.clock - 5;
rust.append('general', { id: 'peer-x-1', author: 'xena', text: 'sent a while ago', lamport: late });
const tie = general.clock + 1;
rust.append('general', { id: 'peer-z-9', author: 'zed', text: 'same tick', lamport: tie });
rust.append('general', { id: 'peer-m-4', author: 'max', text: 'same tick', lamport: tie });
const aroundLate = ok(
  await rust.job.scan('log', { start: key('general', late - 1), stop: key('general', late + 2) }),
).map(messageOf);
console.log(
  `  xena's message, stamped ${late}, is stored in the past: ${aroundLate
    .map((m) => `${m.lamport}:${m.id}`)
    .join(' ')} (Lamport order, not arrival order)`,
);
const tied = ok(await rust.job.scanPrefix('log', key('general', tie))).map(messageOf);
console.log(
  `  at lamport ${tie}: ${tied.map((m) => m.id).join(' ')} (a tie is broken by message id, the same way on every replica)`,
);

step(`page through rust-lang/#general, newest first, ${PAGE_SIZE} per page (cursor: after)`);
const total = ok(await rust.job.count('log', prefixRange(key('general'))));
let cursor: KvRow | undefined;
let pages = 0;
const seen = new Set<string>();
for (;;) {
  const rows = await rust.page('general', cursor);
  if (rows.length === 0) break;
  pages++;
  for (const row of rows) seen.add(row.key.toString());
  console.log(`  page ${pages}: ${line(rows)}`);
  cursor = rows.at(-1);
  if (rows.length < PAGE_SIZE) break;
}
console.log(`  ${pages} pages held ${seen.size} distinct messages of ${total}`);

step('export rust-lang/#general lazily from a snapshot while new messages arrive');
const perAuthor = new Map<string, number>();
let exported = 0;
for await (const m of rust.archive('general')) {
  perAuthor.set(m.author, (perAuthor.get(m.author) ?? 0) + 1);
  exported++;
  // Appended mid-export: committed at once, but after the snapshot, so not exported.
  if (exported === 1) rust.append('general', { id: 'mid-export', author: 'eve', text: 'hi' });
}
const nowStored = ok(await rust.job.count('log', prefixRange(key('general'))));
console.log(
  `  exported ${exported} messages (${[...perAuthor].map(([a, n]) => `${a} ${n}`).join(', ')}); the channel holds ${nowStored} now, eve's mid-export message included`,
);

step(`evict past the cap of ${HISTORY_CAP}: the deletes and the new state in one atomic batch`);
const evicted = await rust.evictPastCap('general');
const oldestLeft = ok(await rust.job.scanPrefix('log', key('general'), { limit: 1 })).map(
  messageOf,
)[0];
console.log(
  `  evicted ${evicted.length} oldest (lamport ${evicted[0]?.lamport}..${evicted.at(-1)?.lamport}); #general holds ${ok(await rust.job.count('log', prefixRange(key('general'))))}, oldest now lamport ${oldestLeft?.lamport}`,
);
const meta = ok(await rust.job.get('meta', key('general')));
if (meta === undefined) throw new Error('meta missing');
const { topic, clock, stored, evicted: evictedEver } = readState(meta);
console.log(
  `  meta blob: topic ${JSON.stringify(topic)}, clock ${clock}, stored ${stored}, evicted ${evictedEver}`,
);

step('drop a channel with persistDeletePrefix; a channel whose name extends it is untouched');
await rust.channel('dev', 'compiler work');
await rust.channel('dev-ops', 'CI and releases');
for (let i = 0; i < 6; i++) rust.append('dev', { id: `d${i}`, author: 'ada', text: `dev ${i}` });
for (let i = 0; i < 4; i++)
  rust.append('dev-ops', { id: `o${i}`, author: 'bob', text: `ops ${i}` });
const countOf = async (c: Community, channelId: string): Promise<number> =>
  ok(await c.job.count('log', prefixRange(key(channelId))));
console.log(
  `  before: #dev ${await countOf(rust, 'dev')} messages, #dev-ops ${await countOf(rust, 'dev-ops')}`,
);
rust.drop('dev');
console.log(
  `  after dropping #dev: #dev ${await countOf(rust, 'dev')} messages (meta ${ok(await rust.job.exists('meta', key('dev'))) ? 'kept' : 'gone'}), #dev-ops ${await countOf(rust, 'dev-ops')}: key('dev') is no byte prefix of key('dev-ops') (the length comes first)`,
);

step('communities are isolated: one job each');
const tips = await garden.channel('general', 'what grows where');
const gardenFirst = tips.clock + 1;
for (let i = 0; i < 3; i++)
  garden.append('general', { id: `g${gardenFirst + i}`, author: 'flo', text: `tip ${i}` });
console.log(
  `  gardening/#general: ${await countOf(garden, 'general')} messages; rust-lang/#general: ${await countOf(rust, 'general')}`,
);

step('close, reopen, and read the channel state back');
const closed = await p.close();
console.log(`  close -> ${closed.isOk() ? 'Ok' : `Err ${closed.error.message}`}`);
const again = Persistency.instance(root)._unsafeUnwrap();
const reopened = new Community(ok(await again.openJob('rust-lang')));
const back = await reopened.channel('general', '?');
console.log(
  `  rust-lang/#general after reopen: clock ${back.clock}, ${back.stored} stored, ${back.evicted} evicted; newest: ${line((await reopened.page('general')).slice(0, 3))}`,
);
await again.close();
console.log(`\nwrite failures: ${writeFailures}`);
