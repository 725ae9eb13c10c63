// The published package: `npm pack` must produce a tarball whose prebuilt binaries (every .node in
// it, whoever added it) link OpenBLAS/LAPACKE and the C++ runtime statically and need no glibc symbol
// version above 2.28 (scripts/audit-prebuilds.js), and that tarball must install into an empty
// project with npm's defaults without an install-script approval warning (it has no install script)
// and compute a correct layer forward/backward there. Reinstalls must not compile either: with no
// compiler on the machine, `npm install` again and `npm ci` from the lockfile load the prebuilt
// binary (the package has no binding.gyp at its root, which would make npm run `node-gyp rebuild`),
// while `npx covpool-build` still builds from source. With COVPOOL_OLD_SYSTEM_CHECK=1 (as root) it
// is also installed and run in a fresh Debian 11 (glibc 2.31) by scripts/check-tarball-old-system.sh.
//
// Slow (it builds the static binaries in a Debian 11 chroot): runs when COVPOOL_PACKAGE_TEST=1, as CI does.
// With COVPOOL_PREBUILD_HOST=1 as well, the tarball is packed without root, its binaries built on
// this machine: they are audited against this machine's glibc instead of 2.28, and the x64 binary
// only is expected (the Debian 11 check is skipped: such binaries need this machine's glibc).
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const { auditBinary, binariesUnder, GLIBC_FLOOR } = require('../scripts/audit-prebuilds.js');

