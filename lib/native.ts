// Loads the compiled addon and describes its raw interface. Everything user-facing goes through
// the typed wrappers in ops.ts and layer.ts, which validate before anything reaches native code.

export type NativeArray = Float32Array | Float64Array;

/** Opaque handle of a backward state (a type-tagged N-API external). */
export type NativeState = { readonly __covpoolState: unique symbol };

/** Opaque handle of a device-resident tensor's memory (a type-tagged native object, like a state's). */
export type NativeDeviceTensor = { readonly __covpoolDeviceTensor: unique symbol };

/** The data an op takes and gives: a host array, or a device tensor's handle (kept where it is). */
export type NativeData = NativeArray | NativeDeviceTensor;

/** Opaque handle of a call's cancellation/progress control (a type-tagged N-API external). */
export type NativeControl = { readonly __covpoolControl: unique symbol };
type Ctl = NativeControl | undefined;

export interface NativeForwardResult {
  output: NativeData;
  state: NativeState;
}

export interface NativeStateInfo {
  disposed: boolean;
  kind?: 'layer' | 'sqrtm';
  id?: number;
  B?: number;
  C?: number;
  N?: number;
  dtype?: 'float32' | 'float64';
  device?: string;
  vectorize?: boolean;
  channelsLast?: boolean;
  bytes?: number;
  options?: Record<string, unknown>;
  /** States not yet freed in the whole process, and the native bytes they hold. */
  liveStates: number;
  liveBytes: number;
}

export interface NativeAddon {
  // Every op takes a control token (or undefined) just before its trailing async flag.
  // `device` (ops without a state): where host arrays run; device tensors run where they are.
  covpool(x: NativeData, B: number, C: number, N: number, channelsLast: boolean, device: string | undefined, control: Ctl, async: boolean): NativeData | Promise<NativeData>;
  covpoolBackward(x: NativeData, dA: NativeData, B: number, C: number, N: number, channelsLast: boolean, device: string | undefined, control: Ctl, async: boolean):
    | NativeData
    | Promise<NativeData>;
  triuvec(s: NativeData, B: number, C: number, device: string | undefined, control: Ctl, async: boolean): NativeData | Promise<NativeData>;
  triuvecBackward(dy: NativeData, B: number, C: number, device: string | undefined, control: Ctl, async: boolean): NativeData | Promise<NativeData>;
  eigh(a: NativeData, B: number, C: number, device: string | undefined, control: Ctl, async: boolean):
    | { values: NativeData; vectors: NativeData }
    | Promise<{ values: NativeData; vectors: NativeData }>;
  sqrtm(a: NativeData, B: number, C: number, options: object, control: Ctl, async: boolean): NativeForwardResult | Promise<NativeForwardResult>;
  layer(x: NativeData, B: number, C: number, N: number, options: object, vectorize: boolean, channelsLast: boolean, control: Ctl, async: boolean):
    | NativeForwardResult
    | Promise<NativeForwardResult>;
  backward(state: NativeState, dOut: NativeData, release: boolean, control: Ctl, async: boolean): NativeData | Promise<NativeData>;
  coefficients(values: Float64Array | NativeDeviceTensor, B: number, C: number, options: object, replace: boolean, control: Ctl, async: boolean): NativeData | Promise<NativeData>;
  stateInfo(state: NativeState): NativeStateInfo;
  disposeState(state: NativeState): void;
  resolveOptions(options: object, dtype: string, C: number): Record<string, unknown>;
  padeCoefficients(kind: 'geometric' | 'sqrt', degree: number): { p: number[]; q: number[] };
  /** Frees the states whose JS values the garbage collector has collected. */
  sweepStates(): void;
  /** The memory budget of one call in bytes; sets it first when given. */
  maxBytes(set?: number): number;
  info(): {
    backend: string;
    threads: number;
    methods: string[];
    cuda: boolean;
    cudaDevices: number;
    cudaReason?: string;
    /** Only in the test build against the emulated CUDA device (native/cuda/test/emulator). */
    cudaEmulated?: boolean;
    cudaEmulator?: CudaEmulatorReport;
  };
  /** A copy of a host array on `device` ('cuda:N'), as a device tensor handle. */
  toDevice(data: NativeArray, device: string, control: Ctl, async: boolean): NativeDeviceTensor | Promise<NativeDeviceTensor>;
  /** A host copy of a device tensor. */
  toHost(handle: NativeDeviceTensor, control: Ctl, async: boolean): NativeArray | Promise<NativeArray>;
  /** Frees a device tensor's memory now. */
  disposeDevice(handle: NativeDeviceTensor): void;
  /** Emulated test build only: sets (or clears, value undefined) a COVPOOL_* environment variable natively. */
  emulatorSetEnv?(name: string, value?: string): void;
  /** dlopen(path, RTLD_NOW | RTLD_GLOBAL): null on success, else the loader's error (lib/cuda.ts). */
  preloadLibrary?(path: string): string | null;
  createControl(onProgress?: (done: number, total: number) => void): NativeControl;
  cancelControl(control: NativeControl): void;
  releaseControl(control: NativeControl): void;
  memoryStats(): {
    host: { allocatedBytes: number; peakAllocatedBytes: number; cachedBytes: number; cacheLimitBytes: number; scratchBytes: number; resultArrayBytes: number };
    devices: { device: string; allocatedBytes: number; cachedBytes: number }[];
  };
  emptyCache(): number;
}

