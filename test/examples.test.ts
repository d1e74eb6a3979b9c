// Every example runs as its own process (plain Node with the tsx loader), on a temporary
// root, exits 0 and prints what it claims; where it writes data, the library checks the
// files it left. The service example is also stopped by a signal sent from here.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeKey, decodePayload, key, Persistency, prefixRange } from '../src/index.js';
import { openSdsHistory } from '../src/sds/index.js';
import { unwrap, useTempDirs } from './support/env.js';

const repo = fileURLToPath(new URL('..', import.meta.url));
const tempDir = useTempDirs('persistency-examples-');

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Run `examples/<file>` with `args` and collect its output; `onLine` sees each line of
 * stdout as it arrives, with the child (to signal it).
 */
function runExample(
  file: string,
  args: readonly string[],
  onLine?: (line: string, child: ChildProcess) => void,
): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', `examples/${file}`, ...args], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
    // A hung example fails its test instead of hanging the run.
    timeout: 50_000,
    killSignal: 'SIGKILL',
  });
  const lines: string[] = [];
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  const reader = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  reader.on('line', (line) => {
    lines.push(line);
    onLine?.(line, child);
  });
  const stdoutDone = new Promise<void>((resolve) => reader.once('close', resolve));
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.once('close', (code, signal) => resolve([code, signal])),
  );
  return Promise.all([exited, stdoutDone]).then(([[code, signal]]) => ({
    code,
    signal,
    stdout: lines.join('\n'),
    stderr,
  }));
}

/** Exit 0, with stdout and stderr in the failure message when not. */
function expectSuccess(run: Run): void {
  expect(
    { code: run.code, signal: run.signal },
    `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`,
  ).toEqual({ code: 0, signal: null });
}

/** Runs of spaces collapsed, so column padding does not matter. */
const squeeze = (s: string): string => s.replace(/ +/g, ' ');

describe('examples/quickstart.ts', () => {
  it('writes, reads its writes, pages, flushes and closes; a second run finds the first one’s messages', async () => {
    const root = tempDir();
    const first = await runExample('quickstart.ts', [root]);
    expectSuccess(first);
    for (const line of [
      'acme/#general holds 0 messages from earlier runs; the next seq is 0',
      "get(general, 24) -> [ 'ada', 'hello #24' ]",
      'general #0 ada: hello #0 key=000767656e6572616c8000000000000000',
      'acme/#general: 25',
      'globex/#general: 3 (tenants are isolated)',
      'archive has 1 row(s), general#0 exists: false',
      'flush -> Ok',
      'scan with limit -1 -> Err(InvalidArgument)',
      'close -> Ok; acme.running = false',
    ]) {
      expect(squeeze(first.stdout)).toContain(line);
    }
    // The refused write of the bad-input step, reported as an event, and nothing else.
    expect(first.stderr.trim()).toBe('! write failed on acme: persistPut: category is empty');

    const second = await runExample('quickstart.ts', [root]);
    expectSuccess(second);
    expect(second.stdout).toContain(
      'acme/#general holds 24 messages from earlier runs; the next seq is 25',
    );
  });
});

