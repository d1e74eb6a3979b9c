/*
 * Quick start: two tenants, message rows keyed (channel, seq), paging with scanPrefix,
 * counting, read-your-writes, flush, and a clean close. Run it twice: the second run
 * finds the first run's messages under ./data.
 *
 *   npm run demo            # root ./data
 *   npm run demo -- /tmp/x  # another root
 */
import {
  decodeKey,
  decodePayload,
  type Job,
  key,
  Persistency,
  payload,
  prefixRange,
} from '../src/index.js';

const root = process.argv[2] ?? './data';
const p = Persistency.instance(root)._unsafeUnwrap();
p.events.on('writeFailed', (e) =>
  console.error(`  ! write failed on ${e.jobId}: ${e.error.message}`),
);

function step(title: string): void {
  console.log(`\n== ${title}`);
}

async function open(id: string): Promise<Job> {
  const r = await p.openJob(id);
  if (r.isErr()) throw r.error;
  return r.value;
}

step(`open two tenants under ${p.rootDir}`);
const acme = await open('acme');
const globex = await open('globex');
console.log(`  opened ${acme.id} and ${globex.id} (one SQLite file and one worker thread each)`);

step('what earlier runs left');
const before = (await acme.count('msg', prefixRange(key('general'))))._unsafeUnwrap();
const [newest] = (
  await acme.scanPrefix('msg', key('general'), { reverse: true, limit: 1 })
)._unsafeUnwrap();
const next = newest === undefined ? 0 : decodeKey(newest.key, ['string', 'number'])[1] + 1;
console.log(`  acme/#general holds ${before} messages from earlier runs; the next seq is ${next}`);

step('write 25 messages to acme/#general and 3 to globex/#general (fire-and-forget)');
for (let i = 0; i < 25; i++) {
  const seq = next + i;
  acme.persistPut('msg', key('general', seq), payload('ada', `hello #${seq}`));
}
for (let i = 0; i < 3; i++)
  globex.persistPut('msg', key('general', i), payload('bob', `globex ${i}`));
console.log('  persistPut returned at once; the worker commits them as one group');

step('read your writes: no flush, no polling');
const latest = (await acme.get('msg', key('general', next + 24)))._unsafeUnwrap();
if (latest === undefined) throw new Error('read-your-writes failed');
console.log(`  get(general, ${next + 24}) ->`, decodePayload(latest, ['string', 'string']));

step('page through history: scanPrefix forward, limit 5');
for (const row of (await acme.scanPrefix('msg', key('general'), { limit: 5 }))._unsafeUnwrap()) {
  const [channel, seq] = decodeKey(row.key, ['string', 'number']);
  const [author, text] = decodePayload(row.payload, ['string', 'string']);
  console.log(`  ${channel} #${seq}  ${author}: ${text}  key=${row.key.toString()}`);
}

step('newest first: scanPrefix reverse, limit 3');
for (const row of (
  await acme.scanPrefix('msg', key('general'), { reverse: true, limit: 3 })
)._unsafeUnwrap()) {
  console.log(
    `  #${decodeKey(row.key, ['string', 'number'])[1]}`,
    decodePayload(row.payload, ['string', 'string'])[1],
  );
}

step('count');
console.log(
  `  acme/#general: ${(await acme.count('msg', prefixRange(key('general'))))._unsafeUnwrap()}`,
);
console.log(
  `  globex/#general: ${(await globex.count('msg', prefixRange(key('general'))))._unsafeUnwrap()} (tenants are isolated)`,
);

step('an atomic batch: move a message between channels');
acme.persist([
  { kind: 'put', category: 'msg', key: key('archive', 0), payload: payload('ada', 'moved') },
  { kind: 'delete', category: 'msg', key: key('general', 0) },
]);
console.log(
  `  archive has ${(await acme.count('msg', prefixRange(key('archive'))))._unsafeUnwrap()} row(s), general#0 exists: ${(await acme.exists('msg', key('general', 0)))._unsafeUnwrap()}`,
);

const remaining = (await acme.count('msg', prefixRange(key('general'))))._unsafeUnwrap();

step('flush: resolves once every earlier write is on disk (synchronous=FULL)');
const flushed = await acme.flush();
console.log(`  flush -> ${flushed.isOk() ? 'Ok' : `Err ${flushed.error.message}`}`);

step('bad input is refused, never thrown, never queued');
acme.persistPut('', key('general', -1), payload('x'));
const bad = await acme.scan('msg', prefixRange(key('general')), { limit: -1 });
console.log(`  scan with limit -1 -> ${bad.isErr() ? `Err(${bad.error.kind})` : 'Ok?'}`);

step('close: drains, commits, checkpoints, stops the workers');
const closed = await p.close();
console.log(
  `  close -> ${closed.isOk() ? 'Ok' : `Err ${closed.error.message}`}; acme.running = ${acme.running}`,
);
console.log(
  `\nRun it again: acme/#general will start from the ${remaining} messages it holds now.`,
);
