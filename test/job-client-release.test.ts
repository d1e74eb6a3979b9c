/*
 * JobClient's releases, driven by hand: the test plays the worker on the other end of the
 * job's port and decides when a released thread has exited. Under 'per-job' a call can
 * take a released job up again, and it can be released again, before its old thread has
 * exited; each release must settle on its own (found by review: a second release took the
 * first one's place, which then never settled).
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { ok } from 'neverthrow';
import { describe, expect, it } from 'vitest';
import type { ClientHost } from '../src/client-host.js';
import { JobClient } from '../src/job-client.js';
import type { FromWorker, ToWorker } from '../src/protocol/messages.js';
import type { Attachment } from '../src/threads.js';

/** One attachment: the client's end of a port, the worker's end, and its thread's exit. */
interface Link {
  readonly worker: MessagePort;
  /** Messages the client sent, in order. */
  readonly received: ToWorker[];
  /** The next message the client sends. */
  next(): Promise<ToWorker>;
  /** The thread exits (detach() resolves). */
  exit(): void;
}

function fakeHost(links: Link[]): ClientHost {
  return {
    attach: async () => {
      const channel = new MessageChannel();
      const received: ToWorker[] = [];
      const waiting: ((m: ToWorker) => void)[] = [];
      channel.port2.on('message', (m: ToWorker) => {
        const w = waiting.shift();
        if (w !== undefined) w(m);
        else received.push(m);
      });
      let exit = (): void => {};
      const exited = new Promise<void>((resolve) => {
        exit = resolve;
      });
      links.push({
        worker: channel.port2,
        received,
        next: () => {
          const m = received.shift();
          return m !== undefined ? Promise.resolve(m) : new Promise((r) => waiting.push(r));
        },
        exit,
      });
      const attachment: Attachment = {
        port: channel.port1,
        file: undefined,
        fileId: undefined,
        listen: (handler) => channel.port1.on('message', (m: FromWorker) => handler(m)),
        keepAlive: () => {},
        detach: () => {
          channel.port1.close();
          return exited;
        },
      };
      return ok(attachment);
    },
    resident: () => {},
    reopened: () => {},
    clock: undefined,
    writeFailed: () => {},
    takeFailures: () => undefined,
    recordFailures: () => {},
    died: () => {},
  };
}

const released: FromWorker = {
  t: 'released',
  image: undefined,
  error: undefined,
  unflushed: undefined,
  polls: { tried: 0, caught: 0, busy: 0 },
  reads: { batched: 0, parts: 0, readAhead: 0, slices: 0, besidePaused: 0 },
};

describe('JobClient releases', () => {
  it('a job released, taken up and released again before its old thread exits: each release settles on its own', async () => {
    const links: Link[] = [];
    const client = new JobClient('j', fakeHost(links), undefined, undefined);
    expect((await client.open()).isOk()).toBe(true);
    const first = links[0] as Link;

    const release1 = client.releaseIfIdle(performance.now() + 1);
    expect(await first.next()).toEqual({ t: 'release' });
    first.worker.postMessage(released); // the worker let go; its thread has not exited yet

    // A message for the worker arrives (as a call's frame would): it waits in the backlog
    // and takes the job up again on a new attachment, the first thread still exiting.
    const call: ToWorker = { t: 'inject', fault: 'commit', skipWrites: 0 };
    client.post(call);
    while (links.length < 2) await new Promise(setImmediate);
    const second = links[1] as Link;
    expect(await second.next()).toEqual(call);

    const release2 = client.releaseIfIdle(performance.now() + 1);
    expect(release2).toBeDefined();
    expect(await second.next()).toEqual({ t: 'release' });
    second.worker.postMessage(released);

    const settled: string[] = [];
    void release1?.then((r) => settled.push(`1:${r}`));
    void release2?.then((r) => settled.push(`2:${r}`));
    first.exit(); // the first thread exits: only the first release is over
    await release1;
    expect(settled).toEqual(['1:true']);
    second.exit();
    await release2;
    expect(settled).toEqual(['1:true', '2:true']);
    first.worker.close();
    second.worker.close();
  });
});
