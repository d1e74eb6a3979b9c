/*
 * A crash-safe Scalable Data Sync history: a js-waku node ("bob") keeps his @waku/sds
 * MessageChannel's history in a job through `persistency/sds`, so a restarted node resumes
 * the channel where it was. Alice keeps SDS's default in-memory history; the "network" is
 * in-process and hands each message over in its wire encoding with a retrieval hint, as a
 * Waku store would. Every run adds to what the earlier runs left in the root.
 *
 *   npm run example:sds            # root ./data-sds
 *   npm run example:sds -- /tmp/x  # another root
 */
import { Message, MessageChannel, MessageChannelEvent } from '@waku/sds';
import { Persistency } from '../src/index.js';
import { openSdsHistory, type SdsLocalHistory } from '../src/sds/index.js';

const root = process.argv[2] ?? './data-sds';
const CHANNEL = 'team-room';
const utf8 = new TextEncoder();
const text = (m: Message): string => new TextDecoder().decode(m.content);

/** Everything alice sends, encoded, with the hint the network gave it (for redelivery). */
const wire: { bytes: Uint8Array; hint: Uint8Array }[] = [];

/** Bob's node: his channel on a persistent history, and what the application saw. */
class BobNode {
  readonly channel: MessageChannel;
  readonly delivered: string[] = [];
  readonly missing: string[] = [];
  skipped = 0;

  constructor(readonly history: SdsLocalHistory) {
    this.channel = new MessageChannel(CHANNEL, 'bob', {}, history);
    this.channel.addEventListener(MessageChannelEvent.InMessageDelivered, (e) => {
      const m = history.find((h) => h.messageId === e.detail);
      this.delivered.push(m === undefined ? e.detail : text(m));
    });
    this.channel.addEventListener(MessageChannelEvent.InMessageMissing, (e) => {
      for (const entry of e.detail) this.missing.push(entry.messageId);
    });
  }

  /** A message from the network; one already in history is not handed to SDS again. */
  async receive(bytes: Uint8Array, hint: Uint8Array): Promise<void> {
    const message = Message.decode(bytes);
    if (message === undefined) return;
    if (this.history.has(message.messageId)) {
      this.skipped++;
      return;
    }
    this.channel.pushIncomingMessage(message, hint);
    await this.channel.processTasks();
  }
}

async function startBob(p: Persistency): Promise<BobNode> {
  const job = (await p.openJob('bob'))._unsafeUnwrap();
  return new BobNode((await openSdsHistory(job, CHANNEL))._unsafeUnwrap());
}

const alice = new MessageChannel(CHANNEL, 'alice');
async function aliceSays(body: string, bob: BobNode): Promise<void> {
  alice.pushOutgoingMessage(utf8.encode(body), async (m) => {
    const sent = { bytes: m.encode(), hint: utf8.encode(`store#${wire.length}`) };
    wire.push(sent);
    await bob.receive(sent.bytes, sent.hint);
    return { success: true, retrievalHint: sent.hint };
  });
  await alice.processTasks();
}
async function bobSays(body: string, bob: BobNode): Promise<void> {
  bob.channel.pushOutgoingMessage(utf8.encode(body), async (m) => {
    alice.pushIncomingMessage(Message.decode(m.encode()) as Message, utf8.encode('relay'));
    await alice.processTasks();
    return { success: true, retrievalHint: utf8.encode('relay') };
  });
  await bob.channel.processTasks();
}

// Life 1: bob starts from what earlier runs left, talks with alice, flushes, stops.
const first = Persistency.open(root)._unsafeUnwrap();
let bob = await startBob(first);
const earlier = bob.history.length;
const run = earlier / 4 + 1; // each run keeps four messages
console.log(`run ${run}: bob's history holds ${earlier} messages from earlier runs`);
await aliceSays(`run ${run}: hello bob`, bob);
await bobSays(`run ${run}: hi alice`, bob);
await aliceSays(`run ${run}: the build is green`, bob);
console.log(`bob delivered: ${bob.delivered.map((t) => `"${t}"`).join(', ')}`);
(await bob.history.flush())._unsafeUnwrap();
console.log(`bob flushed ${bob.history.length} messages and stopped`);
(await first.close())._unsafeUnwrap();

// Life 2: a new process would do the same; the history comes back from the job.
const second = Persistency.open(root)._unsafeUnwrap();
bob = await startBob(second);
const last = bob.history.slice(-1)[0];
console.log(
  `bob restarted with ${bob.history.length} messages; the last one: "${last === undefined ? '' : text(last)}"`,
);
// Alice's next message names the ones before it in its causal history: all restored.
await aliceSays(`run ${run}: shipping it`, bob);
console.log(
  `bob delivered "${bob.delivered.join('", "')}" at once (${bob.missing.length} missing dependencies)`,
);
// The network hands over an old message again: it is in the history, so it is skipped.
const old = wire[wire.length - 3];
if (old !== undefined) await bob.receive(old.bytes, old.hint);
console.log(`redelivered message skipped: ${bob.skipped === 1 ? 'yes' : 'no'}`);
for (const m of bob.history.slice(-4))
  console.log(
    `  ${m.lamportTimestamp} ${m.senderId}: ${text(m)} (hint ${new TextDecoder().decode(m.retrievalHint)})`,
  );
(await bob.history.flush())._unsafeUnwrap();
(await second.close())._unsafeUnwrap();
console.log(`bob's history: ${bob.history.length} messages in ${root}`);
