// The package as a user gets it: `npm pack`, the tarball installed by npm into a fresh
// project, and a program run there in plain Node. better-sqlite3 is the one dependency not
// fetched: the project takes it as a `file:` link to this repo's already-built copy, which
// satisfies the package's own dependency on it (installing it from the registry would
// compile it from source, about a minute). npm test builds dist/ first.
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'persistency-pack-'));
const app = join(work, 'app');
const installed = join(app, 'node_modules', 'persistency');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * Run npm without the variables an enclosing `npm test` exports: `npm_config_local_prefix`
 * alone would point the nested install at this repository.
 */
function npm(args: readonly string[], cwd: string): string {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')),
  );
  return execFileSync('npm', args, {
    cwd,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 120_000,
  });
}

interface Packed {
  readonly filename: string;
  readonly files: readonly { readonly path: string }[];
}

let packed: Packed;

beforeAll(() => {
  expect(
    existsSync(join(repo, 'dist', 'index.js')),
    'run `npm run build` first (npm test does)',
  ).toBe(true);
  const out = JSON.parse(
    npm(['pack', '--json', '--ignore-scripts', '--pack-destination', work], repo),
  ) as Packed[];
  expect(out).toHaveLength(1);
  packed = out[0] as Packed;

  mkdirSync(app);
  writeFileSync(
    join(app, 'package.json'),
    `${JSON.stringify(
      {
        name: 'persistency-consumer',
        private: true,
        type: 'module',
        dependencies: {
          persistency: `file:${join(work, packed.filename)}`,
          'better-sqlite3': `file:${join(repo, 'node_modules', 'better-sqlite3')}`,
        },
      },
      null,
      2,
    )}\n`,
  );
  // No install script needs to run: better-sqlite3 is already built where the link points.
  npm(
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      '--ignore-scripts',
      '--install-links=false',
    ],
    app,
  );
  copyFileSync(
    fileURLToPath(new URL('./fixtures/pack-consumer.mjs', import.meta.url)),
    join(app, 'main.mjs'),
  );
}, 180_000);

describe('npm pack', () => {
  it('ships dist/ (the worker included), README.md, LICENSE and package.json, and no sources, tests or source maps', () => {
    const paths = packed.files.map((f) => f.path).sort();
    expect(paths.filter((p) => !/^(README\.md|LICENSE|package\.json|dist\/.+)$/.test(p))).toEqual(
      [],
    );
    expect(paths.filter((p) => p.endsWith('.map'))).toEqual([]);
    for (const needed of [
      'dist/index.js',
      'dist/index.d.ts',
      'dist/worker/main.js',
      'dist/sds/index.js',
      'dist/sds/index.d.ts',
      'LICENSE',
    ]) {
      expect(paths).toContain(needed);
    }
  });

  it('installs from the tarball with npm and runs in plain node, its worker found in dist/', () => {
    // npm unpacked the tarball (a real directory, not a link to this repo) …
    expect(lstatSync(installed).isDirectory()).toBe(true);
    expect(JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'))).toMatchObject({
      name: 'persistency',
      version: JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).version,
    });
    expect(existsSync(join(installed, 'src'))).toBe(false);
    // … beside no TypeScript loader and no esbuild, so only dist/worker/main.js can run …
    for (const absent of ['tsx', 'esbuild', 'typescript']) {
      expect(existsSync(join(app, 'node_modules', absent))).toBe(false);
    }
    // … with the linked, already-built better-sqlite3, not a second copy.
    expect(realpathSync(join(app, 'node_modules', 'better-sqlite3'))).toBe(
      realpathSync(join(repo, 'node_modules', 'better-sqlite3')),
    );
    expect(existsSync(join(installed, 'node_modules', 'better-sqlite3'))).toBe(false);

    const root = join(work, 'data');
    const out = execFileSync(process.execPath, ['main.mjs', root], {
      cwd: app,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(JSON.parse(out.trim())).toEqual({
      entry: pathToFileURL(join(installed, 'dist', 'index.js')).href,
      flushed: true,
      got: ['ada', 'hello 2'],
      count: 3,
      closed: true,
      afterReopen: ['hello 0', 'hello 1', 'hello 2'],
      files: [join(root, 'packed-job.db')],
    });
    expect(readdirSync(root)).toContain('packed-job.db');
  });

  it('installs the persistency bin, which runs as a command and reads what the program wrote', () => {
    const root = join(work, 'data-bin');
    execFileSync(process.execPath, ['main.mjs', root], { cwd: app, timeout: 30_000 });
    // Run through npm's link, as a user's shell would: it must be executable, shebang and all.
    const bin = join(app, 'node_modules', '.bin', 'persistency');
    const out = execFileSync(bin, ['ls', root], { encoding: 'utf8', timeout: 30_000 });
    expect(out.trim()).toMatch(/^packed-job\t\d+\t3$/);
    expect(
      execFileSync(bin, ['count', root, 'packed-job', 'msg'], { encoding: 'utf8' }).trim(),
    ).toBe('3');
  });
});

