/*
 * `persistency litestream-config`: a Litestream 0.3 configuration listing every job file of
 * a root, each with its own replica under one base. Litestream 0.3 replicates only the
 * databases its configuration names, one by one; a root of thousands of jobs needs this
 * list made for it, and made again (and Litestream restarted) when jobs are added.
 */
import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { DB_SUFFIX, jobFilesIn, jobStemIn } from '../paths.js';
import { requireRoot } from './commands.js';
import { usage } from './help.js';
import { out, warn } from './output.js';
import type { Values } from './prefix-syntax.js';

/** Litestream's duration syntax (Go's): e.g. 1s, 500ms, 1m30s. */
const DURATION = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;

export function litestreamConfig(root: string, replica: string, values: Values): number {
  const dir = requireRoot(root);
  const interval = values['sync-interval'];
  if (typeof interval === 'string' && !DURATION.test(interval))
    throw usage(
      `--sync-interval must be a duration such as 1s or 500ms, got ${JSON.stringify(interval)}`,
    );
  if (replica.length === 0) throw usage('the replica base must not be empty');
  const jobs = jobFilesIn(readdirSync(dir, { withFileTypes: true }));
  const url = replica.includes('://');
  out.line(`# Litestream 0.3 configuration for the ${jobs.length} job files of ${dir}`);
  out.line('# made by `persistency litestream-config`; make it again when jobs are added.');
  out.line('dbs:');
  for (const { id, name } of jobs) {
    const now = jobStemIn(dir, id);
    if (now.ok && now.stem + DB_SUFFIX !== name) {
      warn(
        `job ${JSON.stringify(id)} still has its 0.1 name (${name}); its next open renames it to ${now.stem}${DB_SUFFIX}, which this configuration does not name: open the job once, then make the configuration again`,
      );
    }
    out.line(`  - path: ${yamlString(resolve(dir, name))}`);
    out.line('    replicas:');
    const target = url
      ? `url: ${yamlString(`${replica.replace(/\/+$/, '')}/${name}`)}`
      : `path: ${yamlString(resolve(replica, name))}`;
    out.line(`      - ${target}`);
    if (typeof interval === 'string') out.line(`        sync-interval: ${interval}`);
  }
  return 0;
}

/** A YAML double-quoted scalar (JSON's string syntax is valid YAML). */
function yamlString(s: string): string {
  return JSON.stringify(s);
}
