// The loader's errors when no binary loads (the package has no install script, so this message is
// where a user without a matching prebuilt binary learns what to do), and the binary audit that
// keeps the prebuilt binaries loadable on glibc >= 2.28 (scripts/audit-prebuilds.js): it must flag
// a binary built the ordinary way on this machine.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const { auditBinary, buildRecord } = require('../scripts/audit-prebuilds.js');

function loadNativeWith(env: Record<string, string | undefined>, nodeGypBuild?: () => unknown): () => unknown {
  let load: () => unknown = () => undefined;
  const saved = { ...process.env };
  jest.isolateModules(() => {
    if (nodeGypBuild) jest.doMock('node-gyp-build', nodeGypBuild);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { native } = require('../lib/native');
    load = () => {
      Object.assign(process.env, env);
      for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k];
      try {
        return native();
      } finally {
        process.env = saved;
      }
    };
  });
  return load;
}

describe('loader errors', () => {
  test('no binary for this platform: names the platform, the build command and its prerequisites', () => {
    const load = loadNativeWith({ COVPOOL_ADDON: undefined }, () => ({
      resolve: () => {
        throw new Error('No native build was found for platform=linux arch=riscv64 runtime=node abi=115 uv=1 libc=glibc node=20.0.0');
      },
    }));
    const where = `${process.platform}-${process.arch}, Node ${process.version}`;
    expect(load).toThrow(`no prebuilt binary matches this platform (${where}) and there is no local build`);
    expect(load).toThrow(/`npx covpool-build`/);
    expect(load).toThrow(/sudo apt-get install g\+\+ make python3 libopenblas-dev liblapacke-dev/);
  });

  test('a binary that does not load here: names the file and the cause', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-loader-'));
    const bad = path.join(dir, 'covpool.node');
    fs.writeFileSync(bad, 'not an ELF file');
    try {
      const load = loadNativeWith({ COVPOOL_ADDON: bad });
      expect(load).toThrow(new RegExp(`the native addon ${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not load here`));
      expect(load).toThrow(/`npx covpool-build`/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a binary that needs a newer glibc: says which glibc it needs', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-loader-'));
    const bad = path.join(dir, 'needs-newer-glibc.js'); // throws what dlopen says on an older glibc
    fs.writeFileSync(bad, "throw new Error(\"/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by covpool.glibc.node)\");");
    try {
      const load = loadNativeWith({ COVPOOL_ADDON: bad });
      expect(load).toThrow(/version `GLIBC_2\.38' not found/);
      expect(load).toThrow(/is older than the binary needs \(glibc >= \d+\.\d+\)/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the glibc floor comes from prebuilds/build.json: 2.28 without one, and a host-built tarball says so', () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { glibcAdvice } = require('../lib/prebuilds') as typeof import('../lib/prebuilds');
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-record-'));
    const cause = "/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found (required by covpool.glibc.node)";
    try {
      expect(glibcAdvice(root, 'some other error')).toBe('');
      expect(glibcAdvice(root, cause)).toMatch(/older than the binary needs \(glibc >= 2\.28\)\.$/);
      fs.mkdirSync(path.join(root, 'prebuilds'));
      const rec = { glibc: '2.36', host: true, builtOn: 'this machine (COVPOOL_PREBUILD_HOST=1): Debian GNU/Linux 12 (bookworm), glibc 2.36' };
      fs.writeFileSync(path.join(root, 'prebuilds', 'build.json'), JSON.stringify(rec));
      const advice = glibcAdvice(root, cause);
      expect(advice).toMatch(/older than the binary needs \(glibc >= 2\.36\)/);
      expect(advice).toMatch(/built on this machine \(COVPOOL_PREBUILD_HOST=1\): Debian GNU\/Linux 12 \(bookworm\), glibc 2\.36, for that glibc; the published package needs glibc >= 2\.28/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

// The addon loads on first use, not at require/import: a program (or covpool/tfjs registering its
// layer) can load covpool where no binary loads and learn why at the first call that needs it,
// which it can catch — an ES module cannot catch a failing static import.
describe('where no binary loads', () => {
  test("require('covpool') and import succeed; the first call that needs the addon throws the loader's error", () => {
    const root = path.join(__dirname, '..');
    if (!fs.existsSync(path.join(root, 'dist', 'lib', 'index.js'))) throw new Error('this test runs dist/ in a child: run `npm run build` first');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-lazy-'));
    const bad = path.join(dir, 'covpool.node');
    fs.writeFileSync(bad, 'not an ELF file');
    const lib = JSON.stringify(path.join(root, 'dist', 'lib', 'index.js'));
    const cjs = `
      const c = require(${lib});
      const tries = { backendInfo: () => c.backendInfo(), layer: () => new c.CovPoolLayer('ns'), op: () => c.covpoolSync(new c.Tensor(new Float32Array(4), [1, 2, 2])) };
      const out = { loaded: typeof c.CovPoolLayer === 'function', tensor: new c.Tensor(new Float32Array(2), [1, 2]).shape };
      for (const [k, f] of Object.entries(tries)) { try { f(); out[k] = 'no error'; } catch (e) { out[k] = e.message; } }
      console.log(JSON.stringify(out));`;
    const esm = `import { backendInfo } from ${JSON.stringify('file://' + path.join(root, 'esm', 'index.mjs'))};
      try { backendInfo(); console.log('no error'); } catch (e) { console.log(e.message); }`;
    try {
      const env = { ...process.env, COVPOOL_ADDON: bad };
      const out = JSON.parse(execFileSync(process.execPath, ['-e', cjs], { env, encoding: 'utf8' }));
      expect({ loaded: out.loaded, tensor: out.tensor }).toEqual({ loaded: true, tensor: [1, 2] });
      for (const k of ['backendInfo', 'layer', 'op']) {
        expect(out[k]).toContain(`covpool: the native addon ${bad} does not load here`);
        expect(out[k]).toContain('`npx covpool-build`');
      }
      const m = execFileSync(process.execPath, ['--input-type=module', '-e', esm], { env, encoding: 'utf8' });
      expect(m).toContain(`covpool: the native addon ${bad} does not load here`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('binary audit (scripts/audit-prebuilds.js)', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-audit-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function build(name: string, source: string, flags: string[]): string {
    const src = path.join(dir, name + '.cpp');
    const out = path.join(dir, name + '.node');
    fs.writeFileSync(src, source);
    execFileSync('g++', ['-shared', '-fPIC', '-O1', '-o', out, src, ...flags]);
    return out;
  }

  test('flags the shared C++ runtime and unversioned symbols nothing provides', () => {
    // An ordinary C++ build needs libstdc++.so (GLIBCXX versions); an unresolved BLAS call is the
    // mistake a forgotten static library makes.
    const bin = build(
      'dynamic',
      '#include <string>\nextern "C" double cblas_ddot(int, const double*, int, const double*, int);\n' +
        'std::string hello(int n) { return std::string(n, \'x\'); }\n' +
        'extern "C" double dot(const double* a, int n) { return cblas_ddot(n, a, 1, a, 1); }\n',
      [],
    );
    const r = auditBinary(bin);
    expect(r.needed).toContain('libstdc++.so.6');
    expect(r.problems.join('\n')).toMatch(/needs the shared library libstdc\+\+\.so\.6/);
    expect(r.problems.join('\n')).toMatch(/GLIBCXX_3\.4/);

    const stat = build('static-unresolved', 'extern "C" double cblas_ddot(int, const double*, int, const double*, int);\n' +
      'extern "C" double dot(const double* a, int n) { return cblas_ddot(n, a, 1, a, 1); }\n', ['-static-libstdc++', '-static-libgcc']);
    expect(auditBinary(stat).problems.join('\n')).toMatch(/undefined symbols no library provides: cblas_ddot/);
  });

  test('allows cuBLAS/cuSOLVER only to a CUDA-enabled binary (in a cuda folder)', () => {
    // A stand-in library with cuBLAS's soname: what the linker records is all the audit reads.
    const lib = path.join(dir, 'libcublas.so.13');
    fs.writeFileSync(path.join(dir, 'cublas.c'), 'int cublasCreate_v2(void **h) { return 0; }\n');
    execFileSync('gcc', ['-shared', '-fPIC', '-Wl,-soname,libcublas.so.13', '-o', lib, path.join(dir, 'cublas.c')]);
    const src = 'extern "C" int cublasCreate_v2(void**);\nextern "C" int make() { void* h; return cublasCreate_v2(&h); }\n';
    const bin = build('uses-cublas', src, ['-static-libstdc++', '-static-libgcc', lib]);
    fs.mkdirSync(path.join(dir, 'cuda'));
    const inCuda = path.join(dir, 'cuda', 'covpool-cuda.node');
    fs.copyFileSync(bin, inCuda);
    expect(auditBinary(inCuda).problems).toEqual([]);
    expect(auditBinary(bin).problems.join('\n')).toMatch(/needs the shared library libcublas\.so\.13/);
  });

  test('flags a glibc symbol version above 2.28 and accepts one at or below it', () => {
    // glibc >= 2.34 (this machine and CI: Debian 12) versions pthread_create at GLIBC_2.34; the
    // baseline version (GLIBC_2.2.5 on x86-64) stays available through .symver.
    const glibc = String(execFileSync('ldd', ['--version'], { encoding: 'utf8' }).match(/([0-9]+\.[0-9]+)\s*$/m)?.[1]);
    if (Number(glibc.split('.')[1]) < 34 || process.arch !== 'x64') {
      console.log(`skipped: needs glibc >= 2.34 on x64 to produce a too-new symbol (this is glibc ${glibc}, ${process.arch})`);
      return;
    }
    const newer = build('newer', '#include <pthread.h>\nstatic void* f(void*) { return 0; }\n' +
      'extern "C" int start() { pthread_t t; return pthread_create(&t, 0, f, 0); }\n', ['-static-libgcc']);
    const r = auditBinary(newer);
    expect(r.glibcMax).toBe('2.34');
    expect(r.problems).toEqual([
      'needs pthread_create@GLIBC_2.34, newer than GLIBC_2.28 (build it in Debian 11, as root: scripts/build-prebuilt.sh; or build for this machine\'s glibc with COVPOOL_PREBUILD_HOST=1)',
    ]);
    expect(r.glibcFloor).toBe('2.28');
    // Built on this machine (COVPOOL_PREBUILD_HOST=1): the same rules, but the floor is what it needs.
    const h = auditBinary(newer, { host: true });
    expect(h.problems).toEqual([]);
    expect(h.glibcFloor).toBe('2.34');
    const rec = buildRecord([h, { ...h, file: path.join(dir, 'x', 'other.node'), glibcFloor: '2.17', glibcMax: '2.17' }], dir, true);
    expect(rec.glibc).toBe('2.34');
    expect(rec.host).toBe(true);
    expect(rec.binaries).toEqual({ 'newer.node': { machine: h.machine, glibc: '2.34' }, 'x/other.node': { machine: h.machine, glibc: '2.17' } });
    expect(rec.builtOn).toMatch(/^this machine \(COVPOOL_PREBUILD_HOST=1\): .*, glibc \d+\.\d+$/);

    const old = build('old', '#include <pthread.h>\n__asm__(".symver pthread_create_old, pthread_create@GLIBC_2.2.5");\n' +
      'extern "C" int pthread_create_old(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);\n' +
      'static void* f(void*) { return 0; }\nextern "C" int start() { pthread_t t; return pthread_create_old(&t, 0, f, 0); }\n', ['-static-libgcc']);
    expect(auditBinary(old).problems).toEqual([]);
  });
});
