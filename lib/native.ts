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
  backward(state: NativeState, dOut: NativeArray, async: boolean): NativeArray | Promise<NativeArray>;
  coefficients(values: Float64Array, B: number, C: number, options: object, replace: boolean, async: boolean): NativeArray | Promise<NativeArray>;
  stateInfo(state: NativeState): NativeStateInfo;
  disposeState(state: NativeState): void;
  resolveOptions(options: object, dtype: string, C: number): Record<string, unknown>;
  padeCoefficients(kind: 'geometric' | 'sqrt', degree: number): { p: number[]; q: number[] };
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
 * When none loads, the error names the cause (no binary for this platform, or one that does not load
 * here, e.g. on a glibc older than 2.28) and the exact command that builds from source, with its
 * prerequisites (scripts/build-from-source.js; the package has no install script).
 */
export function native(): NativeAddon {
  if (cached) return cached;
  const root = packageRoot();
  let file: string | undefined;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    file = process.env.COVPOOL_ADDON || (require('node-gyp-build').resolve(root) as string);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    cached = require(file) as NativeAddon;
  } catch (err) {
    const cause = (err as Error).message.split('\n')[0];
    const where = `${process.platform}-${process.arch}, Node ${process.version}`;
    const what = file
      ? `the native addon ${file} does not load here (${where}): ${cause}.` +
        (/GLIBC/.test(cause) ? ' This system\'s C library is older than the binary needs (glibc >= 2.28).' : '')
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
