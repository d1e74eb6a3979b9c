/*
 * Benchmark of the order-preserving key codec (src/keys.ts) and payload().
 *
 *   npx tsx bench/codec.ts            full run (~1M ops per repetition)
 *   npx tsx bench/codec.ts --quick    smaller run, for CI smoke checks
 *   npm run bench -- codec [--quick]  through the dispatcher (bench/index.ts)
 *
 * Every case runs a warm-up, then 5 timed repetitions; the median is reported. Each loop
 * folds one byte of every result into a checksum that is printed, so V8 cannot drop the
 * work as dead code. A JSON peer baseline (Buffer.from(JSON.stringify([...]))) for the
 * same 2-part tuple runs in the same process, so the ratio stays meaningful on a noisy
 * shared machine even when the absolute figures move.
 */
import { pathToFileURL } from 'node:url';
import { decodeKey, type Key, key, payload, toKey, u8 } from '../src/index.js';
import { keyBytes } from '../src/keys.js';

export interface CodecBenchOptions {
  /** Fewer operations per repetition: a smoke run, not a measurement to quote. */
  quick: boolean;
}

/** The 2-part key rate the codec is expected to reach on a 2-core machine. */
export const TARGET_2PART_KEYS_PER_SEC = 2_000_000;

const REPETITIONS = 5;

/** One benchmark case: runs `n` operations and returns a checksum of their results. */
interface Case {
  readonly name: string;
  readonly unit: string;
  readonly run: (n: number) => number;
}

interface Result {
  readonly name: string;
  readonly unit: string;
  readonly opsPerSec: number;
  readonly nsPerOp: number;
  /** (slowest - fastest) / median over the timed repetitions: the `range` column. */
  readonly spread: number;
  readonly checksum: number;
}

/** The byte `back` places from the end of a key, read without the copy `Key#bytes` makes. */
function byteFromEnd(k: Key, back = 1): number {
  const b = keyBytes(k);
  return b[b.length - back] as number;
}

// A 100-byte-ish payload: 2 + 9 (string) + 8 (number) + 1 (bool) + 2 + 78 (string) = 100.
const PAYLOAD_TEXT =
  'hello from the persistency benchmark; this sentence pads the payload to 100 B.';

function cases(): Case[] {
  const channel = 'channel-42';
  const twoPartKeys: Key[] = [];
  for (let i = 0; i < 1024; i++) twoPartKeys.push(key(channel, i * 7919));
  const byte3 = u8(3);
  return [
    {
      name: "key('channel-42', i)",
      unit: 'keys/s',
      run(n) {
        let sum = 0;
        for (let i = 0; i < n; i++) sum += byteFromEnd(key(channel, i));
        return sum;
      },
    },
    {
      name: "JSON peer: Buffer.from(JSON.stringify(['channel-42', i]))",
      unit: 'bufs/s',
      run(n) {
        let sum = 0;
        for (let i = 0; i < n; i++) {
          const b = Buffer.from(JSON.stringify([channel, i]));
          sum += b[b.length - 2] as number;
        }
        return sum;
      },
    },
    {
      name: "key('tenant-7', 'channel-42', i, u8(3))",
      unit: 'keys/s',
      run(n) {
        let sum = 0;
        for (let i = 0; i < n; i++) sum += byteFromEnd(key('tenant-7', channel, i, byte3), 2);
        return sum;
      },
    },
    {
      name: 'toKey({ channel, seq: i })',
      unit: 'keys/s',
      run(n) {
        let sum = 0;
        for (let i = 0; i < n; i++) sum += byteFromEnd(toKey({ channel, seq: i }));
        return sum;
      },
    },
    {
      name: "decodeKey(k, ['string', 'i64']) (2-part)",
      unit: 'keys/s',
      run(n) {
        let sum = 0;
        for (let i = 0; i < n; i++) {
          const [s, seq] = decodeKey(twoPartKeys[i & 1023] as Key, ['string', 'i64']);
          sum += s.length + Number(seq & 0xffn);
        }
        return sum;
      },
    },
    {
      name: "payload('general', i, true, <78-char string>) (100 B)",
      unit: 'payloads/s',
      run(n) {
        let sum = 0;
        for (let i = 0; i < n; i++) {
          const p = payload('general', i, true, PAYLOAD_TEXT);
          sum += (p[18] as number) + p.length;
        }
        return sum;
      },
    },
  ];
}

function median(sorted: readonly number[]): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function measure(c: Case, n: number, warmups: number): Result {
  let checksum = 0;
  for (let w = 0; w < warmups; w++) checksum += c.run(n);
  const times: number[] = [];
  for (let r = 0; r < REPETITIONS; r++) {
    const t0 = process.hrtime.bigint();
    checksum += c.run(n);
    // A duration in ns is far below 2^53, so the Number conversion is exact.
    times.push(Number(process.hrtime.bigint() - t0));
  }
  times.sort((a, b) => a - b);
  const med = median(times);
  const min = times[0] as number;
  const max = times[times.length - 1] as number;
  return {
    name: c.name,
    unit: c.unit,
    opsPerSec: (n * 1e9) / med,
    nsPerOp: med / n,
    spread: (max - min) / med,
    checksum,
  };
}

function fmtRate(x: number): string {
  return x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : `${(x / 1e3).toFixed(1)} k`;
}

function printTable(results: readonly Result[], n: number, quick: boolean): void {
  const header = ['case', 'rate', 'unit', 'ns/op', 'range', 'note'];
  const twoPart = results[0] as Result;
  const json = results[1] as Result;
  const rows = results.map((r, i) => {
    let note = '';
    if (i === 0) {
      const target = `target ${fmtRate(TARGET_2PART_KEYS_PER_SEC)}/s`;
      note = `${r.opsPerSec >= TARGET_2PART_KEYS_PER_SEC ? 'PASS' : 'BELOW'} (${target})`;
    } else if (i === 1) {
      note = 'peer baseline';
    }
    return [
      r.name,
      fmtRate(r.opsPerSec),
      r.unit,
      r.nsPerOp.toFixed(1),
      `${(r.spread * 100).toFixed(1)}%`,
      note,
    ];
  });
  const widths = header.map((h, c) =>
    Math.max(h.length, ...rows.map((row) => row[c]?.length ?? 0)),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, c) =>
        c === 0 || c === 2 || c === 5 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0),
      )
      .join('  ')
      .trimEnd();
  console.log(
    `\ncodec benchmark${quick ? ' (--quick)' : ''}: ${n.toLocaleString('en-US')} ops x ${REPETITIONS} reps, median; node ${process.version}`,
  );
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
  const ratio = twoPart.opsPerSec / json.opsPerSec;
  console.log(
    `\n2-part key() vs JSON peer (same run): ${ratio.toFixed(2)}x ` +
      `(${fmtRate(twoPart.opsPerSec)}/s vs ${fmtRate(json.opsPerSec)}/s)`,
  );
  const checksum = results.reduce((a, r) => (a + r.checksum) % 0x7fffffff, 0);
  console.log(`checksum ${checksum} (printed so the work cannot be elided)\n`);
}

/** Run every codec case and print the table. */
export async function runCodecBench(options: CodecBenchOptions): Promise<void> {
  const { quick } = options;
  const n = quick ? 100_000 : 1_000_000;
  const warmups = quick ? 1 : 2;
  const results: Result[] = [];
  for (const c of cases()) {
    results.push(measure(c, n, warmups));
    // Let pending I/O and GC finalisers run between cases.
    await new Promise((resolve) => setImmediate(resolve));
  }
  printTable(results, n, quick);
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) {
  await runCodecBench({ quick: process.argv.includes('--quick') });
}