import { CudaStatus, loadCuda, loadedCudaAddon } from './cuda';
import { glibcAdvice } from './prebuilds';

/** What the emulated CUDA device saw (test builds only: native/cuda/test/emulator). */
export interface CudaEmulatorReport {
  violations: number;
  messages: string[];
  liveDeviceBlocks: number;
  liveDeviceBytes: number;
  livePinnedBlocks: number;
  livePinnedBytes: number;
  kernelLaunches: number;
  blocksRun: number;
  libraryCalls: number;
}

let cached: NativeAddon | undefined;
let cachedPath: string | undefined;

/** The package root: the nearest folder above this file whose package.json is covpool's. */
function packageRoot(): string {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const path = require('path') as typeof import('path');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const fs = require('fs') as typeof import('fs');
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if (JSON.parse(fs.readFileSync(pkg, 'utf8')).name === 'covpool') return dir;
      } catch {
        /* not ours: keep walking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('covpool: cannot find the package root above ' + __dirname);
    dir = up;
  }
}

/**
 * Whether covpool runs from a source checkout (the repository, with its TypeScript sources and
 * dev tools) rather than from an installed package: the advice in errors differs.
 */
function isSourceCheckout(root: string): boolean {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const fs = require('fs') as typeof import('fs');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const path = require('path') as typeof import('path');
  return fs.existsSync(path.join(root, 'tsconfig.json')) && fs.existsSync(path.join(root, 'lib', 'index.ts'));
}

/** How to build the addon with the CUDA backend, from where this copy of covpool (`root`) is. */
export function cudaBuildAdvice(root?: string): string {
  const req = 'on a machine with the CUDA toolkit (nvcc, cuBLAS, cuSOLVER; CUDA >= 12.6) and CMake';
  if (root === undefined) {
    try {
      root = packageRoot();
    } catch {
      return `rebuild covpool from source with cmake-js ${req}`;
    }
  }
  if (isSourceCheckout(root)) return `rebuild it with \`npm run build:cmake\` in ${root} ${req}`;
  return `rebuild it from source ${req}: \`cd ${root} && npx cmake-js rebuild\` (the installed package carries the sources and CMakeLists.txt; npx fetches cmake-js)`;
}

/**
 * Runs a native call, completing the advice of errors whose fix depends on where covpool is
 * installed (native code cannot tell a source checkout from an installed package).
 */
export function explainNativeError<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    const e = err as Error;
    if (e && typeof e.message === 'string' && e.message.includes('built without the CUDA backend')) e.message += '; ' + cudaBuildAdvice();
    throw e;
  }
}

