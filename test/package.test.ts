// The published package: `npm pack` must produce a tarball whose prebuilt binaries (every .node in
// it, whoever added it) link OpenBLAS/LAPACKE and the C++ runtime statically and need no glibc symbol
// version above 2.28 (scripts/audit-prebuilds.js), and that tarball must install into an empty
// project with npm's defaults without an install-script approval warning (it has no install script)
// and compute a correct layer forward/backward there. With COVPOOL_OLD_SYSTEM_CHECK=1 (as root) it
// is also installed and run in a fresh Debian 11 (glibc 2.31) by scripts/check-tarball-old-system.sh.
//
// Slow (it builds the static binaries in a Debian 11 chroot): runs when COVPOOL_PACKAGE_TEST=1, as CI does.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const { auditBinary, binariesUnder, GLIBC_FLOOR } = require('../scripts/audit-prebuilds.js');

const enabled = process.env.COVPOOL_PACKAGE_TEST === '1';
const root = path.resolve(__dirname, '..');
if (!enabled) console.log('test/package.test.ts skipped: set COVPOOL_PACKAGE_TEST=1 to pack, install and run the tarball');
const maybe = enabled ? describe : describe.skip;
// cuBLAS/cuSOLVER for the CUDA binary's with-libraries check: the toolkit scripts/cuda-toolkit.sh
// assembles (CI), or COVPOOL_TEST_CUDA_LIBS.
const toolkitLibs = process.env.COVPOOL_TEST_CUDA_LIBS ?? path.join(root, 'build-cmake', 'cuda-toolkit', 'lib64');
// Whether this machine can build the CUDA binary (nvcc plus cuBLAS/cuSOLVER or their wheels).
const canBuildCuda = enabled && spawnSync('bash', [path.join(root, 'scripts', 'cuda-toolkit.sh')], { cwd: root, stdio: 'ignore' }).status === 0;
if (enabled && !canBuildCuda) console.log('test/package.test.ts: no CUDA toolkit here: the tarball carries no CUDA binary, its checks are skipped');

// The code a CUDA binary embeds, from its .nv_fatbin section: a sequence of fat binaries (magic
// 0xBA55ED50; u16 version, u16 header size, u64 payload size), each holding entries (u16 kind: 1
// PTX, 2 ELF; u32 header size at 4; u64 payload size at 8; u32 architecture at 28).
function fatbinEntries(file: string): string[] {
  const sections = execFileSync('readelf', ['-S', '-W', file], { encoding: 'utf8' });
  const line = sections.split('\n').find((l) => l.includes('.nv_fatbin'));
  if (!line) return [];
  const f = line.trim().split(/\s+/);
  const i = f.indexOf('.nv_fatbin');
  const off = parseInt(f[i + 3], 16), size = parseInt(f[i + 4], 16);
  const d = fs.readFileSync(file).subarray(off, off + size);
  const found: string[] = [];
  for (let p = 0; p + 16 <= d.length; ) {
    if (d.readUInt32LE(p) !== 0xba55ed50) {
      p += 8;
      continue;
    }
    const hs = d.readUInt16LE(p + 6), fs2 = Number(d.readBigUInt64LE(p + 8));
    for (let q = p + hs; q < p + hs + fs2; ) {
      const kind = d.readUInt16LE(q), ehs = d.readUInt32LE(q + 4), esize = Number(d.readBigUInt64LE(q + 8)), arch = d.readUInt32LE(q + 28);
      found.push(kind === 1 ? `compute_${arch} (PTX)` : `sm_${arch}`);
      q += ehs + esize;
    }
    p += hs + fs2;
  }
  return found;
}

