// The CUDA-enabled binary, loaded only when a CUDA device is asked for (or backendInfo() asks).
//
// The package ships two builds of the same sources: the CPU binary (loaded by native(), needs
// nothing but the C runtime) and, for linux-x64, a CUDA-enabled one (CPU and CUDA backends, static
// CUDA runtime, kernels for sm_80 and sm_90 plus PTX). The CUDA binary depends on cuBLAS and
// cuSOLVER, which NVIDIA installs in places the dynamic loader does not search by itself
// (CUDA_HOME, /usr/local/cuda, the lib folders of pip-installed nvidia wheels). So this module
// finds each library, pre-loads it with the CPU binary's preloadLibrary (dlopen, RTLD_GLOBAL), in
// dependency order, and only then requires the CUDA binary, whose dependencies are then satisfied.
// Where a library is missing, nothing is loaded, the CPU path is untouched, and a CUDA request gets
// an error naming the library and every folder searched.
//
// It does not depend on native.ts: native.ts calls it with the CPU binary and gets the CUDA binary
// back, typed as the CPU one (both are builds of the same addon).
import { glibcAdvice } from './prebuilds';

/** What this module uses of a binary: the CPU one's preloadLibrary, and both ones' budget and info. */
export interface CudaLoaderAddon {
  /** dlopen(path, RTLD_NOW | RTLD_GLOBAL): null on success, else the loader's error. */
  preloadLibrary?(path: string): string | null;
  /** The memory budget of one call in bytes; sets it first when given. */
  maxBytes(set?: number): number;
  info(): { cudaDevices: number; cudaReason?: string };
}

/** What the loader found; backendInfo() reports it. */
export interface CudaStatus {
  /** The CUDA-enabled binary for this platform (null: this installation has none). */
  binary: string | null;
  /** Whether it is loaded (its cuBLAS/cuSOLVER dependencies were found). */
  loaded: boolean;
  /** CUDA devices it sees (0 without a driver or GPU). */
  devices: number;
  /** Why CUDA cannot be used ('' when a device can). */
  reason: string;
  /** The library files pre-loaded, by soname ('system' when the loader's own search found it). */
  libraries: Record<string, string>;
  /** The folders searched for them. */
  searched: string[];
  /**
   * True only for the test build of the CUDA backend on the emulated device (a CPU stand-in that
   * checks the backend's logic; native/cuda/test/emulator), loaded through COVPOOL_ADDON. The
   * package never ships it.
   */
  emulated?: boolean;
}

/** What the CUDA binary needs, in dependency order (each needs only earlier ones). */
export const CUDA_LIBRARIES = ['libnvJitLink.so.13', 'libcusparse.so.12', 'libcublasLt.so.13', 'libcublas.so.13', 'libcusolver.so.12'];

type Preloader = (path: string) => string | null;

/** Folders that may hold cuBLAS/cuSOLVER, most specific first. */
export function candidateDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const fs = require('fs') as typeof import('fs');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const path = require('path') as typeof import('path');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const os = require('os') as typeof import('os');
  const dirs: string[] = [];
  const split = (v?: string) => (v ? v.split(':').filter(Boolean) : []);
  dirs.push(...split(env.COVPOOL_CUDA_LIB_DIRS), ...split(env.LD_LIBRARY_PATH));
  const toolkitLibs = (root: string) => [path.join(root, 'lib64'), path.join(root, 'targets', 'x86_64-linux', 'lib'), path.join(root, 'lib')];
  for (const root of [env.CUDA_HOME, env.CUDA_PATH, '/usr/local/cuda']) if (root) dirs.push(...toolkitLibs(root));
  // pip-installed nvidia wheels: site-packages/nvidia/cu13/lib (CUDA 13 wheels) or
  // site-packages/nvidia/<library>/lib (earlier layout), in virtual envs, conda, the user's and
  // the system's Python.
  const prefixes = [env.VIRTUAL_ENV, env.CONDA_PREFIX, path.join(os.homedir(), '.local'), '/usr/local', '/usr'].filter(Boolean) as string[];
  const sites: string[] = [...split(env.PYTHONPATH)];
  for (const prefix of prefixes) {
    const lib = path.join(prefix, 'lib');
    let entries: string[] = [];
    try {
      entries = fs.readdirSync(lib).filter((e) => /^python3(\.\d+)?$/.test(e));
    } catch {
      continue;
    }
    for (const e of entries.sort().reverse()) sites.push(path.join(lib, e, 'site-packages'), path.join(lib, e, 'dist-packages'));
  }
  for (const site of sites)
    for (const sub of ['cu13', 'cublas', 'cusolver', 'cusparse', 'nvjitlink']) dirs.push(path.join(site, 'nvidia', sub, 'lib'));
  return [...new Set(dirs)];
}

/**
 * Pre-loads every library of CUDA_LIBRARIES: first by soname (the loader's own search:
 * LD_LIBRARY_PATH, ld.so.cache), then from each candidate folder. Returns the missing one, if any.
 */
