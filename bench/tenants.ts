/*
 * Thousands of tenants in one process (issue 12): for ours (`workerThreads: 2` and a short
 * `idleCloseMs`), lmdb-js and classic-level, each in a process of its own: open N stores
 * (open, one put, a durable flush), keep 500 of them busy (bursts of puts, a flush, gets),
 * close everything, reopen and count every row. Prints RSS, threads, descriptors, open to
 * first durable write, active-phase rows/s against one store's, close time, and our
 * targets. Runs the bundled code under plain node, as the package runs (see peers-node.ts).
 *
 *   npm run bench -- tenants            10,000 stores, 500 active for 10 s
 *   npm run bench -- tenants --quick    1,000 stores, 100 active for 2 s
 *   PERSISTENCY_TENANTS_JOBS=500 PERSISTENCY_TENANTS_IDLE_MS=0 PERSISTENCY_TENANTS_MAX_RESIDENT=0 \
 *     npm run bench -- tenants          only the 500 active stores, none released
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { BenchOptions } from './index.js';
import { bundleForNode, repoRoot } from './peers-node.js';
import {
  FLUSH_EACH_BURST,
  OPEN_CONCURRENCY,
  PUT_BURST,
  SINGLE_SECONDS,
  TASKS,
  type TenantsReport,
  type Usage,
  WORKER_THREADS,
} from './tenants-child.js';

const ENGINES = ['persistency', 'lmdb', 'classic-level'] as const;
/** Ours releases a job idle this long: the open phase's jobs go idle as soon as they are written. */
const IDLE_CLOSE_MS = Number(process.env.PERSISTENCY_TENANTS_IDLE_MS ?? 500);
/** Ours: at most this many jobs hold a connection (3 descriptors each); 0 = no cap. */
const MAX_RESIDENT = Number(process.env.PERSISTENCY_TENANTS_MAX_RESIDENT ?? 200);
/**
 * Stores per system instead of 10,000 (1,000 with --quick). With as many stores as active
 * ones, the peers run the active phase too, and ours (idle 0, no cap) shows the rate with
 * no release at all.
 */
const JOBS = process.env.PERSISTENCY_TENANTS_JOBS;
const MiB = 2 ** 20;

function runChild(dir: string, args: string[]): Promise<TenantsReport | string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--expose-gc', join(dir, 'tenants-child.js'), ...args], {
      cwd: repoRoot(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('close', (code, signal) => {
      const line = out.trim().split('\n').at(-1) ?? '';
      if (code === 0 && line.startsWith('{')) resolve(JSON.parse(line) as TenantsReport);
      else {
        const progress = [...err.matchAll(/^opened (\d+)$/gm)].at(-1)?.[1] ?? '0';
        const last = err.split('\n').filter((l) => l !== '' && !l.startsWith('opened'));
        const why = last.slice(-2).join(' | ') || 'no message';
        resolve(`exit ${code ?? signal} after ${progress} stores opened: ${why}`);
      }
    });
  });
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`;
const fixed = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
const k = (n: number) => (Number.isFinite(n) ? `${(n / 1000).toFixed(1)} k` : '-');
const usage = (u: Usage) =>
  `${mib(u.rss).padStart(9)} ${String(u.threads).padStart(4)} ${String(u.fds).padStart(6)}`;

function row(r: TenantsReport): string {
  const perStore = (r.atOpen.rss - r.baseline.rss) / Math.max(1, r.opened) / 1024;
  return [
    r.engine.padEnd(13),
    `${r.opened}/${r.jobs}`.padStart(11),
    usage(r.atOpen),
    `${fixed(perStore)} KiB`.padStart(10),
    usage(r.peakOpen),
    usage(r.peakActive),
    fixed(r.openP50Ms, 2).padStart(7),
    fixed(r.openP99Ms, 2).padStart(7),
    k(r.singleRowsPerSec).padStart(9),
    k(r.activeRowsPerSec).padStart(9),
    `${fixed(r.activeRowsPerSec / r.singleRowsPerSec, 2)}x`.padStart(6),
    k(r.oneTaskRowsPerSec).padStart(9),
    fixed(r.closeSeconds, 2).padStart(6),
    r.missingRows === 0 ? `all ${r.verifiedRows}` : `${r.missingRows} MISSING`,
  ].join(' ');
}

function targets(r: TenantsReport): string[] {
  const perStoreKiB = (r.atOpen.rss - r.baseline.rss) / Math.max(1, r.opened) / 1024;
  const peakFds = Math.max(r.peakOpen.fds, r.peakActive.fds, r.atOpen.fds);
  const ratio = r.activeRowsPerSec / r.singleRowsPerSec;
  const check = (ok: boolean, text: string) => `  ${ok ? 'PASS' : 'MISS'}  ${text}`;
  return [
    check(r.failure === undefined && r.opened === r.jobs, `all ${r.jobs} jobs opened`),
    check(r.atOpen.rss <= 1024 * MiB, `RSS at ${r.opened} open jobs ${mib(r.atOpen.rss)} <= 1 GiB`),
    check(perStoreKiB <= 100, `${fixed(perStoreKiB)} KiB per released job <= 100 KiB`),
    check(peakFds <= 1000, `at most ${peakFds} file descriptors <= 1,000 (open, released, active)`),
    check(r.openP50Ms <= 5, `open to first durable write p50 ${fixed(r.openP50Ms, 2)} ms <= 5 ms`),
    check(
      r.openP99Ms <= 50,
      `open to first durable write p99 ${fixed(r.openP99Ms, 2)} ms <= 50 ms`,
    ),
    check(
      ratio >= 0.8,
      `active phase ${fixed(ratio, 2)}x one job's rate >= 0.8x (${fixed(r.activeRowsPerSec / r.oneTaskRowsPerSec, 2)}x one job driven by one task)`,
    ),
    check(
      r.missingRows === 0 && r.verifiedRows > 0,
      `every row present after close (${r.verifiedRows})`,
    ),
  ];
}

