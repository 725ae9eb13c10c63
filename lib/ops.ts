// The batched ops, each as a promise-returning call (computed on the libuv thread pool, never on
// the event loop) and a `...Sync` twin for scripts. Shapes are checked here so that errors name
// the expected and the received shape; the native side re-checks everything it is given.
import { MethodSpec, toMethodOptions } from './methods';
import { NativeAddon, NativeArray, NativeControl, NativeData, NativeDeviceTensor, NativeState, addonFor, cuda, explainNativeError, loadedAddons, native, nativePath } from './native';
import { DType, Tensor, TensorInput, canonicalDevice, formatValue, isDetached, shapeString } from './tensor';

// ---- feature layout -------------------------------------------------------------------------

/**
 * How features are laid out. 'channelsFirst' (NCHW): [B, C, H, W] or [B, C, N], covpool's default.
 * 'channelsLast' (NHWC): [B, H, W, C] or [B, N, C], what TensorFlow.js convolutions produce.
 * 'NCHW' / 'NHWC' are accepted as aliases (any case).
 */
export type DataFormat = 'channelsFirst' | 'channelsLast' | 'NCHW' | 'NHWC' | 'nchw' | 'nhwc';

/** The canonical name of a layout; `fallback` when none is given. */
export function canonicalDataFormat(f: unknown, fallback: 'channelsFirst' | 'channelsLast' = 'channelsFirst'): 'channelsFirst' | 'channelsLast' {
  if (f === undefined || f === null) return fallback;
  // Lower case and no underscores: tfjs-layers' JSON round trip snake-cases string values
  // ('channelsLast' -> 'channels_last', 'NHWC' -> 'nhwc'), so every spelling it may hand back is accepted.
  const s = typeof f === 'string' ? f.toLowerCase().replace(/_/g, '') : '';
  if (s === 'channelslast' || s === 'nhwc') return 'channelsLast';
  if (s === 'channelsfirst' || s === 'nchw') return 'channelsFirst';
  throw new RangeError(`covpool: dataFormat must be 'channelsFirst' (NCHW) or 'channelsLast' (NHWC), got ${typeof f === 'string' ? `'${f}'` : String(f)}`);
}

// ---- cancellation and progress --------------------------------------------------------------

/** Options every promise-returning call takes. */
export interface CallOptions {
  /**
   * Cancels the call: checked natively between batch items (an item already running finishes
   * first; the CPU eigen methods and eigh go four items at a time), and the promise then rejects
   * with an `AbortError`. Already aborted: rejects at once.
   */
  signal?: AbortSignal;
  /** Called on the JS thread as batch items finish: done = 1 ... total, the last before the promise resolves. */
  onProgress?: (progress: { done: number; total: number }) => void;
}

/** The rejection of an aborted call (name 'AbortError', code 'ABORT_ERR', as Node's own). */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR';
  constructor(message = 'covpool: the operation was aborted', options?: { cause?: unknown }) {
    super(message);
    this.name = 'AbortError';
    if (options && 'cause' in options) (this as { cause?: unknown }).cause = options.cause;
  }
}

function checkCallOptions(opts: unknown): CallOptions {
  if (opts === undefined || opts === null) return {};
  if (typeof opts !== 'object') throw new TypeError('covpool: call options must be an object ({ signal, onProgress })');
  const o = opts as CallOptions;
  const sig = o.signal as unknown as { aborted?: unknown; addEventListener?: unknown } | undefined;
  if (sig !== undefined && !(sig !== null && typeof sig === 'object' && typeof sig.aborted === 'boolean' && typeof sig.addEventListener === 'function'))
    throw new TypeError('covpool: signal must be an AbortSignal (from an AbortController)');
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new TypeError('covpool: onProgress must be a function');
  return o;
}

function abortError(signal: AbortSignal): AbortError {
  return new AbortError('covpool: the operation was aborted', { cause: signal.reason });
}

/**
 * @internal Runs an async native call under a signal and a progress callback. `total` is the
 * number of batch items the call reports progress over. `binary` names the addon that will run the
 * call (the CPU or the CUDA-enabled binary): its control token is made by that same binary, never
 * handed from one binary to the other. Should naming it fail, the CPU binary's is used and the
 * call itself reports the error.
 */