describe('examples/message-history.ts', () => {
  it('orders by Lamport clock, pages newest first with after, exports from a snapshot, evicts past the cap atomically, drops a channel', async () => {
    const root = tempDir();
    const run = await runExample('message-history.ts', [root]);
    expectSuccess(run);
    expect(run.stderr).toBe('');
    for (const line of [
      'files: gardening.db, rust-lang.db',
      'lamport 1..30; clock is now 30',
      "xena's message, stamped 25, is stored in the past: 24:local-24 25:local-25 25:peer-x-1 26:local-26",
      'at lamport 31: peer-m-4 peer-z-9',
      'page 1: 31:zed 31:max 30:cy 29:bob 28:ada 27:cy 26:bob 25:xena',
      'page 2: 25:ada 24:cy 23:bob 22:ada 21:cy 20:bob 19:ada 18:cy',
      'page 5: 1:ada',
      '5 pages held 33 distinct messages of 33',
      'exported 33 messages (ada 10, bob 10, cy 10, xena 1, max 1, zed 1); the channel holds 34 now',
      'evicted 14 oldest (lamport 1..14); #general holds 20, oldest now lamport 15',
      'meta blob: topic "anything Rust", clock 32, stored 20, evicted 14',
      'before: #dev 6 messages, #dev-ops 4',
      'after dropping #dev: #dev 0 messages (meta gone), #dev-ops 4',
      'gardening/#general: 3 messages; rust-lang/#general: 20',
      'rust-lang/#general after reopen: clock 32, 20 stored, 14 evicted; newest: 32:eve 31:zed 31:max',
      'write failures: 0',
    ]) {
      expect(run.stdout).toContain(line);
    }

    // What it left on disk, read with the library.
    const p = unwrap(Persistency.instance(root));
    const rust = unwrap(await p.openJob('rust-lang'));
    const general = unwrap(await rust.scanPrefix('log', key('general')));
    expect(general).toHaveLength(20);
    const lamports = general.map((row) => decodeKey(row.key, ['string', 'number', 'string'])[1]);
    expect(lamports[0]).toBe(15);
    expect(lamports.at(-1)).toBe(32);
    expect([...lamports].sort((a, b) => a - b)).toEqual(lamports);
    const meta = unwrap(await rust.get('meta', key('general')));
    expect(
      meta === undefined ? null : decodePayload(meta, ['string', 'number', 'number', 'number']),
    ).toEqual(['anything Rust', 32, 20, 14]);
    expect(unwrap(await rust.count('log', prefixRange(key('dev'))))).toBe(0);
    expect(unwrap(await rust.exists('meta', key('dev')))).toBe(false);
    expect(unwrap(await rust.count('log', prefixRange(key('dev-ops'))))).toBe(4);
    const garden = unwrap(await p.openJob('gardening'));
    expect(unwrap(await garden.count('log', prefixRange(key('general'))))).toBe(3);
  });
});

describe('examples/counters-and-watch.ts', () => {
  it('counts with persistAdd into a watched live view, hands out codes by compare-and-set, expires sessions', async () => {
    const root = tempDir();
    const run = await runExample('counters-and-watch.ts', [root]);
    expectSuccess(run);
    expect(run.stderr).toBe('');
    for (const line of [
      'acme stored: / 200, /pricing 200',
      'acme live view: / 200, /pricing 200 (from',
      "globex stored: / 100, /pricing 100 (not in acme's view)",
      'granted 5 of 20; 0 left (with retries)',
      '09:00 ada, bob',
      '09:20 bob is active again: ada, bob',
      "09:35 bob (ada's expired)",
      '09:55 0 sessions',
      'write failures: 0',
    ]) {
      expect(run.stdout).toContain(line);
    }
    // What it left, read with the library: counters are toPayload(i64(n)).
    const p = unwrap(Persistency.open(root));
    const acme = unwrap(await p.openJob('acme'));
    const views = unwrap(await acme.scan('views', prefixRange(key())));
    expect(views.map((r) => [decodeKey(r.key, 'string'), decodePayload(r.payload, 'i64')])).toEqual(
      [
        ['/', 200n],
        ['/pricing', 200n],
      ],
    );
    await p.close();
  });
});

