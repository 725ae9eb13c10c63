// Doc-tests: every code block of README.md and docs/*.md runs as written, and so does every
// JavaScript example the package ships (examples/js), so the examples cannot rot. Each block runs in a fresh `node` process, from a temporary project whose node_modules holds
// `covpool` (a link to this repository's built package: run `npm run build` first) and the
// repository's @tensorflow packages, as a user's project would.
//
// Conventions, written as HTML comments (invisible on GitHub and npm) on the line(s) right before
// a block:
//   <!-- doctest: skip (reason) -->   the block is not run; the reason is required
//   <!-- doctest: run -->             a sh/bash block is run (bash -e, in the repository root);
//                                     sh blocks are otherwise skipped, so each needs one marker
//   <!-- doctest: setup               code run before the block, for names a fragment uses
//   const model = ...;                (a `model` to add layers to, say); kept short and honest
//   -->
// js blocks run as CommonJS, or as an ES module when they use `import`; ts blocks are transpiled
// (no type check) and run as CommonJS. Fences without a language (file trees) are not code.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';

const ROOT = path.resolve(__dirname, '..');
const FILES = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join('docs', f))];

interface Block {
  file: string;
  line: number;
  lang: string;
  code: string;
  setup: string;
  run: boolean;
  skip?: string;
}