maybe('npm pack -> install into an empty project', () => {
  let work: string;
  let tarball: string;
  let unpacked: string;
  let prebuild: string; // the x64 CPU binary, in the packed copy (the CUDA one is next to it)

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
    // The CUDA prebuild reuses the toolkit scripts/check-cuda.sh assembled, where there is one.
    const env = fs.existsSync(toolkitLibs) ? { ...process.env, COVPOOL_CUDA_TOOLKIT: path.dirname(toolkitLibs) } : process.env;
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: src, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const info = JSON.parse(out.slice(out.indexOf('[')))[0];
    tarball = path.join(work, info.filename);
    prebuild = path.join(src, 'prebuilds', 'linux-x64', 'covpool.glibc.node');
    unpacked = path.join(work, 'unpacked');
    fs.mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', tarball, '-C', unpacked]);
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

  test(`every binary in the tarball needs only the C library, at most GLIBC_${GLIBC_FLOOR}`, () => {
    const binaries: string[] = binariesUnder(path.join(unpacked, 'package'));
    const names = binaries.map((b) => path.relative(path.join(unpacked, 'package'), b));
    expect(names).toContain('prebuilds/linux-x64/covpool.glibc.node');
    expect(names).toContain('prebuilds/linux-arm64/covpool.glibc.node');
    for (const b of binaries) {
      const r = auditBinary(b);
      console.log(`${path.relative(unpacked, b)}: ${r.machine}; needs ${r.needed.join(', ')}; GLIBC up to ${r.glibcMax}`);
      expect({ binary: path.relative(unpacked, b), problems: r.problems }).toEqual({ binary: path.relative(unpacked, b), problems: [] });
    }
  });

  test('the package has no install script (npm would ask to approve it) and says how to build from source', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(unpacked, 'package', 'package.json'), 'utf8'));
    for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) expect(pkg.scripts?.[s]).toBeUndefined();
    expect(pkg.gypfile).toBe(false); // else npm adds `node-gyp rebuild` because binding.gyp exists
    expect(pkg.bin['covpool-build']).toBe('scripts/build-from-source.js');
  });

  (canBuildCuda ? test : test.skip)('the tarball also carries the CUDA-enabled binary: static CUDA runtime, C runtime, cuBLAS and cuSOLVER only', () => {
    const list = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
    expect(list).toContain('package/prebuilds/linux-x64/cuda/covpool-cuda.node');
    const cudaBinary = path.join(path.dirname(prebuild), 'cuda', 'covpool-cuda.node');
    const needed = execFileSync('readelf', ['-d', cudaBinary], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('(NEEDED)'))
      .map((l) => (/\[(.*)\]/.exec(l) as RegExpExecArray)[1]);
    const allowed = /^(ld-linux-x86-64\.so|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libcublas\.so\.13$|libcusolver\.so\.12$)/;
    expect(needed.filter((l) => !allowed.test(l))).toEqual([]);
    expect(needed).toEqual(expect.arrayContaining(['libcublas.so.13', 'libcusolver.so.12']));
    // Kernels for sm_80 and sm_90 and PTX (compute_90) for newer GPUs, read off the embedded fat binary.
    expect(fatbinEntries(cudaBinary)).toEqual(expect.arrayContaining(['sm_80', 'sm_90', 'compute_90 (PTX)']));
  });

  test('installs with npm defaults into an empty project and computes a correct layer', () => {
    const app = path.join(work, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    // Offline: the tarball's only runtime dependency (node-gyp-build, node-addon-api) come from
    // this machine's npm cache, which the repository's own install filled.
    const install = execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: app, encoding: 'utf8', stdio: 'pipe' });
    // npm 11 lists packages whose install scripts it did not run; covpool must not be one of them.
    expect(install.split('\n').filter((l) => /install-scripts/.test(l) && /covpool/.test(l))).toEqual([]);
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
    // Nothing was compiled in the app.
    expect(fs.existsSync(path.join(app, 'node_modules', 'covpool', 'build'))).toBe(false);

    // Where no prebuilt binary matches (simulated: the prebuilds removed), require names the
    // command that builds from source.
    const copy = path.join(work, 'app-no-prebuilds');
    fs.cpSync(app, copy, { recursive: true });
    fs.rmSync(path.join(copy, 'node_modules', 'covpool', 'prebuilds'), { recursive: true });
    let message = '';
    try {
      execFileSync(process.execPath, ['-e', "const c = require('covpool'); c.covpoolSync(new c.Tensor(new Float64Array(4), [1, 2, 2]))"], { cwd: copy, encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      message = String((e as { stderr: string }).stderr);
    }
    expect(message).toMatch(/no prebuilt binary matches this platform/);
    expect(message).toMatch(/`npx covpool-build`/);

    if (!canBuildCuda) return;
    // The installed package's CUDA binary: without cuBLAS/cuSOLVER the CPU binary runs and a CUDA
    // request names the missing library; with them (the wheel libraries) it loads and sees 0 devices.
    const probe = `
      const c = require('covpool');
      const i = c.backendInfo();
      let error = null;
      try { c.sqrtmSync(new c.Tensor(new Float64Array([4, 0, 0, 9]), [1, 2, 2]), { method: 'ns', device: 'cuda' }); } catch (e) { error = e.message; }
      console.log(JSON.stringify({ binary: i.binary, cuda: i.cuda, devices: i.cudaDevices, cudaBinary: i.cudaBinary, reason: i.cudaReason, error }));
    `;
    const run = (env: NodeJS.ProcessEnv) => JSON.parse(execFileSync(process.execPath, ['-e', probe], { cwd: app, encoding: 'utf8', env }));
    const bare = { ...process.env };
    delete bare.COVPOOL_CUDA_LIB_DIRS;
    delete bare.COVPOOL_ADDON;
    const without = run(bare);
    expect(without.binary).toContain(path.join('prebuilds', 'linux-x64', 'covpool.glibc.node'));
    expect(without.cudaBinary).toContain(path.join('prebuilds', 'linux-x64', 'cuda', 'covpool-cuda.node'));
    if (!without.cuda) {
      expect(without.reason).toMatch(/the CUDA library lib\S+ \(cuBLAS\/cuSOLVER for CUDA 13\) was not found/);
      expect(without.error).toBe(`covpool: device 'cuda' was asked for, but ${without.reason}`);
    }
    if (fs.existsSync(toolkitLibs)) {
      const withLibs = run({ ...bare, COVPOOL_CUDA_LIB_DIRS: toolkitLibs });
      expect(withLibs.cuda).toBe(true);
      if (withLibs.devices === 0) expect(withLibs.error).toMatch(/NVIDIA driver|no usable device|no CUDA device/);
    }
  });

  const oldSystem = process.env.COVPOOL_OLD_SYSTEM_CHECK === '1' ? test : test.skip;
  oldSystem('installs with npm defaults and runs a layer in a fresh Debian 11 (glibc 2.31, no compiler), x64 and arm64 (qemu)', () => {
    const out = execFileSync('bash', [path.join(root, 'scripts', 'check-tarball-old-system.sh'), tarball, 'bullseye'], { encoding: 'utf8', stdio: 'pipe' });
    console.log(out);
    expect(out).toMatch(/"arch":"x64","glibc":"2\.31"/);
    expect(out).toMatch(/"arch":"arm64","glibc":"2\.31"/);
    expect(out).toMatch(/the tarball installs and runs on Debian bullseye \(x64 arm64\)/);
  }, 900000);
});
