// The documentation is part of the API: every exported name (and every public member of an
// exported class) carries a JSDoc comment with an `@example`, and the README's API section
// has a heading for each of them. Names come from the TypeScript compiler reading the
// package's entries (src/index.ts, and src/sds/index.ts for `persistency/sds`), so a new
// export without docs fails here, naming what is missing.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('..', import.meta.url));
const entries = [`${repo}src/index.ts`, `${repo}src/sds/index.ts`];

/** The README's top-level sections, in the order the issue asks for. */
const SECTIONS = [
  'Quick start',
  'Usage',
  'Design',
  'API',
  'Errors',
  'Scaling out',
  'Reliability',
  'Performance',
  'CLI',
  'Examples',
  'Development',
];

interface Member {
  /** `Class.member` for a static member, `Class#member` otherwise. */
  readonly label: string;
  /** The member's name, or undefined for a computed one (`[inspectCustom]`). */
  readonly name: string | undefined;
  readonly isConstructor: boolean;
  readonly declarations: readonly ts.Node[];
}

interface Exported {
  readonly name: string;
  /** A value at runtime (class, function, const), not only a type. */
  readonly runtime: boolean;
  readonly declarations: readonly ts.Node[];
  readonly members: readonly Member[];
}

function hasTag(node: ts.Node, tag: string): boolean {
  return ts.getJSDocTags(node).some((t) => t.tagName.text === tag);
}

function isPublicMember(m: ts.ClassElement): boolean {
  if (ts.isClassStaticBlockDeclaration(m) || ts.isSemicolonClassElement(m)) return false;
  if (m.name !== undefined && ts.isPrivateIdentifier(m.name)) return false;
  const flags = ts.getCombinedModifierFlags(m as ts.Declaration);
  if (flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) return false;
  return !hasTag(m, 'internal');
}

/**
 * The declarations a reader sees docs for: each overload signature of an overloaded
 * function or method (not its implementation), otherwise every declaration.
 */
function documented(decls: readonly ts.Node[]): readonly ts.Node[] {
  const overloads = decls.filter(
    (d) => (ts.isFunctionDeclaration(d) || ts.isMethodDeclaration(d)) && d.body === undefined,
  );
  return overloads.length > 0 ? overloads : decls;
}

/** Every name the entries export (following re-exports), with its public class members. */
function collectExports(): { exports: Exported[]; checker: ts.TypeChecker } {
  const config = ts.getParsedCommandLineOfConfigFile(`${repo}tsconfig.json`, undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  });
  if (config === undefined) throw new Error('cannot read tsconfig.json');
  const program = ts.createProgram(entries, config.options);
  const checker = program.getTypeChecker();
  const modules = entries.map((entry) => {
    const source = program.getSourceFile(entry);
    const module = source === undefined ? undefined : checker.getSymbolAtLocation(source);
    if (module === undefined) throw new Error(`cannot read ${entry}`);
    return module;
  });
  const exports: Exported[] = [];
  for (const exported of modules.flatMap((m) => checker.getExportsOfModule(m))) {
    const symbol =
      exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const declarations = symbol.declarations ?? [];
    const members: Member[] = [];
    for (const decl of declarations) {
      if (!ts.isClassDeclaration(decl)) continue;
      const byName = new Map<string, Member & { declarations: ts.Node[] }>();
      for (const m of decl.members) {
        if (!isPublicMember(m)) continue;
        const isConstructor = ts.isConstructorDeclaration(m);
        const isStatic =
          (ts.getCombinedModifierFlags(m as ts.Declaration) & ts.ModifierFlags.Static) !== 0;
        const name = isConstructor
          ? 'constructor'
          : m.name !== undefined && (ts.isIdentifier(m.name) || ts.isStringLiteral(m.name))
            ? m.name.text
            : undefined;
        const label = `${exported.name}${isStatic ? '.' : '#'}${name ?? m.name?.getText() ?? '?'}`;
        const seen = byName.get(label);
        if (seen !== undefined) seen.declarations.push(m);
        else byName.set(label, { label, name, isConstructor, declarations: [m] });
      }
      members.push(...byName.values());
    }
    exports.push({
      name: exported.name,
      runtime: (symbol.flags & ts.SymbolFlags.Value) !== 0,
      declarations,
      members,
    });
  }
  return { exports, checker };
}

const { exports, checker } = collectExports();

/** The README without fenced code blocks, whose lines are not headings. */
const readme = readFileSync(`${repo}README.md`, 'utf8');
const readmeText = readme.replace(/^ *(```|~~~)[^\n]*\n[\s\S]*?^ *\1[^\n]*$/gm, '');

interface Heading {
  readonly level: number;
  /** The heading's text with backticks removed. */
  readonly text: string;
}

function headings(text: string): Heading[] {
  return [...text.matchAll(/^(#{1,6})\s+(.*?)\s*#*\s*$/gm)].map((m) => ({
    level: (m[1] as string).length,
    text: (m[2] as string).replaceAll('`', ''),
  }));
}

