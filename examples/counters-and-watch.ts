/*
 * Per-tenant counters, a live view fed by a watcher, and sessions that expire.
 *
 * Each tenant (a job) counts page views per page with `persistAdd` (no read, no retry, from
 * any number of concurrent requests), hands out a limited number of invitation codes with a
 * compare-and-set (`atomic().check().put()`), keeps login sessions that expire after 30
 * minutes, and a dashboard keeps a live view of the counters from `watch`. Time is simulated
 * with the `clock` option so the run is the same every time.
 *
 *   npm run example:counters            # root ./data-counters
 *   npm run example:counters -- /tmp/x  # another root
 */
import {
  decodeKey,
  decodePayload,
  i64,
  type Job,
  key,
  Persistency,
  payload,
  prefixRange,
  toPayload,
} from '../src/index.js';

const root = process.argv[2] ?? './data-counters';
let now = Date.UTC(2026, 11, 5, 9, 0); // 09:00 UTC, moved by hand below
const p = Persistency.open(root, { clock: () => now })._unsafeUnwrap();
let failures = 0;
p.events.on('writeFailed', (e) => {
  failures++;
  console.error(`  ! write failed on ${e.jobId}: ${e.error.message}`);
});

const counter = (bytes: Uint8Array | undefined): bigint =>
  bytes === undefined ? 0n : decodePayload(bytes, 'i64');
async function open(id: string): Promise<Job> {
  return (await p.openJob(id))._unsafeUnwrap();
}

// Start from scratch on every run (the example's own jobs only).
for (const id of ['acme', 'globex']) (await p.dropJob(id))._unsafeUnwrap();
const acme = await open('acme');
const globex = await open('globex');

console.log("== a live view of acme's page views, fed by a watcher");
const view = new Map<string, bigint>();
let commits = 0;
const watcher = (async () => {
  for await (const changes of acme.watch('views', prefixRange(key()))) {
    commits++;
    for (const c of changes) {
      if (!('key' in c)) continue;
      const page = decodeKey(c.key, 'string');
      if (c.payload === undefined) view.delete(page);
      else view.set(page, counter(c.payload));
    }
    const total = [...view.values()].reduce((a, b) => a + b, 0n);
    if (total === 400n) return; // acme's share of the requests below, all seen
  }
})();

console.log('== 600 requests at once, each counting its page view');
const pages = ['/', '/pricing', '/docs'];
await Promise.all(
  Array.from({ length: 600 }, async (_, i) => {
    const tenant = i % 3 === 2 ? globex : acme;
    tenant.persistAdd('views', key(pages[i % 2] as string), 1);
  }),
);
(await acme.flush())._unsafeUnwrap();
(await globex.flush())._unsafeUnwrap();
await watcher;
const stored = (await acme.getMany('views', [key('/'), key('/pricing')]))._unsafeUnwrap();
console.log(`  acme stored: / ${counter(stored[0])}, /pricing ${counter(stored[1])}`);
console.log(
  `  acme live view: / ${view.get('/')}, /pricing ${view.get('/pricing')} (from ${commits} commits)`,
);
const globexViews = (await globex.scan('views', prefixRange(key())))._unsafeUnwrap();
console.log(
  `  globex stored: ${globexViews.map((r) => `${decodeKey(r.key, 'string')} ${counter(r.payload)}`).join(', ')} (not in acme's view)`,
);

console.log('== 5 invitation codes, 20 people asking at once (compare-and-set)');
const left = key('invitations-left');
acme.persistPut('plan', left, toPayload(i64(5)));
let retries = 0;
const granted = await Promise.all(
  Array.from({ length: 20 }, async () => {
    for (;;) {
      const seen = (await acme.get('plan', left))._unsafeUnwrap();
      const n = counter(seen);
      if (n === 0n) return false;
      const r = await acme
        .atomic()
        .check('plan', left, seen)
        .put('plan', left, toPayload(i64(n - 1n)))
        .commit();
      if (r._unsafeUnwrap().ok) return true;
      retries++; // another request took one first: read again
    }
  }),
);
console.log(
  `  granted ${granted.filter(Boolean).length} of 20; ${counter((await acme.get('plan', left))._unsafeUnwrap())} left (${retries > 0 ? 'with' : 'without'} retries)`,
);

console.log('== sessions that expire after 30 minutes of inactivity');
const THIRTY_MINUTES = 30 * 60_000;
const login = (user: string) =>
  acme.persistPut('sessions', key(user), payload(user), { expireInMs: THIRTY_MINUTES });
login('ada');
login('bob');
const sessions = async () =>
  (await acme.scan('sessions', prefixRange(key())))
    ._unsafeUnwrap()
    .map((r) => decodeKey(r.key, 'string'));
console.log(`  09:00 ${(await sessions()).join(', ')}`);
now += 20 * 60_000;
login('bob'); // bob is active again: a new expiry
console.log(`  09:20 bob is active again: ${(await sessions()).join(', ')}`);
now += 15 * 60_000;
console.log(`  09:35 ${(await sessions()).join(', ')} (ada's expired)`);
now += 20 * 60_000;
console.log(`  09:55 ${(await sessions()).length} sessions`);

(await p.close())._unsafeUnwrap();
console.log(`write failures: ${failures}`);
