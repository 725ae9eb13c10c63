// Loads the compiled addon and describes its raw interface. Everything user-facing goes through
// the typed wrappers in ops.ts and layer.ts, which validate before anything reaches native code.

export type NativeArray = Float32Array | Float64Array;

/** Opaque handle of a backward state (a type-tagged N-API external). */
export type NativeState = { readonly __covpoolState: unique symbol };

export interface NativeForwardResult {
  output: NativeArray;
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
  bytes?: number;
  options?: Record<string, unknown>;
  /** States not yet freed in the whole process, and the native bytes they hold. */
  liveStates: number;
  liveBytes: number;
}

export interface NativeAddon {
  covpool(x: NativeArray, B: number, C: number, N: number, async: boolean): NativeArray | Promise<NativeArray>;
  covpoolBackward(x: NativeArray, dA: NativeArray, B: number, C: number, N: number, async: boolean): NativeArray | Promise<NativeArray>;
  triuvec(s: NativeArray, B: number, C: number, async: boolean): NativeArray | Promise<NativeArray>;
  triuvecBackward(dy: NativeArray, B: number, C: number, async: boolean): NativeArray | Promise<NativeArray>;
  eigh(a: NativeArray, B: number, C: number, async: boolean):
    | { values: NativeArray; vectors: NativeArray }
    | Promise<{ values: NativeArray; vectors: NativeArray }>;
  sqrtm(a: NativeArray, B: number, C: number, options: object, async: boolean): NativeForwardResult | Promise<NativeForwardResult>;
  layer(x: NativeArray, B: number, C: number, N: number, options: object, vectorize: boolean, async: boolean):
    | NativeForwardResult
    | Promise<NativeForwardResult>;
  backward(state: NativeState, dOut: NativeArray, release: boolean, async: boolean): NativeArray | Promise<NativeArray>;
  coefficients(values: Float64Array, B: number, C: number, options: object, replace: boolean, async: boolean): NativeArray | Promise<NativeArray>;
  stateInfo(state: NativeState): NativeStateInfo;
  disposeState(state: NativeState): void;
  resolveOptions(options: object, dtype: string, C: number): Record<string, unknown>;
  padeCoefficients(kind: 'geometric' | 'sqrt', degree: number): { p: number[]; q: number[] };
  /** Frees the states whose JS values the garbage collector has collected. */
  sweepStates(): void;
  /** The memory budget of one call in bytes; sets it first when given. */
  maxBytes(set?: number): number;
  info(): { backend: string; threads: number; methods: string[]; cuda: boolean; cudaDevices: number };
}

let cached: NativeAddon | undefined;

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
 * Loads the addon: COVPOOL_ADDON (an explicit path) if set, else what node-gyp-build finds — a
 * local build (build/Release) first, then the prebuilt binary shipped in prebuilds/<platform>-<arch>.
 */
export function native(): NativeAddon {
  if (cached) return cached;
  try {
    const explicit = process.env.COVPOOL_ADDON;
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    cached = (explicit ? require(explicit) : require('node-gyp-build')(packageRoot())) as NativeAddon;
  } catch (err) {
    const e = new Error(
      `covpool: the native addon could not be loaded (${process.platform}-${process.arch}, Node ${process.version}). ` +
        'No prebuilt binary matches this platform and no local build was found. Build it from source with ' +
        '`npm run build:native` in the covpool package folder; that needs a C++ toolchain (g++, make, python3) and ' +
        'the OpenBLAS/LAPACKE development files (Debian/Ubuntu: `apt-get install build-essential libopenblas-dev liblapacke-dev`). ' +
        'Cause: ' + (err as Error).message,
    );
    (e as Error & { cause?: unknown }).cause = err;
    throw e;
  }
  return cached;
}