describe('the published types', () => {
  const declarations = (): string[] =>
    (readdirSync(join(installed, 'dist'), { recursive: true }) as string[])
      .filter((f) => f.endsWith('.d.ts'))
      .map((f) => join(installed, 'dist', f));

  it('have no `any` written in any .d.ts of the tarball', () => {
    const files = declarations();
    expect(files.length).toBeGreaterThan(5);
    const found: string[] = [];
    for (const file of files) {
      const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
      const visit = (node: ts.Node): void => {
        if (node.kind === ts.SyntaxKind.AnyKeyword) found.push(where(node));
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
    expect(found).toEqual([]);
  });

  it('give a strict TypeScript consumer a public surface with no `any` (nothing unresolved either)', () => {
    const consumer = join(app, 'consumer.ts');
    writeFileSync(
      consumer,
      [
        "import { type Job, type KvRow, key, Persistency, payload } from 'persistency';",
        "const p: Persistency = Persistency.instance('./data')._unsafeUnwrap();",
        'export async function demo(): Promise<KvRow[]> {',
        "  const job: Job = (await p.openJob('t'))._unsafeUnwrap();",
        "  job.persistPut('c', key('a', 1), payload('x'));",
        "  const rows = await job.scanPrefix('c', key('a'), { limit: 10 });",
        '  return rows.isOk() ? rows.value : [];',
        '}',
        '',
      ].join('\n'),
    );
    // No @types/node: a consumer of the declarations must not need Node's types.
    const { program, checked, diagnostics } = compileConsumer(consumer, ['lib.es2022.d.ts']);
    expect(checked.length).toBeGreaterThan(5);
    expect(diagnostics).toEqual([]);

    const entry = program.getSourceFile(join(installed, 'dist', 'index.d.ts'));
    expect(entry, 'the types of the installed package were resolved').toBeDefined();
    const { found, visited } = anyInPublicSurface(program, entry as ts.SourceFile, installed);
    expect(visited).toBeGreaterThan(200);
    expect(found).toEqual([]);
  });

  it('the surface check finds a written `any` and an unresolved type (it is not vacuous)', () => {
    const dir = join(work, 'probe');
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'index.d.ts'),
      [
        "import type { Missing } from './nowhere.js';",
        'interface Hidden { readonly value: any }',
        'export declare function f(x: number): Hidden;',
        'export declare const g: Missing;',
        'export type Fine = { readonly n: number };',
        '',
      ].join('\n'),
    );
    const program = ts.createProgram([join(dir, 'index.d.ts')], {
      strict: true,
      noEmit: true,
      lib: ['lib.es2022.d.ts'],
    });
    const entry = program.getSourceFile(join(dir, 'index.d.ts')) as ts.SourceFile;
    const { found } = anyInPublicSurface(program, entry, dir);
    expect(found.map((f) => f.replace(/^.*probe\//, ''))).toEqual([
      'index.d.ts:2 any',
      'index.d.ts:4 Missing',
    ]);
  });
});

describe('persistency/sds, the optional subpath', () => {
  const sdsLink = join(app, 'node_modules', '@waku', 'sds');

  it('is not needed by the main entry: without @waku/sds installed, importing persistency/sds names it', () => {
    // The install above did not fetch the optional peer, and the main entry ran without it.
    expect(existsSync(sdsLink)).toBe(false);
    const out = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "import('persistency/sds').then(() => console.log('loaded'), (e) => console.log(e.code, e.message))",
      ],
      { cwd: app, encoding: 'utf8', timeout: 30_000 },
    );
    expect(out).toMatch(/^ERR_MODULE_NOT_FOUND .*'@waku\/sds'/);
  });

  it('with @waku/sds installed, keeps a MessageChannel’s history in plain node and reloads it', () => {
    mkdirSync(join(app, 'node_modules', '@waku'), { recursive: true });
    symlinkSync(join(repo, 'node_modules', '@waku', 'sds'), sdsLink);
    copyFileSync(
      fileURLToPath(new URL('./fixtures/pack-sds-consumer.mjs', import.meta.url)),
      join(app, 'sds.mjs'),
    );
    const out = execFileSync(process.execPath, ['sds.mjs', join(work, 'data-sds')], {
      cwd: app,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(JSON.parse(out.trim())).toEqual({
      entry: pathToFileURL(join(installed, 'dist', 'sds', 'index.js')).href,
      flushed: true,
      bodies: ['one', 'two', 'three'],
      hints: ['hint one', 'hint two', 'hint three'],
    });
  });

  it('gives a strict TypeScript consumer types with no `any` of its own', () => {
    const consumer = join(app, 'sds-consumer.ts');
    writeFileSync(
      consumer,
      [
        "import { MessageChannel } from '@waku/sds';",
        "import type { Job } from 'persistency';",
        "import { openSdsHistory, type SdsLocalHistory } from 'persistency/sds';",
        'export async function start(job: Job): Promise<MessageChannel | undefined> {',
        "  const history = await openSdsHistory(job, 'room');",
        '  if (history.isErr()) return undefined;',
        '  const kept: SdsLocalHistory = history.value;',
        "  return new MessageChannel('room', 'ada', {}, kept);",
        '}',
        '',
      ].join('\n'),
    );
    // @waku/sds's own declarations name CustomEvent: DOM's, or Node's.
    const { program, diagnostics } = compileConsumer(consumer, ['lib.es2022.d.ts', 'lib.dom.d.ts']);
    expect(diagnostics).toEqual([]);
    const entry = program.getSourceFile(join(installed, 'dist', 'sds', 'index.d.ts'));
    expect(entry, 'persistency/sds resolved to the installed declarations').toBeDefined();
    const { found, visited } = anyInPublicSurface(program, entry as ts.SourceFile, installed);
    expect(visited).toBeGreaterThan(50);
    expect(found).toEqual([]);
  });
});

/**
 * Type-check `consumer` strictly, as a user's compiler would, against the installed package
 * (no @types/node), and the diagnostics of the consumer and the package's own declarations
 * (not of every library they reach: slow, and not ours).
 */
function compileConsumer(
  consumer: string,
  lib: string[],
): { program: ts.Program; checked: ts.SourceFile[]; diagnostics: string[] } {
  const program = ts.createProgram([consumer], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib,
    types: [],
    // Type-check the installed declarations as a consumer's compiler sees them.
    skipLibCheck: false,
  });
  const checked = program
    .getSourceFiles()
    .filter((f) => f.fileName === consumer || !relative(installed, f.fileName).startsWith('..'));
  const diagnostics = [
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
    ...checked.flatMap((f) => [
      ...program.getSyntacticDiagnostics(f),
      ...program.getSemanticDiagnostics(f),
    ]),
  ].map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  return { program, checked, diagnostics };
}

