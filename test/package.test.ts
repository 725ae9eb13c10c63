// The published package: `npm pack` must produce a tarball whose prebuilt linux-x64 binary links
// OpenBLAS/LAPACKE statically (its only shared-library dependencies are the C/C++ runtime), and that
// tarball must install into an empty project with npm's defaults (no install scripts run, so no
// compiler and no BLAS are involved) and compute a correct layer forward/backward there.
//
// Slow (it compiles the static binary): runs when COVPOOL_PACKAGE_TEST=1, as CI does.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const enabled = process.env.COVPOOL_PACKAGE_TEST === '1';
const root = path.resolve(__dirname, '..');
if (!enabled) console.log('test/package.test.ts skipped: set COVPOOL_PACKAGE_TEST=1 to pack, install and run the tarball');
const maybe = enabled ? describe : describe.skip;

maybe('npm pack -> install into an empty project', () => {
  let work: string;
  let tarball: string;
  let prebuild: string;

  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-pack-'));
    // Pack from a copy of the tracked files, so building the static binary cannot disturb the
    // build/ folder that other test files are loading the addon from.
    const src = path.join(work, 'src');
    const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: root, encoding: 'utf8' })
      .split('\n')
      .filter((f) => f && fs.existsSync(path.join(root, f)));
    for (const f of files) {
      fs.mkdirSync(path.dirname(path.join(src, f)), { recursive: true });
      fs.copyFileSync(path.join(root, f), path.join(src, f));
    }
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(src, 'node_modules'));
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: src, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const info = JSON.parse(out.slice(out.indexOf('[')))[0];
    tarball = path.join(work, info.filename);
    prebuild = path.join(src, 'prebuilds', 'linux-x64', 'covpool.glibc.node');
    console.log(`tarball ${info.filename}: ${(info.size / 1e6).toFixed(1)} MB packed, ${(info.unpackedSize / 1e6).toFixed(1)} MB unpacked, ${info.entryCount} files`);
  }, 600000);

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('the tarball carries the prebuilt binary and no build outputs', () => {
    const list = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
    expect(list).toContain('package/prebuilds/linux-x64/covpool.glibc.node');
    expect(list).toContain('package/dist/lib/index.js');
    expect(list).toContain('package/dist/lib/index.d.ts');
    expect(list.some((f) => f.startsWith('package/build/'))).toBe(false);
    expect(list.some((f) => f.startsWith('package/test/'))).toBe(false);
  });

  test('the prebuilt binary depends only on the C runtime', () => {
    const ldd = execFileSync('ldd', [prebuild], { encoding: 'utf8' });
    const libs = ldd
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0])
      .filter(Boolean);
    const allowed = /^(linux-vdso\.so|\/lib64\/ld-linux|ld-linux|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so)/;
    expect(libs.filter((l) => !allowed.test(l))).toEqual([]);
    expect(ldd).not.toMatch(/openblas|lapack|gfortran|stdc\+\+/);
  });

  test('installs with npm defaults into an empty project and computes a correct layer', () => {
    const app = path.join(work, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    // Offline: the tarball's only runtime dependency (node-gyp-build, node-addon-api) come from
    // this machine's npm cache, which the repository's own install filled.
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: app, stdio: 'pipe' });
    const script = `
      const c = require('covpool');
      const B = 2, C = 6, N = 4;                       // N < C: singular covariances
      let s = 7; const r = () => ((s = (s * 16807) % 2147483647) / 2147483647);
      const x = new c.Tensor(Float64Array.from({ length: B * C * N }, () => Math.max(0, r() - 0.3)), [B, C, N]);
      const layer = new c.CovPoolLayer({ method: 'svd-lyap', vectorize: false });
      const { output, state } = layer.forwardSync(x);
      const A = c.covpoolSync(x).data;
      let err = 0;                                     // S S = A
      for (let b = 0; b < B; b++) for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) {
        let v = 0; for (let k = 0; k < C; k++) v += output.data[b*C*C+i*C+k] * output.data[b*C*C+k*C+j];
        err = Math.max(err, Math.abs(v - A[b*C*C+i*C+j]));
      }
      const dx = layer.backwardSync(state, new c.Tensor(new Float64Array(B * C * C).fill(1), [B, C, C]));
      console.log(JSON.stringify({ err, finite: dx.data.every(Number.isFinite), resolved: require.resolve('covpool') }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: app, encoding: 'utf8' }));
    expect(out.err).toBeLessThan(1e-10);
    expect(out.finite).toBe(true);
    expect(out.resolved).toContain(path.join(app, 'node_modules', 'covpool'));
    // npm's defaults did not run our install script: nothing was compiled in the app.
    expect(fs.existsSync(path.join(app, 'node_modules', 'covpool', 'build'))).toBe(false);
  });
});