/** The body of one `## name` section (up to the next `## `). */
function section(name: string): string {
  const start = readmeText.search(new RegExp(`^## ${name}\\s*$`, 'm'));
  if (start < 0) return '';
  const rest = readmeText.slice(start + 1);
  const end = rest.search(/^## /m);
  return end < 0 ? rest : rest.slice(0, end);
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Whether a heading is about `name`: it starts with it (after `new`, `class` or `type`). */
function isSubject(h: Heading, name: string): boolean {
  return new RegExp(`^(?:new |class |type |interface )?${escapeRegExp(name)}(?![\\w$])`).test(
    h.text,
  );
}

/** Whether a heading documents member `name` (`job.get(…)`, `p.rootDir`, `new X(…)`). */
function isMemberSubject(h: Heading, className: string, m: Member): boolean {
  if (m.isConstructor) return new RegExp(`^new ${escapeRegExp(className)}\\(`).test(h.text);
  return new RegExp(`^[A-Za-z_$][\\w$]*\\.${escapeRegExp(m.name ?? '')}(?![\\w$])`).test(h.text);
}

describe('JSDoc', () => {
  it('finds the public surface', () => {
    const names = exports.map((e) => e.name);
    for (const name of [
      'Persistency',
      'Job',
      'key',
      'PersistencyError',
      'KvRow',
      'TxOp',
      'openSdsHistory',
    ]) {
      expect(names).toContain(name);
    }
    const job = exports.find((e) => e.name === 'Job');
    expect(job?.members.map((m) => m.label)).toContain('Job#get');
  });

  it('every exported name has a JSDoc comment with an @example', () => {
    const missing = exports
      .filter((e) => !documented(e.declarations).every((d) => hasTag(d, 'example')))
      .map((e) => e.name);
    expect(missing, `exported without an @example: ${missing.join(', ')}`).toEqual([]);
  });

  it('every public member of an exported class has a JSDoc comment with an @example', () => {
    const missing = exports.flatMap((e) =>
      e.members
        .filter((m) => !documented(m.declarations).every((d) => hasTag(d, 'example')))
        .map((m) => m.label),
    );
    expect(missing, `public members without an @example: ${missing.join(', ')}`).toEqual([]);
  });
});

describe('README', () => {
  it('opens with the title and one line, then has the sections in order', () => {
    expect(readme).toMatch(/^# persistency\n\n[^\n#]+\n\n## /);
    const top = headings(readmeText)
      .filter((h) => h.level === 2)
      .map((h) => h.text);
    expect(top, `README's ## sections are: ${top.join(' | ')}`).toEqual(SECTIONS);
  });

  const api = section('API');
  const apiHeadings = headings(api).filter((h) => h.level === 3 || h.level === 4);

  it('the API section has a heading for every exported name', () => {
    expect(apiHeadings.length).toBeGreaterThan(0);
    const missing = exports
      .filter((e) => !apiHeadings.some((h) => isSubject(h, e.name)))
      .map((e) => `${e.name}${e.runtime ? '' : ' (type)'}`);
    expect(missing, `no API heading for: ${missing.join(', ')}`).toEqual([]);
  });

  it("the API section has a heading for every public member, in its class's subsection", () => {
    // A class's subsections: every `###` about it, up to the next `###`.
    const missing: string[] = [];
    for (const e of exports) {
      if (e.members.length === 0) continue;
      const own: Heading[] = [];
      let inside = false;
      for (const h of headings(api)) {
        if (h.level === 3) inside = isSubject(h, e.name);
        if (inside) own.push(h);
      }
      for (const m of e.members) {
        if (m.name === undefined) continue; // a computed name (a symbol) has no heading form
        if (!own.some((h) => isMemberSubject(h, e.name, m))) missing.push(m.label);
      }
    }
    expect(missing, `no API heading for: ${missing.join(', ')}`).toEqual([]);
  });

  it('the API section gives every option with its default and every event', () => {
    const propertiesOf = (name: string): string[] => {
      const e = exports.find((x) => x.name === name);
      const decl = e?.declarations[0];
      if (decl === undefined) return [];
      return checker
        .getTypeAtLocation(decl)
        .getProperties()
        .map((p) => p.name);
    };
    const options = propertiesOf('PersistencyOptions');
    expect(options).toContain('maxPayloadBytes');
    const optionLines = api.split('\n');
    const undocumentedOptions = options.filter(
      (o) => !optionLines.some((l) => l.includes(`\`${o}\``) && l.includes('(default: ')),
    );
    expect(undocumentedOptions, 'options without a "(default: …)" line').toEqual([]);
    const events = propertiesOf('PersistencyEvents');
    expect(events).toContain('writeFailed');
    expect(events.filter((ev) => !api.includes(`\`${ev}\``))).toEqual([]);
  });

  it('every link to a heading of the README (#anchor) finds it, as GitHub makes anchors', () => {
    const seen = new Map<string, number>();
    const anchors = new Set<string>();
    for (const h of headings(readmeText)) {
      const slug = h.text
        .toLowerCase()
        .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
        .replaceAll(' ', '-');
      const n = seen.get(slug) ?? 0;
      seen.set(slug, n + 1);
      anchors.add(n === 0 ? slug : `${slug}-${n}`);
    }
    const links = [...readmeText.matchAll(/\]\(#([^)\s]+)\)/g)].map((m) => m[1] as string);
    expect(links.length).toBeGreaterThan(0);
    expect(links.filter((l) => !anchors.has(l))).toEqual([]);
  });

  it('the Errors section names every error kind', () => {
    const e = exports.find((x) => x.name === 'PersistencyErrorKind');
    const decl = e?.declarations[0];
    expect(decl).toBeDefined();
    const type = checker.getTypeAtLocation(decl as ts.Node);
    const kinds = (type.isUnion() ? type.types : [type])
      .filter((t) => t.isStringLiteral())
      .map((t) => (t as ts.StringLiteralType).value);
    expect(kinds).toContain('InvalidArgument');
    const errors = section('Errors');
    expect(kinds.filter((k) => !errors.includes(`\`${k}\``))).toEqual([]);
  });
});