export async function runTenantsBench(options: BenchOptions): Promise<void> {
  const jobs = JOBS !== undefined ? Number(JOBS) : options.quick ? 1000 : 10_000;
  const active = Math.min(jobs, options.quick ? 100 : 500);
  const seconds = options.quick ? 2 : 10;
  const root = repoRoot();
  console.log(
    `\ntenants benchmark${options.quick ? ' (--quick)' : ''} — ${new Date().toISOString()}`,
  );
  console.log(
    `node ${process.version} ${process.platform}-${process.arch}; ${cpus()[0]?.model ?? '?'} x ${cpus().length} cores; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(', ')}`,
  );
  console.log(
    `${jobs} stores per system (${OPEN_CONCURRENCY} opens in flight, each: open, one put, durable flush); ${active} active for ${seconds} s and one alone for ${SINGLE_SECONDS} s (${TASKS} tasks, each: ${PUT_BURST} puts to a random store, ${FLUSH_EACH_BURST ? 'its flush' : 'no flush (every store flushed at the end of the phase, PERSISTENCY_TENANTS_FLUSH=end)'}, 4 gets); ours: workerThreads ${WORKER_THREADS}, idleCloseMs ${IDLE_CLOSE_MS}, maxResidentJobs ${MAX_RESIDENT}`,
  );
  const dir = bundleForNode(root, { 'tenants-child': join('bench', 'tenants-child.ts') });
  const reports: TenantsReport[] = [];
  try {
    for (const engine of ENGINES) {
      const r = await runChild(dir, [
        engine,
        String(jobs),
        String(active),
        String(seconds),
        String(IDLE_CLOSE_MS),
        String(MAX_RESIDENT),
      ]);
      if (typeof r === 'string') console.log(`${engine}: failed (${r})`);
      else reports.push(r);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    `\n${'engine'.padEnd(13)} ${'opened'.padStart(11)} ${'rss@open'.padStart(9)} thr    fds  per store ${'peak open: rss'.padStart(14)} thr    fds ${'active: rss'.padStart(11)} thr    fds  p50ms  p99ms    1 job   active  ratio   1 task  close rows`,
  );
  for (const r of reports) console.log(row(r));
  for (const r of reports)
    if (r.failure !== undefined)
      console.log(`  ${r.engine}: stopped at ${r.opened} stores: ${r.failure}`);
  console.log(
    '  rss@open: after the open phase (ours: once idle jobs released their connections), after gc; per store: (rss@open - baseline) / stores opened.',
  );
  console.log(
    `  p50/p99: open to first durable write; 1 job: durable rows/s of one store driven by all ${TASKS} tasks; active: the same tasks over the active stores; ratio: active / 1 job; 1 task: one store driven by one task (the load each active store sees); close: seconds to close every store; rows: rows counted after reopening every store.`,
  );
  const ours = reports.find((r) => r.engine === 'persistency');
  if (ours !== undefined) {
    console.log(
      JOBS === undefined
        ? '\ntargets (ours):'
        : `\ntargets (ours; set for 10,000 stores with idle ones released, shown for reference at ${jobs}):`,
    );
    for (const line of targets(ours)) console.log(line);
    for (const peer of reports.filter((r) => r !== ours && r.opened > 0)) {
      console.log(
        `  vs ${peer.engine}: rss@open ${fixed(ours.atOpen.rss / peer.atOpen.rss, 2)}x, fds ${fixed(ours.atOpen.fds / peer.atOpen.fds, 2)}x, open p50 ${fixed(ours.openP50Ms / peer.openP50Ms, 2)}x, active rows/s ${fixed(ours.activeRowsPerSec / peer.activeRowsPerSec, 2)}x (ours/peer; lower is better but for rows/s)`,
      );
    }
  }
}
