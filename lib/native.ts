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
  info(): { backend: string; threads: number; methods: string[] };
}

let cached: NativeAddon | undefined;

export function native(): NativeAddon {
  if (cached) return cached;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    cached = require('bindings')('covpool') as NativeAddon;
  } catch (err) {
    const e = new Error(
      'covpool: the native addon could not be loaded. Build it with `npm run build:native` ' +
        '(needs a C++ toolchain and the OpenBLAS/LAPACKE development files, on Debian/Ubuntu: ' +
        '`apt-get install libopenblas-dev liblapacke-dev`). Cause: ' + (err as Error).message,
    );
    (e as Error & { cause?: unknown }).cause = err;
    throw e;
  }
  return cached;
}
