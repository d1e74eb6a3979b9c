/*
 * Run the peers benchmark under plain node, as the published package runs, rather than
 * under tsx. Under tsx every worker thread (so every job) also loads tsx's module loader:
 * on this machine that adds 100-200 ms to each worker start and several MiB to each
 * worker, which would be charged to persistency's open latency and per-job memory.
 *
 * So `runPeersBench`, when it finds itself running from TypeScript, bundles bench/peers.ts,
 * bench/rss-child.ts and the job worker (src/worker/main.ts, as `main.js` beside them,
 * which is where the compiled package looks for it) with esbuild into a fresh directory
 * under node_modules/.cache (so package imports resolve), runs the bundle with
 * `node --expose-gc`, and removes the directory. PERSISTENCY_PEERS_UNDER_TSX=1 skips this
 * and measures in the tsx process itself.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT_ENV = 'PERSISTENCY_BENCH_ROOT';
const UNDER_TSX_ENV = 'PERSISTENCY_PEERS_UNDER_TSX';

export type Runtime = 'tsx' | 'node';

/** How this process runs the benchmark code: from TypeScript (tsx) or from the bundle. */
export function runtime(): Runtime {
  return import.meta.url.endsWith('.ts') ? 'tsx' : 'node';
}

/** Whether `runPeersBench` should hand over to a bundled plain-node child. */
export function shouldReexec(): boolean {
  return runtime() === 'tsx' && process.env[UNDER_TSX_ENV] !== '1';
}

/** The repository root (the bundle lives elsewhere, so the parent passes it down). */
export function repoRoot(): string {
  return process.env[ROOT_ENV] ?? fileURLToPath(new URL('..', import.meta.url));
}

/** Command line (after the node binary) that runs the RSS child for `engine`. */
export function rssChildArgs(engine: string, count: number): string[] {
  return runtime() === 'tsx'
    ? ['--expose-gc', '--import', 'tsx', 'bench/rss-child.ts', engine, String(count)]
    : [
        '--expose-gc',
        fileURLToPath(new URL('./rss-child.js', import.meta.url)),
        engine,
        String(count),
      ];
}

/**
 * Bundle `entries` (output name -> source path under the repository) and the job worker
 * (as `main.js` beside them, where the compiled package looks for it) into a fresh
 * directory under node_modules/.cache; returns it. The caller removes it.
 */
export function bundleForNode(root: string, entries: Record<string, string>): string {
  const require = createRequire(import.meta.url);
  const esbuild = require('esbuild') as typeof import('esbuild');
  const cache = join(root, 'node_modules', '.cache');
  mkdirSync(cache, { recursive: true });
  const dir = mkdtempSync(join(cache, 'persistency-bench-'));
  // Node gives a file under node_modules no package scope: say these .js files are ESM.
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  const points: Record<string, string> = { main: join(root, 'src', 'worker', 'main.ts') };
  for (const [name, path] of Object.entries(entries)) points[name] = join(root, path);
  esbuild.buildSync({
    entryPoints: points,
    outdir: dir,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
  });
  return dir;
}

/**
 * Bundle bench/<name>.ts (and the RSS child), run `node --expose-gc <name>.js [--quick]`
 * with the same terminal, clean up.
 */
export async function reexecUnderNode(quick: boolean, name = 'peers'): Promise<void> {
  const root = repoRoot();
  const dir = bundleForNode(root, {
    [name]: join('bench', `${name}.ts`),
    'rss-child': join('bench', 'rss-child.ts'),
  });
  try {
    const args = ['--expose-gc', join(dir, `${name}.js`), ...(quick ? ['--quick'] : [])];
    const code = await new Promise<number | string>((resolve, reject) => {
      const child = spawn(process.execPath, args, {
        cwd: root,
        stdio: 'inherit',
        env: { ...process.env, [ROOT_ENV]: root },
      });
      child.on('error', reject);
      child.on('close', (c, signal) => resolve(c ?? signal ?? 'unknown'));
    });
    if (code !== 0) throw new Error(`${name} benchmark (bundled, plain node) failed: exit ${code}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
