/*
 * CONTRACT.md section 8: independent instances (`Persistency.open`) beside the singleton,
 * and `listJobs()`.
 */
import { existsSync, mkdirSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { key, Persistency, type PersistencyEvents, payload } from '../src/index.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-instances-');
const opened: Persistency[] = [];
afterEach(async () => {
  for (const p of opened.splice(0)) await p.close();
});

function open(root: string, options = {}): Persistency {
  const p = unwrap(Persistency.open(root, options));
  opened.push(p);
  return p;
}

describe('Persistency.open', () => {
  it('makes independent instances: their own jobs, events and options; closing one leaves the others', async () => {
    const a = open(':memory:', { maxPayloadBytes: 4 });
    const b = open(':memory:');
    expect(a).not.toBe(b);
    const seenA: PersistencyEvents['writeFailed'][] = [];
    a.events.on('writeFailed', (e) => seenA.push(e));
    const ja = unwrap(await a.openJob('same-id'));
    const jb = unwrap(await b.openJob('same-id'));
    ja.persistPut('c', key(1), payload('a'));
    jb.persistPut('c', key(1), payload('b, longer than 4 bytes'));
    ja.persistPut('c', key(2), payload('too long for a'));
    expect(unwrap(await ja.get('c', key(1)))).toEqual(payload('a'));
    expect(unwrap(await jb.get('c', key(1)))).toEqual(payload('b, longer than 4 bytes'));
    expect(seenA.map((e) => e.reason)).toEqual(['invalid']); // a's option, a's events only
    unwrap(await a.close());
    expect(ja.running).toBe(false);
    expect(unwrap(await jb.get('c', key(1)))).toEqual(payload('b, longer than 4 bytes'));
  });

  it('is not the singleton, and the singleton is not it', async () => {
    const p = open(':memory:');
    expect(Persistency.instance().isErr()).toBe(true); // no singleton yet
    const single = unwrap(Persistency.instance(':memory:'));
    expect(single).not.toBe(p);
    expect(unwrap(Persistency.instance())).toBe(single);
    unwrap(await p.openJob('j'));
    unwrap(await p.close());
    expect(unwrap(Persistency.instance())).toBe(single); // closing p left the singleton
  });

  it('two instances of one thread share a root and never own one job: Busy until the owner lets go', async () => {
    const root = tempDir();
    const first = open(root);
    const second = open(root);
    const j = unwrap(await first.openJob('j'));
    j.persistPut('c', key(1), payload('first'));
    const refused = await second.openJob('j');
    expect(refused.isErr() && refused.error.kind).toBe('Busy');
    expect(refused.isErr() && refused.error.message).toContain('another Persistency instance');
    const dropRefused = await second.dropJob('j');
    expect(dropRefused.isErr() && dropRefused.error.kind).toBe('Busy');
    // Another job of the root is the second's to own, and then not the first's.
    const k = unwrap(await second.openJob('k'));
    k.persistPut('c', key(1), payload('second'));
    unwrap(await k.flush());
    const kRefused = await first.openJob('k');
    expect(kRefused.isErr() && kRefused.error.kind).toBe('Busy');
    expect(unwrap(await j.get('c', key(1)))).toEqual(payload('first'));
    // Closing the first leaves the second's job, and hands 'j' over.
    unwrap(await first.close());
    expect(unwrap(await k.get('c', key(1)))).toEqual(payload('second'));
    const taken = unwrap(await second.openJob('j'));
    expect(unwrap(await taken.get('c', key(1)))).toEqual(payload('first'));
    // A root spelled another way is the same root.
    const third = open(`${root}/./`);
    const again = await third.openJob('k');
    expect(again.isErr() && again.error.kind).toBe('Busy');
    unwrap(await third.openJob('m'));
    unwrap(await second.closeJob('k'));
    unwrap(await third.dropJob('k'));
    expect(unwrap(await second.listJobs())).toEqual(['j', 'm']);
    unwrap(await third.close());
    unwrap(await second.close());
  });

  it('a drop by one instance while another opens the job is Busy, and never deletes its new file', async () => {
    const root = tempDir();
    const a = open(root, { workerThreads: 1 });
    const b = open(root, { workerThreads: 1 });
    // The opener holds the job from its first step, before the root exists (a review found
    // a drop answered Ok while the open waited for the root to be made).
    const opening = a.openJob('j');
    const dropped = await b.dropJob('j');
    expect(dropped.isErr() && dropped.error.kind).toBe('Busy');
    unwrap(await opening);
    // At every moment of the open, and once it is done, the drop is refused and the job
    // keeps what it writes.
    for (let i = 0; i < 80; i++) {
      const id = `r${i}`;
      const o = a.openJob(id);
      for (let n = 0; n < i % 40; n++) await new Promise((r) => setImmediate(r));
      const d = await b.dropJob(id);
      expect(d.isErr() && d.error.kind, id).toBe('Busy');
      const job = unwrap(await o);
      job.persistPut('c', key(1), payload(id));
      unwrap(await job.flush());
      unwrap(await a.closeJob(id));
      const again = unwrap(await a.openJob(id));
      expect(unwrap(await again.get('c', key(1))), id).toEqual(payload(id));
      unwrap(await a.closeJob(id));
    }
  });

  it('a drop of a job with no file deletes nothing; stray side files of one are removed', async () => {
    const root = tempDir();
    const a = open(root);
    const b = open(root);
    unwrap(await a.openJob('held'));
    unwrap(await b.dropJob('never-made')); // no file: Ok, no lock needed
    writeFileSync(join(root, 'stray.db-wal'), 'left behind');
    unwrap(await b.dropJob('stray'));
    expect(existsSync(join(root, 'stray.db-wal'))).toBe(false);
  });

  it('a root reached through a symbolic link is the same root', async () => {
    const root = tempDir();
    const link = `${root}-link`;
    symlinkSync(root, link);
    try {
      const a = open(root);
      const c = open(link);
      unwrap(await a.openJob('j'));
      const refused = await c.openJob('j');
      expect(refused.isErr() && refused.error.kind).toBe('Busy');
      unwrap(await c.openJob('m'));
      const other = await a.openJob('m');
      expect(other.isErr() && other.error.kind).toBe('Busy');
    } finally {
      for (const p of opened.splice(0)) await p.close();
      unlinkSync(link);
    }
  });

  it('refuses a bad root or option like instance()', () => {
    expect(Persistency.open('').isErr()).toBe(true);
    const r = Persistency.open(':memory:', { sliceMs: 0 });
    expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
  });
});