const enabled = process.env.COVPOOL_PACKAGE_TEST === '1';
const hostBuild = process.env.COVPOOL_PREBUILD_HOST === '1';
const root = path.resolve(__dirname, '..');
const maybe = enabled ? describe : describe.skip;
if (!enabled) {
  // Jest prints nothing for a file whose tests are all skipped, not even its console output: this
  // one test runs to say why the others do not.
  test('skipped: the packed-package checks run with COVPOOL_PACKAGE_TEST=1', () => {
    console.log(
      'test/package.test.ts: skipped (slow): set COVPOOL_PACKAGE_TEST=1 to pack, audit, install and reinstall the tarball ' +
        '(as root: binaries built in Debian 11 chroots; add COVPOOL_PREBUILD_HOST=1 to build them on this machine without root)',
    );
  });
}
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

  test('the tarball carries the prebuilt binary, its glibc floor, no build outputs and no root binding.gyp', () => {
    const list = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
    expect(list).toContain('package/prebuilds/linux-x64/covpool.glibc.node');
    expect(list).toContain('package/dist/lib/index.js');
    expect(list).toContain('package/dist/lib/index.d.ts');
    expect(list.some((f) => f.startsWith('package/build/'))).toBe(false);
    expect(list.some((f) => f.startsWith('package/test/'))).toBe(false);
    // A root binding.gyp (any root *.gyp) would make npm compile on a reinstall and on `npm ci`.
    expect(list.filter((f) => /^package\/[^/]*\.gyp$/.test(f))).toEqual([]);
    expect(list).toContain('package/native/binding.gyp');
    // Built in Debian 11 (npm pack as root): the recorded floor is the published one. Built on this
    // machine: the highest GLIBC version its binaries need.
    const record = JSON.parse(fs.readFileSync(path.join(unpacked, 'package', 'prebuilds', 'build.json'), 'utf8'));
    if (!hostBuild) expect(record).toMatchObject({ glibc: GLIBC_FLOOR, host: false });
    else {
      const needed = binariesUnder(path.join(unpacked, 'package')).map((b: string) => auditBinary(b, { host: true }).glibcFloor);
      expect(record).toMatchObject({ glibc: needed.sort((a: string, b: string) => a.localeCompare(b, 'en', { numeric: true })).pop(), host: true });
      console.log(`the tarball's binaries were built on ${record.builtOn}; they need glibc >= ${record.glibc}`);
    }
  });

  test(`every binary in the tarball needs only the C library, at most GLIBC_${hostBuild ? "<this machine's>" : GLIBC_FLOOR}`, () => {
    const binaries: string[] = binariesUnder(path.join(unpacked, 'package'));
    const names = binaries.map((b) => path.relative(path.join(unpacked, 'package'), b));
    expect(names).toContain('prebuilds/linux-x64/covpool.glibc.node');
    if (!hostBuild) expect(names).toContain('prebuilds/linux-arm64/covpool.glibc.node');
    for (const b of binaries) {
      const r = auditBinary(b, { host: hostBuild });
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
    const install = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: app, encoding: 'utf8' });
    expect(install.status).toBe(0);
    // npm 11 lists packages whose install scripts it did not run (on stderr); covpool must not be one of them.
    expect((install.stdout + install.stderr).split('\n').filter((l) => /install-scripts/.test(l) && /covpool/.test(l))).toEqual([]);
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

  test('reinstalls (npm install again, npm ci from the lockfile) compile nothing and load the prebuilt binary, with no compiler; npx covpool-build still builds', () => {
    const app = path.join(work, 'app-reinstall');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const installed = path.join(app, 'node_modules', 'covpool');
    const prebuilt = path.join(installed, 'prebuilds', 'linux-x64', 'covpool.glibc.node');
    const localBuild = path.join(installed, 'build', 'Release', 'covpool.node');

    // No compiler: CC/CXX fail, and PATH holds only node and sh (no gcc, g++, c++, cc, make, python3),
    // so any compile npm started would fail the step.
    const bin = path.join(work, 'no-compiler-bin');
    fs.mkdirSync(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));
    const noCompiler: NodeJS.ProcessEnv = { ...process.env, PATH: bin, CC: '/bin/false', CXX: '/bin/false' };
    const npmCli = fs.realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
    const npxCli = path.join(path.dirname(npmCli), 'npx-cli.js');
    const npm = (args: string[], env: NodeJS.ProcessEnv) => {
      const r = spawnSync(process.execPath, [npmCli, ...args, '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app, env, encoding: 'utf8' });
      return { status: r.status, output: r.stdout + r.stderr };
    };
    /** What require('covpool') loads in the app, and a square root computed with it. */
    const probe = (env: NodeJS.ProcessEnv) =>
      JSON.parse(
        execFileSync(
          process.execPath,
          ['-e', "const c = require('covpool'); const s = c.sqrtmSync(new c.Tensor(new Float64Array([4, 0, 0, 9]), [1, 2, 2]), { method: 'svd' }); console.log(JSON.stringify({ binary: c.backendInfo().binary, s: Array.from(s.output.data) }))"],
          { cwd: app, env, encoding: 'utf8' },
        ),
      );
    const env: NodeJS.ProcessEnv = { ...noCompiler };
    delete env.COVPOOL_ADDON;
    /** A step that must compile nothing: it succeeds, prints no install-script or node-gyp line, leaves no build folder. */
    const expectPrebuiltOnly = (step: string, r: { status: number | null; output: string }) => {
      expect({ step, status: r.status, output: r.status === 0 ? '' : r.output }).toEqual({ step, status: 0, output: '' });
      const lines = r.output.split('\n').filter((l) => /install-scripts|gyp|\(install: |compil/i.test(l));
      expect({ step, lines }).toEqual({ step, lines: [] });
      for (const d of ['build', path.join('native', 'build')]) expect({ step, built: fs.existsSync(path.join(installed, d)) }).toEqual({ step, built: false });
      const p = probe(env);
      expect({ step, binary: p.binary }).toEqual({ step, binary: prebuilt });
      expect(p.s[0]).toBeCloseTo(2, 10);
      expect(p.s[3]).toBeCloseTo(3, 10);
    };

    expectPrebuiltOnly('npm install <tarball>', npm(['install', tarball], noCompiler));
    const lock = JSON.parse(fs.readFileSync(path.join(app, 'package-lock.json'), 'utf8'));
    expect(lock.packages['node_modules/covpool'].hasInstallScript).toBeUndefined();
    expectPrebuiltOnly('npm install (again)', npm(['install'], noCompiler));
    fs.rmSync(path.join(app, 'node_modules'), { recursive: true });
    expectPrebuiltOnly('npm ci (from the lockfile)', npm(['ci'], noCompiler));

    // With the compiler: `npx covpool-build` builds from source (native/binding.gyp) into
    // build/Release, which the loader then prefers; it leaves no root binding.gyp behind, so a later
    // reinstall still compiles nothing.
    const build = spawnSync(process.execPath, [npxCli, '--no', 'covpool-build'], { cwd: app, encoding: 'utf8' });
    expect({ status: build.status, output: build.status === 0 ? '' : build.stdout + build.stderr }).toEqual({ status: 0, output: '' });
    expect(build.stdout).toContain(`covpool: built ${localBuild}`);
    expect(fs.existsSync(path.join(installed, 'binding.gyp'))).toBe(false);
    expect(fs.existsSync(path.join(installed, 'native', 'build'))).toBe(false);
    expect(probe(env).binary).toBe(localBuild);
    const again = npm(['install'], noCompiler);
    expect(again.status).toBe(0);
    expect(again.output.split('\n').filter((l) => /install-scripts|gyp|\(install: /.test(l))).toEqual([]);
  }, 600000);

  const oldSystem = process.env.COVPOOL_OLD_SYSTEM_CHECK === '1' && !hostBuild ? test : test.skip;
  oldSystem('installs with npm defaults and runs a layer in a fresh Debian 11 (glibc 2.31, no compiler), x64 and arm64 (qemu)', () => {
    const out = execFileSync('bash', [path.join(root, 'scripts', 'check-tarball-old-system.sh'), tarball, 'bullseye'], { encoding: 'utf8', stdio: 'pipe' });
    console.log(out);
    expect(out).toMatch(/"arch":"x64","glibc":"2\.31"/);
    expect(out).toMatch(/"arch":"arm64","glibc":"2\.31"/);
    expect(out).toMatch(/the tarball installs and runs on Debian bullseye \(x64 arm64\)/);
  }, 900000);
});
