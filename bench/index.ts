/*
 * Benchmark dispatcher.
 *
 *   npm run bench                     every benchmark
 *   npm run bench -- --quick          every benchmark, small runs
 *   npm run bench -- codec [--quick]  only the named benchmark(s)
 *   npm run bench -- peers [--quick]  persistency vs raw better-sqlite3, Deno KV, lmdb, LevelDB
 *   npm run bench -- tenants [--quick] 10,000 jobs in one process vs lmdb, LevelDB
 *   npm run bench -- reads [--quick]  getMany, iterate, scan paging vs raw better-sqlite3
 *   npm run bench -- atomic [--quick] CAS and add vs Deno KV, persistAdd vs persistPut, watch cost
 *   npm run bench -- backup [--quick] job.backup of a 1 GiB job: a writer's stall vs peer copies
 *   npm run bench -- sds [--quick]    a durable @waku/sds history vs SDS's in-memory one
 *   npm run bench -- commits [--quick] durable commits over 1, 200 and 500 files (plain better-sqlite3)
 *
 * To add a benchmark, export `run…Bench(options)` from its own file and add it to BENCHES.
 */
import { runAtomicBench } from './atomic.js';
import { runBackupBench } from './backup.js';
import { runCodecBench } from './codec.js';
import { runCommitsBench } from './commits.js';
import { runPeersBench } from './peers.js';
import { runReadsBench } from './reads.js';
import { runSdsBench } from './sds.js';
import { runTenantsBench } from './tenants.js';

export interface BenchOptions {
  quick: boolean;
}

const BENCHES: Record<string, (options: BenchOptions) => Promise<void>> = {
  atomic: runAtomicBench,
  backup: runBackupBench,
  codec: runCodecBench,
  commits: runCommitsBench,
  peers: runPeersBench,
  reads: runReadsBench,
  sds: runSdsBench,
  tenants: runTenantsBench,
};

function usage(): string {
  return `usage: npm run bench -- [--quick] [${Object.keys(BENCHES).join('|')} ...]`;
}

async function main(argv: readonly string[]): Promise<number> {
  const options: BenchOptions = { quick: false };
  const names: string[] = [];
  for (const arg of argv) {
    if (arg === '--quick') options.quick = true;
    else if (arg === '--help' || arg === '-h') {
      console.log(usage());
      return 0;
    } else if (arg.startsWith('-')) {
      console.error(`unknown option ${arg}\n${usage()}`);
      return 2;
    } else if (Object.hasOwn(BENCHES, arg)) names.push(arg);
    else {
      console.error(`unknown benchmark ${arg}\n${usage()}`);
      return 2;
    }
  }
  for (const name of names.length > 0 ? names : Object.keys(BENCHES)) {
    await BENCHES[name]?.(options);
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