describe('listJobs', () => {
  it('lists every job file of the root, open or not, sorted, decoded; other files are ignored', async () => {
    const root = tempDir();
    const p = open(root);
    for (const id of ['b', 'a/1', 'Zed', 'é']) unwrap(await p.openJob(id));
    unwrap(await p.closeJob('b'));
    writeFileSync(join(root, 'notes.txt'), 'x');
    writeFileSync(join(root, '%zz.db'), 'not a name of ours');
    writeFileSync(join(root, 'orphan.db-wal'), '');
    mkdirSync(join(root, 'dir.db'));
    writeFileSync(join(root, 'Legacy.db'), ''); // a 0.1 name
    expect(unwrap(await p.listJobs())).toEqual(['Legacy', 'Zed', 'a/1', 'b', 'é']);
  });

  it('a root not made yet has no jobs; a :memory: root lists its open and kept jobs', async () => {
    expect(unwrap(await open(join(tempDir(), 'not yet')).listJobs())).toEqual([]);
    const m = open(':memory:');
    for (const id of ['y', 'x', 'gone']) unwrap(await m.openJob(id));
    unwrap(await m.closeJob('y')); // closed, its data kept
    unwrap(await m.dropJob('gone'));
    expect(unwrap(await m.listJobs())).toEqual(['x', 'y']);
  });

  it('a :memory: job is listed when jobOpened is emitted, on its first open and its reopen', async () => {
    const m = open(':memory:');
    const seen: PromiseLike<string>[] = [];
    m.events.on('jobOpened', (e) => {
      seen.push(m.listJobs().then((r) => `${e.jobId}: [${unwrap(r).join()}]`));
    });
    const job = unwrap(await m.openJob('m'));
    job.persistPut('c', key(1), payload('x'));
    unwrap(await m.closeJob('m'));
    unwrap(await m.openJob('m'));
    expect(await Promise.all(seen)).toEqual(['m: [m]', 'm: [m]']);
  });

  it('a :memory: job being opened again is listed throughout, its data kept', async () => {
    const m = open(':memory:');
    const job = unwrap(await m.openJob('m'));
    job.persistPut('c', key(1), payload('x'));
    unwrap(await m.closeJob('m'));
    const reopening = m.openJob('m');
    const during: string[][] = [];
    while (during.length < 50) {
      during.push(unwrap(await m.listJobs())); // before, while and after the worker starts
      await new Promise((r) => setImmediate(r));
    }
    const again = unwrap(await reopening);
    expect(unwrap(await again.get('c', key(1)))).toEqual(payload('x'));
    expect(during.filter((ids) => ids.join() !== 'm')).toEqual([]);
  });
});
