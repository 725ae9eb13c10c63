// The batched ops, each as a promise-returning call (computed on the libuv thread pool, never on
// the event loop) and a `...Sync` twin for scripts. Shapes are checked here so that errors name
// the expected and the received shape; the native side re-checks everything it is given.
import { MethodSpec, toMethodOptions } from './methods';
import { NativeArray, NativeState, native } from './native';
import { DType, FloatArray, Tensor, TensorInput, formatValue, isDetached, shapeString } from './tensor';

/** Resolved options, as the native registry filled them in (every default explicit). */
export type ResolvedOptions = Record<string, unknown> & { method: string; precision: DType; normalization: string };

/** Options of a backward call. */
export interface BackwardOptions {
  /**
   * Keep the state for another backward (default false: like PyTorch's `retain_graph`, a backward
   * frees the state it used, so a training loop that never calls `dispose()` stays flat).
   */
  retainState?: boolean;
}

// States made by a forward call here; anything else (a copy, `Object.create(BackwardState.prototype)`)
// is refused by name instead of failing somewhere inside.
const genuine = new WeakSet<object>();
// Why a state is gone, for the message of a later backward.
const freedByBackward = new WeakSet<object>();
let liveStateWarning = false;

// The native side frees a collected state's memory at the next forward (so synchronous loops stay
// bounded); this frees it in programs that make no further forward, once the event loop turns.
let sweepQueued = false;
const collected = new FinalizationRegistry<number>(() => {
  if (sweepQueued) return;
  sweepQueued = true;
  setImmediate(() => {
    sweepQueued = false;
    native().sweepStates();
  }).unref();
});

function requireGenuine(state: unknown): asserts state is BackwardState {
  if (state instanceof BackwardState && genuine.has(state)) return;
  throw new TypeError(
    'covpool: state must be the `state` returned by the matching forward call (layer.forward or sqrtm), got ' +
      (state instanceof BackwardState ? 'a BackwardState that no forward call made (a copy, or Object.create(BackwardState.prototype))' : formatValue(state)),
  );
}

/**
 * What a backward pass needs from its forward pass, in native memory. A backward frees it unless
 * asked to keep it (`{ retainState: true }`); `dispose()` frees it at once; a state the program
 * drops is freed once the garbage collector finds it unreachable.
 */
export class BackwardState {
  /** @internal */
  readonly handle: NativeState;
  readonly kind: 'layer' | 'sqrtm';
  readonly dtype: DType;
  /** The backend the forward ran on (and its backward runs on): 'cpu' or a CUDA device. */
  readonly device: string;
  readonly inputShape: readonly number[];
  readonly outputShape: readonly number[];
  readonly options: ResolvedOptions;

  /** @internal */
  constructor(handle: NativeState, kind: 'layer' | 'sqrtm', inputShape: readonly number[], outputShape: readonly number[]) {
    this.handle = handle;
    const info = native().stateInfo(handle);
    this.kind = kind;
    this.dtype = info.dtype as DType;
    this.device = info.device as string;
    this.options = info.options as ResolvedOptions;
    this.inputShape = Object.freeze(inputShape.slice());
    this.outputShape = Object.freeze(outputShape.slice());
    genuine.add(this);
    collected.register(this, 0);
    warnOnLiveStates(info.liveStates, info.liveBytes);
  }
  /** Native bytes held (0 once disposed). */
  get bytes(): number {
    requireGenuine(this);
    const i = native().stateInfo(this.handle);
    return i.disposed ? 0 : (i.bytes as number);
  }
  get disposed(): boolean {
    requireGenuine(this);
    return native().stateInfo(this.handle).disposed;
  }
  dispose(): void {
    requireGenuine(this);
    native().disposeState(this.handle);
  }
}

// One warning per process when the states alive hold a quarter of the memory budget: the usual
// cause is a loop that keeps every state (retainState without dispose, or forwards whose backward
// never runs, kept in an array).
function warnOnLiveStates(count: number, bytes: number): void {
  if (liveStateWarning || !(bytes > native().maxBytes() / 4)) return;
  liveStateWarning = true;
  process.emitWarning(
    `covpool: ${count} backward states are alive, holding ${(bytes / 1e6).toFixed(0)} MB of native memory ` +
      `(a quarter of the per-call memory budget). A backward frees its state unless called with { retainState: true }; ` +
      'call state.dispose() on states that will not be used, and do not keep states you are done with in arrays.',
    { code: 'COVPOOL_LIVE_STATES' },
  );
}