describe('examples/sds-channel.ts', () => {
  it('keeps bob’s SDS history across his restart and across runs, skipping a redelivered message', async () => {
    const root = tempDir();
    const first = await runExample('sds-channel.ts', [root]);
    expectSuccess(first);
    expect(first.stderr).toBe('');
    for (const line of [
      "run 1: bob's history holds 0 messages from earlier runs",
      'bob delivered: "run 1: hello bob", "run 1: the build is green"',
      'bob flushed 3 messages and stopped',
      'bob restarted with 3 messages; the last one: "run 1: the build is green"',
      'bob delivered "run 1: shipping it" at once (0 missing dependencies)',
      'redelivered message skipped: yes',
      "bob's history: 4 messages in",
    ]) {
      expect(first.stdout).toContain(line);
    }
    const second = await runExample('sds-channel.ts', [root]);
    expectSuccess(second);
    expect(second.stdout).toContain("run 2: bob's history holds 4 messages from earlier runs");
    expect(second.stdout).toContain('bob restarted with 7 messages');
    // What it left, read back with the adapter: both runs' messages in SDS's order.
    const p = unwrap(Persistency.open(root));
    const history = unwrap(await openSdsHistory(unwrap(await p.openJob('bob')), 'team-room'));
    const bodies = history.slice().map((m) => new TextDecoder().decode(m.content));
    expect(bodies).toEqual(
      [1, 2].flatMap((run) =>
        ['hello bob', 'hi alice', 'the build is green', 'shipping it'].map(
          (t) => `run ${run}: ${t}`,
        ),
      ),
    );
    await p.close();
  });
});

describe('examples/cbor-keys.ts', () => {
  it('prints the order CBOR keys and built-in keys give, from real scans', async () => {
    const run = await runExample('cbor-keys.ts', [tempDir()]);
    expectSuccess(run);
    expect(run.stderr).toBe('');
    const out = squeeze(run.stdout);
    for (const block of [
      // integers across the sign
      'built-in key(v) -1000 < -2 < -1 < 0 < 1 < 23 < 24 < 255 < 256 < 1000000\n numeric order: yes',
      'CBOR rawKey(encode(v)) 0 < 1 < 23 < 24 < 255 < 256 < 1000000 < -1 < -2 < -1000\n numeric order: no',
      'CBOR rawKey(encode(v)) 0 < 1 < 23 < 24 < 255 < 256 < 1000000\n numeric order: yes',
      // from 2^32 on, bigints
      'built-in key(v) 5n < 7 < 100n < 4294967295 < 4294967296 < 1099511627776\n numeric order: yes',
      'CBOR rawKey(encode(v)) 7 < 4294967295 < 5n < 100n < 4294967296 < 1099511627776\n numeric order: no',
      'encode(5) = 05 vs encode(5n) = 1b 00 00 00 00 00 00 00 05, while key(5).equals(key(5n)) is true',
      // floats
      'built-in key(v) 3 < 1000\n numeric order: yes\n refused: 1.5 (InvalidArgument), -0.5 (InvalidArgument), 0.25 (InvalidArgument), -2.5 (InvalidArgument)',
      'CBOR rawKey(encode(v)) 3 < 1000 < 0.25 < 1.5 < -0.5 < -2.5\n numeric order: no',
      'CBOR rawKey(encode(v)) 1e-9 < 0.25 < 1.5 < 2.75 < 1e+300\n numeric order: yes',
      // strings: length first in both codecs
      'built-in key(v) "" < "a" < "b" < "aa" < "ab" < "ba" < "abc"\n alphabetical order: no',
      'CBOR rawKey(encode(v)) "" < "a" < "b" < "aa" < "ab" < "ba" < "abc"\n alphabetical order: no',
      'raw UTF-8 bytes "" < "a" < "aa" < "ab" < "abc" < "b" < "ba"\n alphabetical order: yes',
      // tuples
      'built-in key(v) ["a"] < ["a",1] < ["a",1,"x"] < ["a",2] < ["a",10] < ["b",1]\n tuple order: yes',
      'CBOR rawKey(encode(v)) ["a"] < ["a",1] < ["a",2] < ["a",10] < ["b",1] < ["a",1,"x"]\n tuple order: no',
      'CBOR sequence of items ["a"] < ["a",1] < ["a",1,"x"] < ["a",2] < ["a",10] < ["b",1]\n tuple order: yes',
      'scanPrefix(built-in key(v) of ["a"]) -> 5 rows',
      'scanPrefix(CBOR rawKey(encode(v)) of ["a"]) -> 1 row: ["a"]',
      'scanPrefix(CBOR sequence of items of ["a"]) -> 5 rows',
      'close -> Ok',
    ]) {
      expect(out).toContain(block);
    }
  });
});

