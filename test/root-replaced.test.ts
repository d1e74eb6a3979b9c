/*
 * The root directory replaced by a plain file while the instance lives (found by a review:
 * a dropJob's ResultAsync rejected and left unhandled rejections that ended the process, and
 * closing a released job threw from a callback). Each call resolves Err(Backend) with the
 * operating system's code, as openJob and listJobs already did. Both threading modes.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { key, Persistency, payload } from '../src/index.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-root-replaced-');

function replaceRootByFile(root: string): void {
  rmSync(root, { recursive: true, force: true });
  writeFileSync(root, 'a file where the root was');
}

describe.each(FILE_MODES)('a root replaced by a file (%s)', (_name, _memory, options) => {
  it('dropJob of a job not open resolves Err(Backend, ENOTDIR)', async () => {
    const root = join(tempDir(), 'root');
    const p = unwrap(Persistency.open(root, options));
    unwrap(await p.openJob('other')); // the root exists and is locked
    replaceRootByFile(root);
    const r = await p.dropJob('j');
    expect(r.isErr() && [r.error.kind, r.error.code]).toEqual(['Backend', 'ENOTDIR']);
    expect((await p.listJobs()).isErr()).toBe(true);
    await p.close();
  });

  it('closeJob of a released job resolves Err(Backend, ENOTDIR) naming the file', async () => {
    const root = join(tempDir(), 'root');
    const p = unwrap(Persistency.open(root, { ...options, idleCloseMs: 0 }));
    const job = unwrap(await p.openJob('j'));
    job.persistPut('c', key(1), payload('x'));
    unwrap(await job.flush());
    expect(await releaseIdleJobs(p)).toBe(1);
    replaceRootByFile(root);
    const r = await p.closeJob('j');
    expect(r.isErr() && [r.error.kind, r.error.code]).toEqual(['Backend', 'ENOTDIR']);
    expect(r.isErr() && r.error.message).toContain(join(root, 'j.db'));
    expect(p.hasJob('j')).toBe(false);
    await p.close();
  });
});