export interface ForwardResult {
  output: Tensor;
  state: BackwardState;
}

// ---- shape helpers --------------------------------------------------------------------------

function live(t: Tensor, what: string): FloatArray {
  if (isDetached(t.data)) throw new TypeError(`covpool: ${what}: its ArrayBuffer was detached (transferred) after the tensor was made`);
  return t.data;
}

/** Features [B, C, N] or [B, C, H, W] -> dims with N = H W. */
export function featureDims(shape: readonly number[], what = 'features'): { B: number; C: number; N: number } {
  if (shape.length === 3) return { B: shape[0], C: shape[1], N: shape[2] };
  if (shape.length === 4) return { B: shape[0], C: shape[1], N: shape[2] * shape[3] };
  throw new RangeError(`covpool: ${what} must have shape [B, C, N] or [B, C, H, W], got ${shapeString(shape)} (rank ${shape.length})`);
}

function matrixDims(a: Tensor, what: string): { B: number; C: number } {
  if (a.rank !== 3 || a.shape[1] !== a.shape[2])
    throw new RangeError(`covpool: ${what} must have shape [B, C, C] (a batch of square matrices), got ${shapeString(a.shape)}`);
  return { B: a.shape[0], C: a.shape[1] };
}

function expectShape(t: Tensor, shape: readonly number[], what: string): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    throw new RangeError(`covpool: ${what} must have shape ${shapeString(shape)}, got ${shapeString(t.shape)}`);
}

function expectDType(t: Tensor, dtype: DType, what: string): void {
  if (t.dtype !== dtype) throw new TypeError(`covpool: ${what} must be ${dtype} (the dtype of the forward input), got ${t.dtype}`);
}

export function triangleSize(C: number): number {
  if (!Number.isSafeInteger(C) || C < 0) throw new RangeError(`covpool: C must be a non-negative integer, got ${formatValue(C)}`);
  return (C * (C + 1)) / 2;
}

/** Runs an async op so that argument errors reject the promise instead of throwing. */
export function promised<T>(f: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(f());
  } catch (e) {
    return Promise.reject(e);
  }
}

function then<A, B>(v: A | Promise<A>, async: boolean, f: (a: A) => B): B | Promise<B> {
  return async ? (v as Promise<A>).then(f) : f(v as A);
}

// ---- covariance pooling ---------------------------------------------------------------------

function covpoolImpl(xIn: TensorInput, async: boolean) {
  const x = Tensor.from(xIn);
  const { B, C, N } = featureDims(x.shape);
  return then(native().covpool(live(x, 'features'), B, C, N, async), async, (a) => new Tensor(a, [B, C, C]));
}
/** Covariance pooling: features [B, C, N] or [B, C, H, W] -> A = Xc Xc^T / N, [B, C, C]. */
export const covpool = (x: TensorInput): Promise<Tensor> => promised(() => covpoolImpl(x, true) as Promise<Tensor>);
export const covpoolSync = (x: TensorInput): Tensor => covpoolImpl(x, false) as Tensor;

function covpoolBackwardImpl(xIn: TensorInput, dAIn: TensorInput, async: boolean) {
  const x = Tensor.from(xIn);
  const dA = Tensor.from(dAIn);
  const { B, C, N } = featureDims(x.shape);
  expectShape(dA, [B, C, C], 'covariance gradient');
  expectDType(dA, x.dtype, 'covariance gradient');
  return then(native().covpoolBackward(live(x, 'features'), live(dA, 'covariance gradient'), B, C, N, async), async, (g) => new Tensor(g, x.shape));
}
/** Gradient of covpool w.r.t. the features, given dL/dA. */
export const covpoolBackward = (x: TensorInput, dA: TensorInput): Promise<Tensor> => promised(() => covpoolBackwardImpl(x, dA, true) as Promise<Tensor>);
export const covpoolBackwardSync = (x: TensorInput, dA: TensorInput): Tensor => covpoolBackwardImpl(x, dA, false) as Tensor;

// ---- triangular vectorization ---------------------------------------------------------------

function triuvecImpl(sIn: TensorInput, async: boolean) {
  const s = Tensor.from(sIn);
  const { B, C } = matrixDims(s, 'matrices');
  return then(native().triuvec(live(s, 'matrices'), B, C, async), async, (y) => new Tensor(y, [B, triangleSize(C)]));
}
/** Upper triangle, row by row, diagonal included: [B, C, C] -> [B, C(C+1)/2]. */
export const triuvec = (s: TensorInput): Promise<Tensor> => promised(() => triuvecImpl(s, true) as Promise<Tensor>);
export const triuvecSync = (s: TensorInput): Tensor => triuvecImpl(s, false) as Tensor;