/** The fenced blocks of a Markdown file with the doctest markers before them. */
export function extractBlocks(file: string, text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]);
    if (!open) continue;
    let end = i + 1;
    while (end < lines.length && !/^```\s*$/.test(lines[end])) end++;
    const lang = open[1].toLowerCase();
    const code = lines.slice(i + 1, end).join('\n');
    // Markers: the HTML comments directly above the fence (blank lines between are not allowed).
    let setup = '';
    let skip: string | undefined;
    let run = false;
    let j = i - 1;
    while (j >= 0 && lines[j].trim().endsWith('-->')) {
      let k = j;
      while (k >= 0 && !lines[k].includes('<!--')) k--;
      if (k < 0) break;
      const comment = lines.slice(k, j + 1).join('\n');
      const m = /^\s*<!--\s*doctest:\s*(skip|run|setup)\b([\s\S]*?)-->\s*$/.exec(comment);
      if (!m) break;
      if (m[1] === 'skip') skip = m[2].trim().replace(/^\(|\)$/g, '');
      else if (m[1] === 'run') run = true;
      else setup = m[2].replace(/^\s*\n/, '') + setup;
      j = k - 1;
    }
    if (lang) blocks.push({ file, line: i + 1, lang, code, setup, run, skip });
    i = end;
  }
  return blocks;
}

const all = FILES.flatMap((f) => extractBlocks(f, fs.readFileSync(path.join(ROOT, f), 'utf8')));
const isShell = (b: Block): boolean => b.lang === 'sh' || b.lang === 'bash' || b.lang === 'shell';

// A throwaway project that depends on covpool (this repository) and on tfjs.
let project = '';
beforeAll(() => {
  project = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-doctest-'));
  const nm = path.join(project, 'node_modules');
  fs.mkdirSync(nm);
  fs.symlinkSync(ROOT, path.join(nm, 'covpool'), 'dir');
  fs.symlinkSync(path.join(ROOT, 'node_modules', '@tensorflow'), path.join(nm, '@tensorflow'), 'dir');
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'doctest-project', private: true }));
});
afterAll(() => fs.rmSync(project, { recursive: true, force: true }));

describe('doc-test markers', () => {
  test('the extractor reads skip, run and setup markers', () => {
    const md = ['<!-- doctest: skip (needs a GPU) -->', '```js', 'a()', '```', '<!-- doctest: setup', 'const m = 1;', '-->', '```js', 'm', '```', '<!-- doctest: run -->', '```sh', 'true', '```', '```', 'tree', '```'].join('\n');
    const b = extractBlocks('x.md', md);
    expect(b.map((x) => [x.lang, x.skip, x.setup.trim(), x.run])).toEqual([
      ['js', 'needs a GPU', '', false],
      ['js', undefined, 'const m = 1;', false],
      ['sh', undefined, '', true],
    ]);
  });

  test('every block is runnable or says why not, and the docs have runnable examples', () => {
    for (const b of all) if (b.skip !== undefined) expect({ at: `${b.file}:${b.line}`, reason: b.skip.length > 0 }).toEqual({ at: `${b.file}:${b.line}`, reason: true });
    for (const b of all.filter(isShell)) expect({ at: `${b.file}:${b.line}`, marked: b.run || b.skip !== undefined }).toEqual({ at: `${b.file}:${b.line}`, marked: true });
    for (const b of all) expect({ at: `${b.file}:${b.line}`, lang: ['js', 'mjs', 'ts', 'sh', 'bash', 'shell'].includes(b.lang) }).toEqual({ at: `${b.file}:${b.line}`, lang: true });
    expect(all.filter((b) => !b.skip && !isShell(b)).length).toBeGreaterThanOrEqual(5);
  });
});

const runnable = all.filter((b) => b.skip === undefined && (!isShell(b) || b.run));

describe.each(FILES)('%s', (file) => {
  const blocks = runnable.filter((b) => b.file === file);
  if (blocks.length === 0) {
    test('has no runnable blocks', () => expect(blocks).toEqual([]));
    return;
  }
  test.each(blocks.map((b) => [`${b.lang} block at line ${b.line}`, b] as const))('%s runs as written', (_, b) => {
    let cmd: string[];
    let cwd = project;
    if (isShell(b)) {
      cmd = ['bash', '-e', '-c', b.setup + b.code];
      cwd = ROOT;
    } else {
      let code = b.setup + b.code;
      const esm = /^\s*import\s/m.test(code);
      if (b.lang === 'ts') code = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020 } }).outputText;
      const script = path.join(project, `block-${path.basename(b.file, '.md')}-${b.line}.${esm && b.lang !== 'ts' ? 'mjs' : 'cjs'}`);
      fs.writeFileSync(script, code);
      cmd = [process.execPath, script];
    }
    const r = spawnSync(cmd[0], cmd.slice(1), { cwd, encoding: 'utf8', timeout: 240_000, env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' } });
    const failed = r.status !== 0 || r.error !== undefined;
    expect({ at: `${b.file}:${b.line}`, status: r.status, error: r.error?.message, stderr: failed ? r.stderr.slice(-3000) : '' }).toEqual({
      at: `${b.file}:${b.line}`,
      status: 0,
      error: undefined,
      stderr: '',
    });
  });
});

// Links: relative, to files that exist, and to headings that exist (GitHub's anchors: lower case,
// punctuation dropped, spaces as hyphens). There is no public repository yet, so nothing may point
// at one.
const LINKED = [...FILES, 'bench/results/README.md', 'reports/README.md'];
function anchors(file: string): Set<string> {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8').replace(/^```[\s\S]*?^```/gm, '');
  const slugs = [...text.matchAll(/^#{1,6}\s+(.+?)\s*$/gm)].map((m) =>
    m[1].toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').trim().replace(/\s/g, '-'),
  );
  return new Set(slugs);
}
describe('links in README.md and docs/', () => {
  test.each(LINKED)('%s: relative links resolve to files and headings', (file) => {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8').replace(/^```[\s\S]*?^```/gm, '');
    const links = [...text.matchAll(/!?\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]);
    expect(links.length).toBeGreaterThan(0);
    const bad: string[] = [];
    for (const link of links) {
      if (/github\.com\/covpool|githubusercontent\.com\/covpool/.test(link)) bad.push(`${link}: a placeholder repository`);
      if (/^[a-z]+:/.test(link)) continue; // an external address
      const [target, hash] = link.split('#');
      const resolved = target === '' ? file : path.join(path.dirname(file), target);
      if (!fs.existsSync(path.join(ROOT, resolved))) bad.push(`${link}: no such file`);
      else if (hash !== undefined && resolved.endsWith('.md') && !anchors(resolved).has(hash)) bad.push(`${link}: no such heading`);
    }
    expect({ file, bad }).toEqual({ file, bad: [] });
  });
});

describe('examples/js (shipped in the package)', () => {
  const dir = path.join(ROOT, 'examples', 'js');
  const files = fs.readdirSync(dir).filter((f) => /\.(c|m)?js$/.test(f));

  test('there are examples, and they use the package, not the repository sources', () => {
    expect(files.length).toBeGreaterThanOrEqual(2);
    for (const f of files) {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      expect({ f, requiresPackage: /require\('covpool(\/tfjs)?'\)|from 'covpool(\/tfjs)?'/.test(text), relative: /(require\(|from )'\.\.?\//.test(text) }).toEqual({ f, requiresPackage: true, relative: false });
    }
  });

  test.each(files)('%s runs from a project that installed covpool', (f) => {
    const script = path.join(project, f);
    fs.copyFileSync(path.join(dir, f), script);
    const r = spawnSync(process.execPath, [script], { cwd: project, encoding: 'utf8', timeout: 240_000 });
    expect({ f, status: r.status, stderr: r.status === 0 ? '' : r.stderr.slice(-3000) }).toEqual({ f, status: 0, stderr: '' });
  });
});