function where(node: ts.Node): string {
  const file = node.getSourceFile();
  const { line } = file.getLineAndCharacterOfPosition(node.getStart(file));
  return `${relative(work, file.fileName)}:${line + 1} ${node.getText(file)}`;
}

/**
 * Every type written in a declaration that `entry` exports, and in the declarations of the
 * package's own types those refer to (however deep), whose type is `any`: written so, or
 * an import that does not resolve. Types of other packages are not entered.
 */
function anyInPublicSurface(
  program: ts.Program,
  entry: ts.SourceFile,
  packageDir: string,
): { found: string[]; visited: number } {
  const checker = program.getTypeChecker();
  const inPackage = (d: ts.Node): boolean =>
    !relative(packageDir, d.getSourceFile().fileName).startsWith('..');
  const queue: ts.Node[] = [];
  const enqueue = (symbol: ts.Symbol | undefined): void => {
    if (symbol === undefined) return;
    const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
    for (const d of target.declarations ?? []) if (inPackage(d)) queue.push(d);
  };
  const moduleSymbol = checker.getSymbolAtLocation(entry);
  for (const exported of moduleSymbol ? checker.getExportsOfModule(moduleSymbol) : []) {
    enqueue(exported);
  }
  const seen = new Set<ts.Node>();
  const found: string[] = [];
  let visited = 0;
  const visit = (node: ts.Node): void => {
    visited++;
    if (ts.isTypeNode(node)) {
      if (checker.getTypeFromTypeNode(node).flags & ts.TypeFlags.Any) found.push(where(node));
      if (ts.isTypeReferenceNode(node)) enqueue(checker.getSymbolAtLocation(node.typeName));
      if (ts.isTypeQueryNode(node)) enqueue(checker.getSymbolAtLocation(node.exprName));
      if (ts.isExpressionWithTypeArguments(node))
        enqueue(checker.getSymbolAtLocation(node.expression));
    }
    ts.forEachChild(node, visit);
  };
  for (let d = queue.pop(); d !== undefined; d = queue.pop()) {
    if (seen.has(d)) continue;
    seen.add(d);
    visit(d);
  }
  return { found: [...new Set(found)].sort(), visited };
}