export function controlled<T>(
  opts: CallOptions | undefined,
  total: number,
  start: (control: NativeControl | undefined) => Promise<T>,
  binary: () => NativeAddon = native,
): Promise<T> {
  const { signal, onProgress } = checkCallOptions(opts);
  if (signal?.aborted) return Promise.reject(abortError(signal));
  if (!signal && !onProgress) return start(undefined);
  let settled = false;
  let reported = 0;
  const report = (done: number, all: number): void => {
    if (settled || !onProgress || done <= reported) return;
    reported = done;
    onProgress({ done, total: all });
  };
  let addon: NativeAddon;
  try {
    addon = binary();
  } catch {
    addon = native();
  }
  const control = addon.createControl(onProgress ? report : undefined);
  const onAbort = (): void => addon.cancelControl(control);
  signal?.addEventListener('abort', onAbort, { once: true });
  const finish = (): void => {
    settled = true;
    signal?.removeEventListener('abort', onAbort);
    addon.releaseControl(control);
  };
  let run: Promise<T>;
  try {
    run = start(control);
  } catch (e) {
    finish();
    return Promise.reject(e);
  }
  return run.then(
    (value) => {
      // Reports travel through a queue; the last one may not have arrived yet.
      if (total > 0) report(total, total);
      finish();
      return value;
    },
    (err) => {
      finish();
      throw signal?.aborted ? abortError(signal) : err;
    },
  );
}

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
    for (const a of loadedAddons()) a.sweepStates();
  }).unref();
});