/**
 * Loads the addon: COVPOOL_ADDON (an explicit path) if set, else what node-gyp-build finds — a
 * local build (build/Release) first, then the prebuilt binary shipped in prebuilds/<platform>-<arch>.
 * When none loads, the error names the cause (no binary for this platform, or one that does not load
 * here, e.g. on a glibc older than the one prebuilds/build.json records: 2.28 for the published
 * package) and the exact command that builds from source, with its
 * prerequisites (scripts/build-from-source.js; the package has no install script).
 */
export function native(): NativeAddon {
  if (cached) return cached;
  const root = packageRoot();
  let file: string | undefined;
  try {
    const explicit = process.env.COVPOOL_ADDON;
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    file = explicit || (require('node-gyp-build').resolve(root) as string);
    if (explicit) file = require.resolve(explicit);
    cachedPath = file;
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    cached = require(file) as NativeAddon;
  } catch (err) {
    const cause = (err as Error).message.split('\n')[0];
    const where = `${process.platform}-${process.arch}, Node ${process.version}`;
    const what = file
      ? `the native addon ${file} does not load here (${where}): ${cause}.` + glibcAdvice(root, cause)
      : `no prebuilt binary matches this platform (${where}) and there is no local build.`;
    let help = 'Build it from source with `npx covpool-build`.';
    try {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      help = require(require('path').join(root, 'scripts', 'build-from-source.js')).sourceBuildHelp();
    } catch {
      /* keep the short form */
    }
    const e = new Error(`covpool: ${what} ${help}`);
    (e as Error & { cause?: unknown }).cause = err;
    throw e;
  }
  return cached;
}

/** The path of the binary native() loaded. */
export function nativePath(): string {
  native();
  return cachedPath as string;
}

/**
 * Whether CUDA can be used and through which binary. The binary native() loaded serves CUDA
 * itself when it was built with the CUDA backend (COVPOOL_ADDON pointing at a CUDA build);
 * otherwise the package's CUDA-enabled binary is loaded on first use (lib/cuda.ts).
 */
export function cuda(): { status: CudaStatus; addon?: NativeAddon } {
  const cpu = native();
  const own = cpu.info();
  if (own.cuda) {
    const st: CudaStatus = {
      binary: nativePath(),
      loaded: true,
      devices: own.cudaDevices,
      reason: own.cudaDevices > 0 ? '' : own.cudaReason ?? '',
      libraries: {},
      searched: [],
      emulated: own.cudaEmulated === true,
    };
    return { status: st, addon: cpu };
  }
  return loadCuda(cpu, packageRoot());
}

/** The binary that runs ops on `device`: the CPU binary for 'cpu', the CUDA-enabled one for CUDA. */
export function addonFor(device: unknown): NativeAddon {
  if (device === undefined || device === null || device === 'cpu') return native();
  if (device === 'auto') {
    const c = cuda();
    return c.addon && c.status.devices > 0 ? c.addon : native();
  }
  if (typeof device !== 'string') return native(); // validated (with its message) in methods.ts / natively
  const c = cuda();
  if (!c.addon) {
    const advice = c.status.binary ? '' : '; ' + cudaBuildAdvice();
    const e = new Error(`covpool: device '${device}' was asked for, but ${c.status.reason}${advice}`);
    (e as Error & { code?: string }).code = 'ERR_COVPOOL';
    throw e;
  }
  return c.addon; // it reports a missing driver or device itself, with the reason
}

/** Every binary loaded so far (the CPU one, and the CUDA-enabled one once it is); loads nothing new. */
export function loadedAddons(): NativeAddon[] {
  const all = [native()];
  const c = loadedCudaAddon<NativeAddon>();
  if (c && c !== all[0]) all.push(c);
  return all;
}