function triuvecBackwardImpl(dyIn: TensorInput, C: number, async: boolean) {
  const dy = Tensor.from(dyIn);
  if (!Number.isInteger(C) || C < 1) throw new RangeError(`covpool: C must be a positive integer, got ${formatValue(C)}`);
  if (dy.rank !== 2 || dy.shape[1] !== triangleSize(C))
    throw new RangeError(`covpool: gradient must have shape [B, ${triangleSize(C)}] for C = ${C}, got ${shapeString(dy.shape)}`);
  const B = dy.shape[0];
  return then(native().triuvecBackward(live(dy, 'gradient'), B, C, async), async, (g) => new Tensor(g, [B, C, C]));
}
/** Gradient of triuvec: [B, C(C+1)/2] -> [B, C, C] (upper triangle, zeros below). */
export const triuvecBackward = (dy: TensorInput, C: number): Promise<Tensor> => promised(() => triuvecBackwardImpl(dy, C, true) as Promise<Tensor>);
export const triuvecBackwardSync = (dy: TensorInput, C: number): Tensor => triuvecBackwardImpl(dy, C, false) as Tensor;

// ---- eigendecomposition ---------------------------------------------------------------------

export interface Eigh {
  /** Eigenvalues, ascending, [B, C]. */
  values: Tensor;
  /** Eigenvectors as columns, [B, C, C]: A = V diag(values) V^T. */
  vectors: Tensor;
}
function eighImpl(aIn: TensorInput, async: boolean) {
  const a = Tensor.from(aIn);
  const { B, C } = matrixDims(a, 'matrices');
  return then(native().eigh(live(a, 'matrices'), B, C, async), async, (r) => ({
    values: new Tensor(r.values, [B, C]),
    vectors: new Tensor(r.vectors, [B, C, C]),
  }));
}
/** Batched symmetric eigendecomposition (LAPACK syevd), in the input dtype. */
export const eigh = (a: TensorInput): Promise<Eigh> => promised(() => eighImpl(a, true) as Promise<Eigh>);
export const eighSync = (a: TensorInput): Eigh => eighImpl(a, false) as Eigh;

// ---- matrix square root ---------------------------------------------------------------------

function sqrtmImpl(aIn: TensorInput, spec: MethodSpec, async: boolean) {
  const a = Tensor.from(aIn);
  const { B, C } = matrixDims(a, 'matrices');
  const opts = toMethodOptions(spec);
  return then(native().sqrtm(live(a, 'matrices'), B, C, opts, async), async, (r) => ({
    output: new Tensor(r.output, [B, C, C]),
    state: new BackwardState(r.state, 'sqrtm', [B, C, C], [B, C, C]),
  }));
}
/** Matrix square root of symmetric PSD matrices [B, C, C] by the given method. */
export const sqrtm = (a: TensorInput, method: MethodSpec): Promise<ForwardResult> => promised(() => sqrtmImpl(a, method, true) as Promise<ForwardResult>);
export const sqrtmSync = (a: TensorInput, method: MethodSpec): ForwardResult => sqrtmImpl(a, method, false) as ForwardResult;

/** @internal Checks the `checkState` argument is a genuine state (for the layer's own check). */
export function isGenuineState(state: unknown): boolean {
  return state instanceof BackwardState && genuine.has(state);
}

function retainOption(options: BackwardOptions | undefined): boolean {
  if (options === undefined) return false;
  if (options === null || typeof options !== 'object') throw new TypeError(`covpool: backward options must be an object, got ${formatValue(options)}`);
  for (const key of Object.keys(options))
    if (key !== 'retainState') throw new RangeError(`covpool: unknown backward option '${key}' (its options: retainState)`);
  const r = options.retainState;
  if (r !== undefined && typeof r !== 'boolean') throw new TypeError(`covpool: option 'retainState' must be a boolean, got ${formatValue(r)}`);
  return r === true;
}