export function preloadCudaLibraries(preload: Preloader, dirs: string[]): { libraries: Record<string, string>; missing?: string; errors: string[] } {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const fs = require('fs') as typeof import('fs');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const path = require('path') as typeof import('path');
  const libraries: Record<string, string> = {};
  const errors: string[] = [];
  for (const soname of CUDA_LIBRARIES) {
    if (preload(soname) === null) {
      libraries[soname] = 'system';
      continue;
    }
    for (const dir of dirs) {
      const file = path.join(dir, soname);
      if (!fs.existsSync(file)) continue;
      const err = preload(file);
      if (err === null) {
        libraries[soname] = file;
        break;
      }
      errors.push(err);
    }
    if (!libraries[soname]) return { libraries, missing: soname, errors };
  }
  return { libraries, errors };
}

/** The CUDA binary: COVPOOL_CUDA_ADDON, a local CMake build, or the one shipped in prebuilds/. */
export function cudaBinaryPath(root: string, env: NodeJS.ProcessEnv = process.env): string | null {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const fs = require('fs') as typeof import('fs');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const path = require('path') as typeof import('path');
  if (env.COVPOOL_CUDA_ADDON) return path.resolve(env.COVPOOL_CUDA_ADDON);
  for (const f of [
    path.join(root, 'build-cmake', 'cuda', 'Release', 'covpool.node'),
    path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'cuda', 'covpool-cuda.node'),
  ])
    if (fs.existsSync(f)) return f;
  return null;
}

let status: CudaStatus | undefined;
let addon: CudaLoaderAddon | undefined;

/**
 * Loads the CUDA binary once (later calls return the first outcome). `cpu` is the CPU binary,
 * which provides preloadLibrary; `root` the package root. The CUDA binary is returned with the
 * CPU binary's type A: it is a build of the same addon.
 */
export function loadCuda<A extends CudaLoaderAddon>(cpu: A, root: string): { status: CudaStatus; addon?: A } {
  if (status) return { status, addon: addon as A | undefined };
  const binary = cudaBinaryPath(root);
  const searched = candidateDirs();
  const st: CudaStatus = { binary, loaded: false, devices: 0, reason: '', libraries: {}, searched };
  status = st;
  if (!binary) {
    st.reason = `this covpool installation has no CUDA-enabled binary for ${process.platform}-${process.arch}: it was built without the CUDA backend (the package ships one for linux-x64)`;
    return { status: st };
  }
  if (typeof cpu.preloadLibrary !== 'function') {
    st.reason = 'the CPU binary in use cannot pre-load libraries (rebuild it: npm run build:native)';
    return { status: st };
  }
  const pre = preloadCudaLibraries(cpu.preloadLibrary, searched);
  st.libraries = pre.libraries;
  if (pre.missing) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const fs = require('fs') as typeof import('fs');
    const existing = searched.filter((d) => fs.existsSync(d));
    st.reason =
      `the CUDA library ${pre.missing} (cuBLAS/cuSOLVER for CUDA 13) was not found. Looked in: the system library path ` +
      '(LD_LIBRARY_PATH, ld.so.cache); COVPOOL_CUDA_LIB_DIRS; lib64, targets/x86_64-linux/lib and lib of CUDA_HOME, CUDA_PATH and ' +
      '/usr/local/cuda; site-packages/nvidia/{cu13,cublas,cusolver,cusparse,nvjitlink}/lib of the Pythons in VIRTUAL_ENV, ' +
      `CONDA_PREFIX, ~/.local, /usr/local and /usr (of these folders, present here: ${existing.length ? existing.join(', ') : 'none'})` +
      (pre.errors.length ? `. Loader errors: ${pre.errors.join('; ')}` : '') +
      '. Install the CUDA 13 toolkit (and set CUDA_HOME) or `pip install nvidia-cublas nvidia-cusolver`, or name their folder in COVPOOL_CUDA_LIB_DIRS';
    return { status: st };
  }
  let loaded: A;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    loaded = require(binary) as A;
  } catch (e) {
    const cause = (e as Error).message.split('\n')[0];
    const advice = glibcAdvice(root, cause);
    st.reason = `the CUDA-enabled binary ${binary} does not load: ${cause}` + (advice ? '.' + advice : '');
    return { status: st };
  }
  addon = loaded;
  st.loaded = true;
  loaded.maxBytes(cpu.maxBytes()); // one memory budget for both binaries (setMaxBytes sets both)
  const info = loaded.info();
  st.devices = info.cudaDevices;
  st.reason = info.cudaDevices > 0 ? '' : info.cudaReason ?? 'no CUDA device is visible';
  return { status: st, addon: loaded };
}

/** The CUDA-enabled binary if loadCuda() loaded it already (never loads it), typed as the caller's binary type. */
export function loadedCudaAddon<A extends CudaLoaderAddon>(): A | undefined {
  return addon as A | undefined;
}