function requireGenuine(state: unknown): asserts state is BackwardState {
  if (state instanceof BackwardState && genuine.has(state)) return;
  // The usual cause of undefined or a Promise: `const { output, state } = layer.forward(x)`
  // without `await` destructures the promise (undefined), or the promise itself is passed on.
  const awaitHint =
    ' — is an `await` missing? layer.forward and sqrtm return promises: `const { output, state } = await layer.forward(x)` ' +
    '(or call forwardSync / sqrtmSync)';
  const isPromise = state !== null && typeof state === 'object' && typeof (state as { then?: unknown }).then === 'function';
  throw new TypeError(
    'covpool: state must be the `state` returned by the matching forward call (layer.forward or sqrtm), got ' +
      (state instanceof BackwardState
        ? 'a BackwardState that no forward call made (a copy, or Object.create(BackwardState.prototype))'
        : state === undefined
          ? 'undefined' + awaitHint
          : isPromise
            ? 'a Promise' + awaitHint
            : formatValue(state)),
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

  /** @internal The binary that made the state (CPU or CUDA-enabled): its backward runs there. */
  readonly addon: NativeAddon;

  /** @internal */
  constructor(handle: NativeState, kind: 'layer' | 'sqrtm', inputShape: readonly number[], outputShape: readonly number[], addon: NativeAddon = native()) {
    this.handle = handle;
    this.addon = addon;
    const info = addon.stateInfo(handle);
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
    const i = this.addon.stateInfo(this.handle);
    return i.disposed ? 0 : (i.bytes as number);
  }
  get disposed(): boolean {
    requireGenuine(this);
    return this.addon.stateInfo(this.handle).disposed;
  }
  dispose(): void {
    requireGenuine(this);
    this.addon.disposeState(this.handle);
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

/** What a native call is given for a tensor: its array, or its device handle. */
function live(t: Tensor, what: string): NativeData {
  if (t.deviceSide) {
    t.requireLive(what);
    return t.deviceSide.handle;
  }
  if (t.shape.every((d) => d > 0) && isDetached(t.data)) throw new TypeError(`covpool: ${what}: its ArrayBuffer was detached (transferred) after the tensor was made`);
  return t.data;
}

/**
 * @internal Where an op on these tensors runs: the CPU binary for host tensors, or the binary and
 * device holding them (device tensors: all on one device). A mix is an error naming both places.
 */
export function placement(inputs: Array<[Tensor, string]>, deviceOption?: unknown): { addon: NativeAddon; device: string; run: string | undefined } {
  const [first, firstName] = inputs[0];
  for (const [t, name] of inputs.slice(1))
    if (t.device !== first.device)
      throw new TypeError(
        `covpool: ${firstName} ${firstName.endsWith('s') ? 'are' : 'is'} on ${first.device} but ${name} ${name.endsWith('s') ? 'are' : 'is'} on ${t.device}: ` +
          `move one of them with .to('${first.device}') or .to('${t.device}')`,
      );
  const run = deviceFor(deviceOption, first, firstName);
  if (first.deviceSide) return { addon: first.deviceSide.addon, device: first.device, run };
  // Host arrays run on the device asked for (the CPU by default) and come back as host arrays.
  return { addon: addonFor(run), device: 'cpu', run };
}

/**
 * @internal The device a call with a `device` option runs on, given its input: the input's own
 * device when the option is absent (an op follows its data), else the option, which a device
 * input must match.
 */
export function deviceFor(asked: unknown, input: Tensor, what: string): string | undefined {
  if (input.device === 'cpu') return asked as string | undefined;
  if (asked === undefined || asked === null) return input.device;
  const want = asked === 'auto' ? input.device : canonicalDevice(asked, "option 'device'");
  if (want !== input.device)
    throw new TypeError(`covpool: ${what} are on ${input.device} but the call asks for device '${String(asked)}': move them with .to('${want}'), or leave the device option out`);
  return input.device;
}

/** @internal The binary an op on this input runs in (for its control token): a device tensor's, else the device option's. */
export function binaryOf(x: unknown, deviceOption?: unknown): NativeAddon {
  return x instanceof Tensor && x.deviceSide ? x.deviceSide.addon : addonFor(deviceOption);
}

/** @internal A native result as a Tensor: a host array, or a device handle on `device`. */
export function tensorOf(r: NativeData, shape: readonly number[], dtype: DType, addon: NativeAddon, device: string): Tensor {
  if (ArrayBuffer.isView(r)) return new Tensor(r as NativeArray, shape);
  return Tensor.fromDevice(r as NativeDeviceTensor, addon, device, dtype, shape);
}

/**
 * Features -> dims with N = H W: [B, C, N] or [B, C, H, W] (channelsFirst), [B, N, C] or
 * [B, H, W, C] (channelsLast). B may be 0; C and N may not.
 */
export function featureDims(shape: readonly number[], dataFormat: 'channelsFirst' | 'channelsLast' = 'channelsFirst', what = 'features'): { B: number; C: number; N: number } {
  const last = dataFormat === 'channelsLast';
  const r = shape.length;
  if (r !== 3 && r !== 4)
    throw new RangeError(
      `covpool: ${what} must have shape ${last ? '[B, N, C] or [B, H, W, C]' : '[B, C, N] or [B, C, H, W]'}, ` +
        `got ${shapeString(shape)} (rank ${r}; dataFormat '${dataFormat}')`,
    );
  const C = last ? shape[r - 1] : shape[1];
  const N = last ? (r === 3 ? shape[1] : shape[1] * shape[2]) : r === 3 ? shape[2] : shape[2] * shape[3];
  if (!(C >= 1) || !(N >= 1))
    throw new RangeError(`covpool: ${what} ${shapeString(shape)} (${dataFormat}) has C = ${C} channels and N = ${N} positions; both must be at least 1`);
  return { B: shape[0], C, N };
}

function matrixDims(a: Tensor, what: string): { B: number; C: number } {
  if (a.rank !== 3 || a.shape[1] !== a.shape[2] || a.shape[1] < 1)
    throw new RangeError(`covpool: ${what} must have shape [B, C, C] (a batch of square matrices, C >= 1), got ${shapeString(a.shape)}`);
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

/**
 * Where an op without a state runs: 'cpu' (the default), 'cuda', 'cuda:N' or 'auto'. Device-resident
 * tensors run where they are (the option may name that device, or be left out) and give results
 * there; host arrays are copied to the device asked for and their results copied back.
 */
export interface DeviceOption {
  device?: string;
}

/** Options of covpool / covpoolBackward: the features' layout (default 'channelsFirst') and the device. */
export interface CovpoolOptions extends DeviceOption {
  dataFormat?: DataFormat;
}

function covpoolImpl(xIn: TensorInput, opts: CovpoolOptions | undefined, async: boolean, control?: NativeControl) {
  const x = Tensor.from(xIn);
  const format = canonicalDataFormat(opts?.dataFormat);
  const { B, C, N } = featureDims(x.shape, format);
  const p = placement([[x, 'the features']], opts?.device);
  return then(p.addon.covpool(live(x, 'features'), B, C, N, format === 'channelsLast', p.run, control, async), async, (a) =>
    tensorOf(a, [B, C, C], x.dtype, p.addon, p.device),
  );
}
/**
 * Covariance pooling: features [B, C, N] or [B, C, H, W] (or, with dataFormat 'channelsLast',
 * [B, N, C] or [B, H, W, C]) -> A = Xc Xc^T / N, [B, C, C].
 */
export const covpool = (x: TensorInput, options?: CovpoolOptions & CallOptions): Promise<Tensor> =>
  promised(() => controlled(options, batchOf(x), (c) => covpoolImpl(x, options, true, c) as Promise<Tensor>, () => binaryOf(x, options?.device)));
export const covpoolSync = (x: TensorInput, options?: CovpoolOptions): Tensor => covpoolImpl(x, options, false) as Tensor;

function covpoolBackwardImpl(xIn: TensorInput, dAIn: TensorInput, opts: CovpoolOptions | undefined, async: boolean, control?: NativeControl) {
  const x = Tensor.from(xIn);
  const dA = Tensor.from(dAIn, undefined, x.dtype);
  const format = canonicalDataFormat(opts?.dataFormat);
  const { B, C, N } = featureDims(x.shape, format);
  expectShape(dA, [B, C, C], 'covariance gradient');
  expectDType(dA, x.dtype, 'covariance gradient');
  const p = placement(
    [
      [x, 'the features'],
      [dA, 'the covariance gradient'],
    ],
    opts?.device,
  );
  return then(
    p.addon.covpoolBackward(live(x, 'features'), live(dA, 'covariance gradient'), B, C, N, format === 'channelsLast', p.run, control, async),
    async,
    (g) => tensorOf(g, x.shape, x.dtype, p.addon, p.device),
  );
}
/** Gradient of covpool w.r.t. the features (in their layout), given dL/dA. */
export const covpoolBackward = (x: TensorInput, dA: TensorInput, options?: CovpoolOptions & CallOptions): Promise<Tensor> =>
  promised(() => controlled(options, batchOf(x), (c) => covpoolBackwardImpl(x, dA, options, true, c) as Promise<Tensor>, () => binaryOf(x, options?.device)));
export const covpoolBackwardSync = (x: TensorInput, dA: TensorInput, options?: CovpoolOptions): Tensor =>
  covpoolBackwardImpl(x, dA, options, false) as Tensor;

/** @internal The batch size of a state, for progress reports (0 for anything that is not a state: backward reports that). */
export function stateBatch(state: unknown): number {
  const shape = (state as { outputShape?: unknown } | null)?.outputShape;
  return Array.isArray(shape) && typeof shape[0] === 'number' ? shape[0] : 0;
}

/** @internal The batch size of an input, for progress reports (0 when it cannot be read; the op itself then reports the error). */
export function batchOf(x: TensorInput): number {
  const shape = (x as { shape?: unknown; dims?: unknown } | null)?.shape ?? (x as { dims?: unknown } | null)?.dims;
  return Array.isArray(shape) && typeof shape[0] === 'number' ? shape[0] : 0;
}

// ---- triangular vectorization ---------------------------------------------------------------

function triuvecImpl(sIn: TensorInput, opts: DeviceOption | undefined, async: boolean, control?: NativeControl) {
  const s = Tensor.from(sIn);
  const { B, C } = matrixDims(s, 'matrices');
  const p = placement([[s, 'the matrices']], opts?.device);
  return then(p.addon.triuvec(live(s, 'matrices'), B, C, p.run, control, async), async, (y) =>
    tensorOf(y, [B, triangleSize(C)], s.dtype, p.addon, p.device),
  );
}
/** Upper triangle, row by row, diagonal included: [B, C, C] -> [B, C(C+1)/2]. */
export const triuvec = (s: TensorInput, options?: DeviceOption & CallOptions): Promise<Tensor> =>
  promised(() => controlled(options, 0, (c) => triuvecImpl(s, options, true, c) as Promise<Tensor>, () => binaryOf(s, options?.device)));
export const triuvecSync = (s: TensorInput, options?: DeviceOption): Tensor => triuvecImpl(s, options, false) as Tensor;

function triuvecBackwardImpl(dyIn: TensorInput, C: number, opts: DeviceOption | undefined, async: boolean, control?: NativeControl) {
  const dy = Tensor.from(dyIn);
  if (!Number.isInteger(C) || C < 1) throw new RangeError(`covpool: C must be a positive integer, got ${formatValue(C)}`);
  if (dy.rank !== 2 || dy.shape[1] !== triangleSize(C))
    throw new RangeError(`covpool: gradient must have shape [B, ${triangleSize(C)}] for C = ${C}, got ${shapeString(dy.shape)}`);
  const B = dy.shape[0];
  const p = placement([[dy, 'the gradient']], opts?.device);
  return then(p.addon.triuvecBackward(live(dy, 'gradient'), B, C, p.run, control, async), async, (g) =>
    tensorOf(g, [B, C, C], dy.dtype, p.addon, p.device),
  );
}
/** Gradient of triuvec: [B, C(C+1)/2] -> [B, C, C] (upper triangle, zeros below). */
export const triuvecBackward = (dy: TensorInput, C: number, options?: DeviceOption & CallOptions): Promise<Tensor> =>
  promised(() => controlled(options, 0, (c) => triuvecBackwardImpl(dy, C, options, true, c) as Promise<Tensor>, () => binaryOf(dy, options?.device)));
export const triuvecBackwardSync = (dy: TensorInput, C: number, options?: DeviceOption): Tensor =>
  triuvecBackwardImpl(dy, C, options, false) as Tensor;

// ---- eigendecomposition ---------------------------------------------------------------------

export interface Eigh {
  /** Eigenvalues, ascending, [B, C]. */
  values: Tensor;
  /** Eigenvectors as columns, [B, C, C]: A = V diag(values) V^T. */
  vectors: Tensor;
}
function eighImpl(aIn: TensorInput, opts: DeviceOption | undefined, async: boolean, control?: NativeControl) {
  const a = Tensor.from(aIn);
  const { B, C } = matrixDims(a, 'matrices');
  const p = placement([[a, 'the matrices']], opts?.device);
  return then(p.addon.eigh(live(a, 'matrices'), B, C, p.run, control, async), async, (r) => ({
    values: tensorOf(r.values, [B, C], a.dtype, p.addon, p.device),
    vectors: tensorOf(r.vectors, [B, C, C], a.dtype, p.addon, p.device),
  }));
}
/** Batched symmetric eigendecomposition in the input dtype (CPU: native/cpu/symmetric_eigen.h; CUDA: cuSOLVER). */
export const eigh = (a: TensorInput, options?: DeviceOption & CallOptions): Promise<Eigh> =>
  promised(() => controlled(options, batchOf(a), (c) => eighImpl(a, options, true, c) as Promise<Eigh>, () => binaryOf(a, options?.device)));
export const eighSync = (a: TensorInput, options?: DeviceOption): Eigh => eighImpl(a, options, false) as Eigh;

// ---- matrix square root ---------------------------------------------------------------------

function sqrtmImpl(aIn: TensorInput, spec: MethodSpec, async: boolean, control?: NativeControl) {
  const a = Tensor.from(aIn);
  const { B, C } = matrixDims(a, 'matrices');
  const opts = { ...toMethodOptions(spec) };
  opts.device = deviceFor(opts.device, a, 'the matrices') as typeof opts.device;
  const addon = a.deviceSide ? a.deviceSide.addon : addonFor(opts.device);
  return then(explainNativeError(() => addon.sqrtm(live(a, 'matrices'), B, C, opts, control, async)), async, (r) => {
    const state = new BackwardState(r.state, 'sqrtm', [B, C, C], [B, C, C], addon);
    return { output: tensorOf(r.output, [B, C, C], a.dtype, addon, state.device), state };
  });
}
/** Matrix square root of symmetric PSD matrices [B, C, C] by the given method. */
export const sqrtm = (a: TensorInput, method: MethodSpec, options?: CallOptions): Promise<ForwardResult> =>
  promised(() =>
    controlled(options, batchOf(a), (c) => sqrtmImpl(a, method, true, c) as Promise<ForwardResult>, () =>
      a instanceof Tensor && a.deviceSide ? binaryOf(a) : addonFor(toMethodOptions(method).device),
    ),
  );
export const sqrtmSync = (a: TensorInput, method: MethodSpec): ForwardResult => sqrtmImpl(a, method, false) as ForwardResult;

/** @internal Checks the `checkState` argument is a genuine state (for the layer's own check). */
export function isGenuineState(state: unknown): boolean {
  return state instanceof BackwardState && genuine.has(state);
}

function retainOption(options: BackwardOptions | undefined, async: boolean): boolean {
  if (options === undefined) return false;
  if (options === null || typeof options !== 'object') throw new TypeError(`covpool: backward options must be an object, got ${formatValue(options)}`);
  const allowed = async ? ['retainState', 'signal', 'onProgress'] : ['retainState'];
  for (const key of Object.keys(options))
    if (!allowed.includes(key)) throw new RangeError(`covpool: unknown backward option '${key}' (its options: ${allowed.join(', ')})`);
  const r = options.retainState;
  if (r !== undefined && typeof r !== 'boolean') throw new TypeError(`covpool: option 'retainState' must be a boolean, got ${formatValue(r)}`);
  return r === true;
}

/** @internal Shared by sqrtmBackward and the layer: checks state and gradient, then runs backward. */
export function backwardImpl(state: BackwardState, dyIn: TensorInput, kind: 'layer' | 'sqrtm', async: boolean, options?: BackwardOptions, control?: NativeControl) {
  requireGenuine(state);
  if (state.kind !== kind)
    throw new TypeError(`covpool: this state comes from a ${state.kind === 'layer' ? 'layer forward' : 'sqrtm'} call, not from ${kind === 'layer' ? 'a layer forward' : 'sqrtm'}`);
  const retain = retainOption(options, async);
  if (state.disposed)
    throw new Error(
      freedByBackward.has(state)
        ? 'covpool: the state was freed by the backward that used it; pass { retainState: true } to that backward to run several backwards from one forward'
        : 'covpool: the state was disposed; run the forward pass again',
    );
  const dy = Tensor.from(dyIn, undefined, state.dtype);
  expectShape(dy, state.outputShape, 'output gradient');
  expectDType(dy, state.dtype, 'output gradient');
  // Host gradients go to any state (a CUDA state's gradient then comes back to the host); a device
  // gradient only to a state on its own device.
  if (dy.device !== 'cpu' && dy.device !== state.device)
    throw new TypeError(
      `covpool: the output gradient is on ${dy.device} but the state was made on ${state.device}: move the gradient with .to('${state.device}')`,
    );
  const shape = state.inputShape;
  const r = state.addon.backward(state.handle, live(dy, 'output gradient'), !retain, control, async);
  if (!retain) freedByBackward.add(state);
  return then(r, async, (g: NativeData) => tensorOf(g, shape, state.dtype, state.addon, dy.device));
}
/**
 * Gradient w.r.t. the input matrices (symmetric representative), given dL/dS. Frees the state
 * unless `{ retainState: true }`. `options.signal` / `options.onProgress` as for sqrtm.
 */
export const sqrtmBackward = (state: BackwardState, dS: TensorInput, options?: BackwardOptions & CallOptions): Promise<Tensor> =>
  promised(() => controlled(options, stateBatch(state), (c) => backwardImpl(state, dS, 'sqrtm', true, options, c) as Promise<Tensor>, () => state.addon ?? native()));
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
  const p = placement([[l, 'the eigenvalues']]);
  const f = p.addon.coefficients(live(l, 'eigenvalues') as Float64Array, B, C, toMethodOptions(method), replace, undefined, false) as NativeData;
  return tensorOf(f, [B, C, C], 'float64', p.addon, p.device);
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
  for (const a of loadedAddons()) a.maxBytes(bytes); // the CUDA-enabled binary too, when it is loaded
  return previous;
}

/** Native memory, like torch.cuda.memory_allocated / memory_reserved: the host caching allocator and, once used, each CUDA device's. */
export interface MemoryStats {
  host: {
    /** Held now by backward states, results being built, running calls and result arrays (resultArrayBytes). */
    allocatedBytes: number;
    /** The most held at once since the process started. */
    peakAllocatedBytes: number;
    /** Freed by covpool and kept for reuse (what emptyCache() releases). */
    cachedBytes: number;
    /** The most the cache keeps (COVPOOL_HOST_CACHE_MB). */
    cacheLimitBytes: number;
    /** Per-thread work space of batch items, kept between calls (emptyCache() frees it when no call runs). */
    scratchBytes: number;
    /**
     * Results of 64 KiB and more are Float32Array/Float64Array views of covpool's own memory, not
     * copies: the bytes of those the garbage collector has not collected yet, or whose release waits
     * for the event loop's next turn. At most COVPOOL_RESULT_ARRAYS_MB (default 64; 0 disables it);
     * beyond that, results are copied into fresh arrays.
     */
    resultArrayBytes: number;
  };
  /** One entry per CUDA device the process has used (none without the CUDA backend). */
  devices: { device: string; allocatedBytes: number; cachedBytes: number }[];
}

/**
 * Native memory in use and cached, host and CUDA devices, over the binaries loaded (the CPU binary
 * and, once CUDA was used, the CUDA-enabled one: each has its own host cache). States and device
 * tensors the garbage collector has already collected are freed before counting.
 */
export function memoryStats(): MemoryStats {
  // Backward states and device tensors the garbage collector has collected are freed first, so the
  // figures are what live objects hold.
  for (const a of loadedAddons()) a.sweepStates();
  const all = loadedAddons().map((a) => a.memoryStats());
  const host = { ...all[0].host };
  for (const s of all.slice(1)) {
    host.allocatedBytes += s.host.allocatedBytes;
    host.peakAllocatedBytes += s.host.peakAllocatedBytes;
    host.cachedBytes += s.host.cachedBytes;
    host.resultArrayBytes += s.host.resultArrayBytes;
  }
  return { host, devices: all.flatMap((s) => s.devices) };
}

/**
 * Returns the memory covpool keeps cached for reuse to the system (host: freed blocks and, when
 * no call is running, the threads' scratch; the C heap is then trimmed; CUDA: every device's
 * parked blocks), like torch.cuda.empty_cache. Memory held by live states is not touched:
 * dispose() them first. Returns the bytes released.
 */
export function emptyCache(): number {
  return loadedAddons().reduce((sum, a) => sum + a.emptyCache(), 0);
}

/** What backendInfo() reports. */
export interface BackendInfo {
  /** The default backend ('cpu'). */
  backend: string;
  threads: number;
  methods: string[];
  /** The binary that runs CPU ops (the package's prebuilt binary or a local build). */
  binary: string;
  /** Whether the CUDA backend can be used: the CUDA-enabled binary is loaded (devices may still be 0). */
  cuda: boolean;
  /** CUDA devices visible to it. */
  cudaDevices: number;
  /** The CUDA-enabled binary (null: none for this platform). */
  cudaBinary: string | null;
  /** Why CUDA cannot be used ('' when a device can): a missing binary, library or driver, no GPU. */
  cudaReason: string;
  /** The cuBLAS/cuSOLVER files it pre-loaded, by soname. */
  cudaLibraries: Record<string, string>;
  /**
   * True when the CUDA device is the emulated one of the test build (native/cuda/test/emulator):
   * CUDA code runs on the CPU to check its logic; nothing about GPU speed or cuSOLVER's own
   * numerics follows from it. Never true for the published package.
   */
  cudaEmulated: boolean;
}

/**
 * Backend name, worker threads, the method list, which binary is loaded, and whether CUDA can be
 * used and why not (this loads the CUDA-enabled binary when its libraries are found).
 */
export function backendInfo(): BackendInfo {
  const i = native().info();
  const c = cuda().status;
  return {
    backend: i.backend,
    threads: i.threads,
    methods: i.methods,
    binary: nativePath(),
    cuda: c.loaded,
    cudaDevices: c.devices,
    cudaBinary: c.binary,
    cudaReason: c.reason,
    cudaLibraries: c.libraries,
    cudaEmulated: c.emulated === true,
  };
}
