// The built package: its worker must load from dist/ in plain Node (npm test builds first).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'persistency-dist-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

it('runs from the built package with the worker found in dist/', () => {
  expect(existsSync(join(dist, 'index.js')), 'run `npm run build` first (npm test does)').toBe(
    true,
  );
  expect(existsSync(join(dist, 'worker', 'main.js'))).toBe(true);
  const script = fileURLToPath(new URL('./fixtures/dist-smoke.mjs', import.meta.url));
  const out = execFileSync(process.execPath, [script, root], { encoding: 'utf8', timeout: 30_000 });
  expect(JSON.parse(out.trim())).toEqual({
    flushed: true,
    got: 'from dist',
    closed: true,
    dropped: true,
  });
  expect(readdirSync(root)).toContain('dist-job.db');
});