describe('examples/service-shutdown.ts', () => {
  interface Issued {
    readonly tenant: string;
    readonly first: number;
    readonly count: number;
  }

  /** The child's own report of every write it issued, one line per tenant. */
  function issuedWrites(stdout: string): Issued[] {
    const issued = [
      ...stdout.matchAll(/issued to (\S+): (\d+) writes \(#(\d+)\.\.#(-?\d+)\), none flushed/g),
    ].map(([, tenant, count, first, last]) => {
      expect(Number(last) - Number(first) + 1).toBe(Number(count));
      return { tenant: tenant as string, first: Number(first), count: Number(count) };
    });
    expect(issued.map((t) => t.tenant).sort()).toEqual(['cold-a', 'cold-b', 'hot']);
    return issued;
  }

  /** Reopen the child's root with the library: exactly the writes it reported, each whole. */
  async function expectAllPresent(root: string, issued: readonly Issued[]): Promise<void> {
    const p = unwrap(Persistency.instance(root));
    for (const { tenant, first, count } of issued) {
      const job = unwrap(await p.openJob(tenant));
      const rows = unwrap(await job.scan('events', { start: key() }));
      // A fresh root: the rows are exactly #first … #first+count-1, nothing more.
      expect(rows.map((row) => decodeKey(row.key, 'number'))).toEqual(
        Array.from({ length: count }, (_, i) => first + i),
      );
      for (const row of rows) {
        const seq = decodeKey(row.key, 'number');
        const [who, text] = decodePayload(row.payload, ['string', 'string', 'number']);
        expect([who, text]).toEqual([tenant, `event ${seq}`]);
      }
    }
    unwrap(await p.close());
  }

  it('demo: idles jobs out, reopens on demand, signals itself, and every write survives', async () => {
    const root = tempDir();
    const run = await runExample('service-shutdown.ts', [root]);
    expectSuccess(run);
    expect(run.stderr).toBe('');
    for (const line of [
      'opened job hot on demand',
      'opened job cold-a on demand',
      'opened job cold-b on demand',
      'closed idle job cold-a after 150 ms without a request -> Ok',
      'closed idle job cold-b after 150 ms without a request -> Ok',
      'reopened job cold-a on demand (it had been closed while idle)',
      '== demo: sending SIGTERM to myself',
      '== SIGTERM: stop taking requests, close the 2 open jobs',
      'p.close() -> Ok',
      'write failures reported: 0',
    ]) {
      expect(run.stdout).toContain(line);
    }
    const issued = issuedWrites(run.stdout);
    const total = issued.reduce((n, t) => n + t.count, 0);
    expect(issued.find((t) => t.tenant === 'cold-a')?.count).toBe(35);
    expect(issued.find((t) => t.tenant === 'cold-b')?.count).toBe(10);
    expect(run.stdout).toContain(`all ${total} writes issued are present`);
    await expectAllPresent(root, issued);
  });

  it.each(['SIGTERM', 'SIGINT'] as const)(
    '--serve: %s sent from outside closes every job and loses no write',
    async (signal) => {
      const root = tempDir();
      let signalled = false;
      const run = await runExample('service-shutdown.ts', ['--serve', root], (line, child) => {
        if (!signalled && line.startsWith('serving (pid')) {
          signalled = true;
          child.kill(signal);
        }
      });
      expectSuccess(run);
      expect(signalled).toBe(true);
      expect(run.stderr).toBe('');
      expect(run.stdout).not.toContain('sending SIGTERM to myself');
      expect(run.stdout).not.toContain('no signal within');
      expect(run.stdout).toContain(`== ${signal}: stop taking requests`);
      expect(run.stdout).toContain('p.close() -> Ok');
      expect(run.stdout).toContain('write failures reported: 0');
      const issued = issuedWrites(run.stdout);
      for (const t of issued) expect(t.count).toBeGreaterThan(0);
      await expectAllPresent(root, issued);
    },
  );
});