/** @internal Shared by sqrtmBackward and the layer: checks state and gradient, then runs backward. */
export function backwardImpl(state: BackwardState, dyIn: TensorInput, kind: 'layer' | 'sqrtm', async: boolean, options?: BackwardOptions) {
  requireGenuine(state);
  if (state.kind !== kind)
    throw new TypeError(`covpool: this state comes from a ${state.kind === 'layer' ? 'layer forward' : 'sqrtm'} call, not from ${kind === 'layer' ? 'a layer forward' : 'sqrtm'}`);
  const retain = retainOption(options);
  if (state.disposed)
    throw new Error(
      freedByBackward.has(state)
        ? 'covpool: the state was freed by the backward that used it; pass { retainState: true } to that backward to run several backwards from one forward'
        : 'covpool: the state was disposed; run the forward pass again',
    );
  const dy = Tensor.from(dyIn);
  expectShape(dy, state.outputShape, 'output gradient');
  expectDType(dy, state.dtype, 'output gradient');
  const shape = state.inputShape;
  const r = native().backward(state.handle, live(dy, 'output gradient'), !retain, async);
  if (!retain) freedByBackward.add(state);
  return then(r, async, (g: NativeArray) => new Tensor(g, shape));
}
/**
 * Gradient w.r.t. the input matrices (symmetric representative), given dL/dS. Frees the state
 * unless `{ retainState: true }`.
 */
export const sqrtmBackward = (state: BackwardState, dS: TensorInput, options?: BackwardOptions): Promise<Tensor> =>
  promised(() => backwardImpl(state, dS, 'sqrtm', true, options) as Promise<Tensor>);
export const sqrtmBackwardSync = (state: BackwardState, dS: TensorInput, options?: BackwardOptions): Tensor =>
  backwardImpl(state, dS, 'sqrtm', false, options) as Tensor;

/**
 * Analysis helper: the backward coefficient matrix an eigen-based method builds from ascending
 * eigenvalues [B, C] (float64): F_ij = coefficient of u_i in du_j (1/(l_j - l_i) exactly), or
 * C_ij = 1/(sqrt l_i + sqrt l_j) for svd-lyap. `replace: false` shows it before the per-matrix
 * replacement of non-finite entries (svd, svd-topn, svd-pade). Sync: small matrices only.
 */
export function backwardCoefficientsSync(values: TensorInput, method: MethodSpec, replace = true): Tensor {
  const l = Tensor.from(values, 'float64');
  if (l.rank !== 2) throw new RangeError(`covpool: eigenvalues must have shape [B, C], got ${shapeString(l.shape)}`);
  const [B, C] = l.shape;
  const f = native().coefficients(live(l, 'eigenvalues') as Float64Array, B, C, toMethodOptions(method), replace, false) as NativeArray;
  return new Tensor(f, [B, C, C]);
}

/** The options a method runs with, defaults filled in, for inputs of the given dtype and size C. */
export function resolveOptions(spec: MethodSpec, dtype: DType = 'float32', C = 256): ResolvedOptions {
  return native().resolveOptions(toMethodOptions(spec), dtype, C) as ResolvedOptions;
}

/** The Pade coefficients the library derives: 'geometric' ([L/L] of 1/(1-r), svd-pade) or 'sqrt' ([m/m] of sqrt(1-z), mpa-lya). */
export function padeCoefficients(kind: 'geometric' | 'sqrt', degree: number): { p: number[]; q: number[] } {
  if (kind !== 'geometric' && kind !== 'sqrt') throw new TypeError(`covpool: kind must be 'geometric' or 'sqrt', got ${formatValue(kind)}`);
  const max = kind === 'geometric' ? 1000 : 12; // svd-pade's and mpa-lya's degree bounds
  if (!Number.isInteger(degree) || degree < 1 || degree > max)
    throw new RangeError(`covpool: the ${kind} Pade degree must be an integer in [1, ${max}], got ${formatValue(degree)}`);
  return native().padeCoefficients(kind, degree);
}

/**
 * The memory budget of one call, in bytes: a call that would allocate more (inputs copied,
 * outputs, its state, scratch) is refused before it allocates. Default: COVPOOL_MAX_BYTES, else
 * half the physical memory.
 */
export function maxBytes(): number {
  return native().maxBytes();
}
/** Sets the memory budget of one call (bytes); returns the previous one. */
export function setMaxBytes(bytes: number): number {
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new RangeError(`covpool: the memory budget must be a positive integer number of bytes, got ${formatValue(bytes)}`);
  const previous = native().maxBytes();
  native().maxBytes(bytes);
  return previous;
}

/** Backend name, worker threads, the method list, and whether the CUDA backend is built in and how many GPUs it sees. */
export function backendInfo(): { backend: string; threads: number; methods: string[]; cuda: boolean; cudaDevices: number } {
  return native().info();
}
