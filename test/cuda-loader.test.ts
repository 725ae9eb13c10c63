// The CUDA-enabled binary's loader (lib/cuda.ts). On machines without cuBLAS/cuSOLVER on the
// library path (CI, this project's dev machines): the CPU path is unchanged and a CUDA request is
// an error naming the missing library and where it looked. With the libraries (the folder
// scripts/cuda-toolkit.sh assembles from NVIDIA's wheels, or a pip-style site-packages/nvidia/cu13/lib
// holding them) the CUDA binary loads, in a child process, and reports 0 devices and why.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tensor, backendInfo, sqrtmSync } from '../lib';
import { CUDA_LIBRARIES, candidateDirs } from '../lib/cuda';

const root = path.resolve(__dirname, '..');
const info = backendInfo();
// The cuBLAS/cuSOLVER folder to load from: COVPOOL_TEST_CUDA_LIBS, else the toolkit
// scripts/check-cuda.sh assembled (build-cmake/cuda-toolkit/lib64), when it is there.
const libDir = process.env.COVPOOL_TEST_CUDA_LIBS ?? path.join(root, 'build-cmake', 'cuda-toolkit', 'lib64');
const haveLibs = CUDA_LIBRARIES.every((l) => fs.existsSync(path.join(libDir, l)));
const withLibs = info.cudaBinary !== null && haveLibs;
if (!withLibs)
  console.log(`test/cuda-loader.test.ts: with-libraries tests skipped (CUDA binary: ${info.cudaBinary}; libraries in ${libDir}: ${haveLibs}); run scripts/check-cuda.sh first`);

// Runs a script in a fresh Node process (the loader's outcome is cached per process).
function child(script: string, env: Record<string, string | undefined>) {
  const clean: NodeJS.ProcessEnv = { ...process.env, COVPOOL_CUDA_LIB_DIRS: undefined, LD_LIBRARY_PATH: undefined, VIRTUAL_ENV: undefined, ...env };
  for (const k of Object.keys(clean)) if (clean[k] === undefined) delete clean[k];
  const r = spawnSync(process.execPath, ['-e', script], { cwd: root, env: clean, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string);
}
const probe = `
  const c = require('./dist/lib');
  const i = c.backendInfo();
  let error = null;
  try { c.sqrtmSync(new c.Tensor(new Float64Array([4, 0, 0, 9]), [1, 2, 2]), { method: 'svd', device: 'cuda' }); } catch (e) { error = e.message; }
  const cpu = Array.from(c.sqrtmSync(new c.Tensor(new Float64Array([4, 1, 1, 9]), [1, 2, 2]), { method: 'svd', device: 'auto' }).output.data);
  console.log(JSON.stringify({ cuda: i.cuda, devices: i.cudaDevices, reason: i.cudaReason, libraries: i.cudaLibraries, error, cpu }));`;

describe('without cuBLAS/cuSOLVER', () => {
  (info.cuda ? test.skip : test)('the CPU path is unchanged and a CUDA request names what is missing and where it looked', () => {
    expect(info.cudaDevices).toBe(0);
    expect(info.binary).toMatch(/\.node$/);
    const a = new Tensor(new Float64Array([4, 1, 1, 9]), [1, 2, 2]);
    const ref = sqrtmSync(a, 'svd').output.data;
    expect(Array.from(sqrtmSync(a, { method: 'svd', device: 'auto' }).output.data)).toEqual(Array.from(ref));
    let message = '';
    try {
      sqrtmSync(a, { method: 'svd', device: 'cuda' });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^covpool: device 'cuda' was asked for, but /);
    expect(message.startsWith(`covpool: device 'cuda' was asked for, but ${info.cudaReason}`)).toBe(true);
    if (info.cudaBinary) {
      // The binary is there, its libraries are not: the first missing one is named with the folders searched.
      expect(info.cudaReason).toMatch(/the CUDA library lib\S+\.so\.\d+ \(cuBLAS\/cuSOLVER for CUDA 13\) was not found\. Looked in: the system library path/);
      expect(info.cudaReason).toContain('/usr/local/cuda;');
      expect(info.cudaReason).toContain('COVPOOL_CUDA_LIB_DIRS');
    } else {
      expect(info.cudaReason).toMatch(/has no CUDA-enabled binary/);
    }
  });

  test('the folders searched: explicit ones, LD_LIBRARY_PATH, CUDA_HOME, /usr/local/cuda, pip wheels', () => {
    const venv = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-venv-'));
    fs.mkdirSync(path.join(venv, 'lib', 'python3.12'), { recursive: true });
    const dirs = candidateDirs({ COVPOOL_CUDA_LIB_DIRS: '/opt/a', LD_LIBRARY_PATH: '/opt/b:', CUDA_HOME: '/opt/cuda', VIRTUAL_ENV: venv });
    expect(dirs.slice(0, 5)).toEqual(['/opt/a', '/opt/b', '/opt/cuda/lib64', '/opt/cuda/targets/x86_64-linux/lib', '/opt/cuda/lib']);
    expect(dirs).toContain('/usr/local/cuda/lib64');
    expect(dirs).toContain(path.join(venv, 'lib', 'python3.12', 'site-packages', 'nvidia', 'cu13', 'lib'));
    expect(dirs).toContain(path.join(venv, 'lib', 'python3.12', 'site-packages', 'nvidia', 'cusolver', 'lib'));
    fs.rmSync(venv, { recursive: true });
  });
});

(withLibs ? describe : describe.skip)('with cuBLAS/cuSOLVER (NVIDIA wheel libraries, no GPU here)', () => {
  const expectLoadedWithoutGpu = (r: { cuda: boolean; devices: number; reason: string; libraries: Record<string, string>; error: string; cpu: number[] }, from: string) => {
    expect(r.cuda).toBe(true);
    expect(Object.keys(r.libraries)).toEqual(CUDA_LIBRARIES);
    for (const f of Object.values(r.libraries)) expect(f.startsWith(from)).toBe(true);
    if (r.devices === 0) {
      // No driver or GPU on this machine: the CUDA request says why, 'auto' runs on the CPU.
      expect(r.reason).toMatch(/NVIDIA driver|no usable device|no CUDA device/);
      expect(r.error).toBe(`covpool: device 'cuda' was asked for, but ${r.reason}`);
    }
    const a = new Tensor(new Float64Array([4, 1, 1, 9]), [1, 2, 2]);
    const ref = Array.from(sqrtmSync(a, 'svd').output.data);
    r.cpu.forEach((v, i) => expect(v).toBeCloseTo(ref[i], 12));
  };

  test('named in COVPOOL_CUDA_LIB_DIRS: the CUDA binary loads and reports 0 devices and why', () => {
    expectLoadedWithoutGpu(child(probe, { COVPOOL_CUDA_LIB_DIRS: libDir }), libDir);
  });

  test('in a virtual environment with pip-installed nvidia wheels (site-packages/nvidia/cu13/lib)', () => {
    const venv = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-venv-'));
    const wheelLib = path.join(venv, 'lib', 'python3.12', 'site-packages', 'nvidia', 'cu13', 'lib');
    fs.mkdirSync(wheelLib, { recursive: true });
    for (const l of CUDA_LIBRARIES) fs.symlinkSync(fs.realpathSync(path.join(libDir, l)), path.join(wheelLib, l));
    try {
      expectLoadedWithoutGpu(child(probe, { VIRTUAL_ENV: venv }), wheelLib);
    } finally {
      fs.rmSync(venv, { recursive: true });
    }
  });
});
