// covpool/tfjs: the GCP head as a TensorFlow.js op (built with tf.customGrad) and as a
// tf.layers.Layer, so a tfjs model gets covariance pooling + matrix square root + triangle
// vectorization with any of covpool's ten forward/backward methods.
//
// TensorFlow.js is a peer dependency: it is required here, at runtime, and nowhere else in
// covpool, so `require('covpool')` never loads it. Types come from `import type` only.
//
// How a step runs: tfjs tensor -> dataSync() -> CovPoolLayer.forwardSync (native) -> tf.tensor.
// customGrad is synchronous, so the Sync API is the one that fits; the features are float32
// (tfjs has no float64), and eigen-based methods still do their spectral part in float64.
import type * as tfc from '@tensorflow/tfjs-core';
import type * as tflayers from '@tensorflow/tfjs-layers';
import type { LayerArgs } from '@tensorflow/tfjs-layers/dist/engine/topology';
import { CovPoolLayer, MethodSchedule } from '../layer';
import { METHODS, Method, MethodOptions, MethodSpec, toMethodOptions } from '../methods';
import { BackwardState, canonicalDataFormat, triangleSize } from '../ops';
import { shapeString } from '../tensor';

type Tf = typeof tfc;
type TfLayers = typeof tflayers;

// ---- loading the peer dependency ---------------------------------------------------------------

function isMissing(err: unknown, name: string): boolean {
  const e = err as { code?: string; message?: string };
  // Only "this package is not installed" counts as missing; an error thrown while the package
  // itself loads (a broken tfjs-node binary, say) must surface as it is.
  return e?.code === 'MODULE_NOT_FOUND' && typeof e.message === 'string' && e.message.includes(`'${name}'`);
}

function requirePeer<T>(name: string): T | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require(name) as T;
  } catch (err) {
    if (isMissing(err, name)) return undefined;
    throw err;
  }
}

const INSTALL_HINT =
  'install TensorFlow.js next to covpool: `npm install @tensorflow/tfjs` (pure JS, cpu backend), ' +
  'or `npm install @tensorflow/tfjs-node` (native TensorFlow), which both bring @tensorflow/tfjs-core and @tensorflow/tfjs-layers';

// tfjs-core and tfjs-layers publish no "exports" map and CommonJS node bundles as "main", so an
// application's `import * as tf from '@tensorflow/tfjs'` and this require reach the same module
// instance (and tfjs keeps its engine in a global, so even two copies would share one engine).
const tfOrUndefined = requirePeer<Tf>('@tensorflow/tfjs-core');
if (!tfOrUndefined) throw new Error(`covpool/tfjs: @tensorflow/tfjs-core was not found; ${INSTALL_HINT}.`);
const tf: Tf = tfOrUndefined;
// The layer needs tfjs-layers; the op works with tfjs-core alone, so a missing tfjs-layers is
// reported when the layer is used, not at import.
const tfl = requirePeer<TfLayers>('@tensorflow/tfjs-layers');

// ---- configuration -----------------------------------------------------------------------------

/**
 * Feature layout. 'channelsLast' (NHWC, [B, H, W, C] or [B, N, C]) is the tfjs default;
 * 'channelsFirst' (NCHW, [B, C, H, W] or [B, C, N]) is covpool's own layout and passes through.
 * 'NHWC' / 'NCHW' are accepted as aliases (any case).
 */
export type DataFormat = 'channelsLast' | 'channelsFirst' | 'NHWC' | 'NCHW' | 'nhwc' | 'nchw';

/** A method's options plus what the tfjs adapter adds. */
export type CovPoolOptions = MethodOptions & {
  /** Return the C(C+1)/2 upper triangle (default) instead of the full C x C matrix. */
  vectorize?: boolean;
  /** Input layout (default 'channelsLast', the tfjs convention). */
  dataFormat?: DataFormat;
};

type OptionalMethod<T> = T extends { method: infer M } ? Omit<T, 'method'> & { method?: M } : never;
/** Like CovPoolOptions, with `method` optional (default 'ns'). */
export type CovPoolConfig = OptionalMethod<CovPoolOptions>;

function canonicalFormat(f: unknown): 'channelsLast' | 'channelsFirst' {
  return canonicalDataFormat(f, 'channelsLast'); // the tfjs convention is the default here
}

/** Splits an adapter config into the covpool method options and the adapter's own settings. */
function splitConfig(config: Method | CovPoolConfig | undefined): {
  method: MethodOptions;
  vectorize: boolean;
  dataFormat: 'channelsLast' | 'channelsFirst';
} {
  if (config === undefined || typeof config === 'string') return { method: toMethodOptions(config ?? 'ns'), vectorize: true, dataFormat: 'channelsLast' };
  if (config === null || typeof config !== 'object') throw new TypeError('covpool/tfjs: config must be a method name or an options object');
  const rest: Record<string, unknown> = {};
  // null counts as absent: tfjs' serialization writes undefined options as null.
  for (const [k, v] of Object.entries(config)) if (v !== null && v !== undefined) rest[k] = v;
  const { vectorize, dataFormat, ...method } = rest;
  if (vectorize !== undefined && typeof vectorize !== 'boolean') throw new TypeError('covpool/tfjs: vectorize must be a boolean');
  if (method.method === undefined) method.method = 'ns';
  return { method: toMethodOptions(method as unknown as MethodSpec), vectorize: (vectorize as boolean | undefined) ?? true, dataFormat: canonicalFormat(dataFormat) };
}

// ---- the op ------------------------------------------------------------------------------------

/** Counters an op keeps over its life (reset with `resetStats`). */
export interface CovPoolStats {
  /** Forward passes run. */
  forward: number;
  /** Backward passes run (one per gradient through the op). */
  backward: number;
  /** Backward passes whose feature gradient held at least one NaN or +-Infinity. */
  nonFiniteBackward: number;
  /** NaN / +-Infinity entries over all those gradients. */
  nonFiniteEntries: number;
  /** The largest finite |entry| of any feature gradient: how large the gradients got. */
  maxAbsGradient: number;
  /** Backward states held now, waiting for a gradient (0 outside a gradient computation). */
  pendingStates: number;
}

interface Pending {
  state: BackwardState;
  /** The engine tape the forward was recorded on. */
  tape: unknown;
}

function toLocalFloat32(a: ArrayLike<number>): Float32Array {
  // Native results are Float32Arrays of the main realm; tfjs recognizes typed arrays with
  // instanceof, which fails for another realm's arrays (jest's vm contexts), so copy those.
  return a instanceof Float32Array ? a : Float32Array.from(a);
}

/** Non-finite entries, and the largest finite magnitude. */
function scan(a: ArrayLike<number>): { bad: number; max: number } {
  let bad = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (!Number.isFinite(v)) bad++;
    else if (Math.abs(v) > max) max = Math.abs(v);
  }
  return { bad, max };
}

/**
 * A covpool GCP head as a differentiable tfjs op: features (NHWC or NCHW, rank 3 or 4, float32)
 * -> covariance -> matrix square root -> [B, C(C+1)/2] (or [B, C, C] with vectorize: false).
 * Forward and backward run covpool's native layer; gradients are first order.
 *
 * Backward states (eigenvectors, Newton-Schulz iterates, ... in native memory) are kept only
 * while tfjs is recording a gradient tape, and freed as soon as they cannot be used:
 *  - not recording (predict, evaluate, inference): freed right after the forward;
 *  - recording: freed by the backward once the outermost gradient computation has used it;
 *  - recorded but never differentiated (the op is not on the path from the variables to the
 *    loss, or the gradient call threw): freed at the op's next call once the engine has moved
 *    past that tape, and by `dispose()`. The garbage collector remains the last resort.
 */
export class CovPoolOp {
  /** The covpool layer that does the work; pass it to `MethodSchedule.apply` to switch methods. */
  readonly covpool: CovPoolLayer;
  readonly dataFormat: 'channelsLast' | 'channelsFirst';
  private pending = new Set<Pending>();
  private counters = { forward: 0, backward: 0, nonFiniteBackward: 0, nonFiniteEntries: 0, maxAbsGradient: 0 };

  constructor(config: Method | CovPoolConfig = 'ns') {
    const { method, vectorize, dataFormat } = splitConfig(config);
    // The covpool layer reads the features in the caller's layout: NHWC runs natively (the
    // covariance BLAS calls take the other transpose), with no transpose in tfjs either way.
    this.covpool = new CovPoolLayer({ ...method, vectorize, dataFormat });
    this.dataFormat = dataFormat;
  }

  get vectorize(): boolean {
    return this.covpool.vectorize;
  }
  /** The current method's options (as given, without the adapter settings). */
  get options(): MethodOptions {
    return this.covpool.options;
  }
  /** Switches the method for the following calls. */
  setMethod(spec: MethodSpec): this {
    this.covpool.setMethod(spec);
    return this;
  }

  get stats(): CovPoolStats {
    return { ...this.counters, pendingStates: this.pending.size };
  }
  resetStats(): void {
    this.counters = { forward: 0, backward: 0, nonFiniteBackward: 0, nonFiniteEntries: 0, maxAbsGradient: 0 };
  }

  /** Output shape for an input shape (entries may be null for unknown batch size). */
  outputShape(inputShape: readonly (number | null)[]): (number | null)[] {
    const { B, C } = this.dims(inputShape);
    if (C === null) throw new RangeError('covpool/tfjs: the channel dimension must be known');
    return this.vectorize ? [B, triangleSize(C)] : [B, C, C];
  }

  /** Runs the op. Differentiable with tf.grad / tf.variableGrads / model.fit (first order). */
  apply(x: tfc.Tensor): tfc.Tensor {
    if (!(x instanceof tf.Tensor)) throw new TypeError('covpool/tfjs: expected a tf.Tensor');
    this.dims(x.shape); // the shape error names the layout before any work is done
    this.reap();
    return tf.tidy(() => {
      const x32 = x.dtype === 'float32' ? x : tf.cast(x, 'float32');
      // Rank 4 to rank 3 by merging H and W ([B, C, N] or [B, N, C]): a reshape, which copies
      // nothing and which tfjs differentiates itself.
      const s = x.shape as number[];
      let x3: tfc.Tensor = x32;
      if (s.length === 4) x3 = this.dataFormat === 'channelsFirst' ? tf.reshape(x32, [s[0], s[1], s[2] * s[3]]) : tf.reshape(x32, [s[0], s[1] * s[2], s[3]]);
      return this.core(x3 as tfc.Tensor3D);
    });
  }

  /** Frees every backward state still held (call when done with the op; the layer does on dispose). */
  dispose(): void {
    for (const p of this.pending) p.state.dispose();
    this.pending.clear();
  }

  private core(x: tfc.Tensor3D): tfc.Tensor {
    const engine = tf.engine();
    // Decided here, outside the kernel: customGrad's forward runs with the tape paused, and the
    // engine makes exactly this check (gradientDepth > 0 && kernelDepth === 0) to decide whether
    // to record this op.
    const recording = engine.isTapeOn();
    const tape = recording ? engine.state.activeTape : null;
    const op = customGradOp(this, x, recording, tape);
    return op(x);
  }

  /** @internal */
  runForward(x: tfc.Tensor3D, recording: boolean, tape: unknown): { value: tfc.Tensor; entry: Pending | null } {
    const { output, state } = this.covpool.forwardSync({ data: x.dataSync() as Float32Array, shape: x.shape });
    this.counters.forward++;
    let entry: Pending | null = null;
    if (recording) {
      entry = { state, tape };
      this.pending.add(entry);
    } else state.dispose(); // nothing will ever ask for this gradient
    return { value: tf.tensor(toLocalFloat32(output.data), output.shape as number[], 'float32'), entry };
  }

  /** @internal */
  runBackward(entry: Pending | null, dy: tfc.Tensor, inputShape: number[]): tfc.Tensor {
    if (!entry || entry.state.disposed)
      throw new Error('covpool/tfjs: no backward state for this gradient (the forward ran outside a gradient tape, or the op was disposed)');
    try {
      // Retained: a nested tf.grad may differentiate through this node again; the state is freed
      // below (or by reap) on this adapter's own schedule.
      const g = this.covpool.backwardSync(entry.state, { data: dy.dataSync() as Float32Array, shape: dy.shape }, { retainState: true });
      this.counters.backward++;
      const { bad, max } = scan(g.data);
      this.counters.maxAbsGradient = Math.max(this.counters.maxAbsGradient, max);
      if (bad > 0) {
        this.counters.nonFiniteBackward++;
        this.counters.nonFiniteEntries += bad;
      }
      return tf.tensor(toLocalFloat32(g.data), inputShape, 'float32');
    } finally {
      // At depth 0 this is the outermost gradient computation: the engine drops its tape when it
      // ends, so no one can ask for this node's gradient again. Inside a nested tf.grad an outer
      // tape may still differentiate through this node; reap() frees the state once it is gone.
      if (tf.engine().state.gradientDepth === 0) this.release(entry);
    }
  }

  private release(entry: Pending): void {
    entry.state.dispose();
    this.pending.delete(entry);
  }

  /** Frees states recorded on tapes the engine has discarded (their gradient can no longer be asked for). */
  private reap(): void {
    if (this.pending.size === 0) return;
    const active = tf.engine().state.activeTape;
    for (const p of [...this.pending]) if (p.tape !== active) this.release(p);
  }

  private dims(shape: readonly (number | null)[]): { B: number | null; C: number | null } {
    const r = shape.length;
    if (r !== 3 && r !== 4)
      throw new RangeError(
        `covpool/tfjs: features must have rank 4 (${this.dataFormat === 'channelsLast' ? '[B, H, W, C]' : '[B, C, H, W]'}) or 3 ` +
          `(${this.dataFormat === 'channelsLast' ? '[B, N, C]' : '[B, C, N]'}), got ${shapeString(shape)} (rank ${r})`,
      );
    return { B: shape[0], C: this.dataFormat === 'channelsLast' ? shape[r - 1] : shape[1] };
  }
}

// A separate function so that the customGrad closure holds only what its gradient needs.
function customGradOp(op: CovPoolOp, x: tfc.Tensor3D, recording: boolean, tape: unknown): (x: tfc.Tensor) => tfc.Tensor {
  const inputShape = x.shape.slice();
  return tf.customGrad((input) => {
    const { value, entry } = op.runForward(input as tfc.Tensor3D, recording, tape);
    return { value, gradFunc: (dy: tfc.Tensor) => op.runBackward(entry, dy, inputShape) };
  }) as (x: tfc.Tensor) => tfc.Tensor;
}

/**
 * One-off functional form: `covPoolOp(x, 'svd-pade')`. Builds a CovPoolOp per call; keep a
 * CovPoolOp (or use the layer) when calling it repeatedly.
 */
export function covPoolOp(x: tfc.Tensor, config: Method | CovPoolConfig = 'ns'): tfc.Tensor {
  return new CovPoolOp(config).apply(x);
}

// ---- the layer ---------------------------------------------------------------------------------

/** Constructor arguments of the CovPool layer: tfjs LayerArgs plus the method and adapter options. */
export type CovPoolLayerArgs = LayerArgs & CovPoolConfig;

/** The public surface of a CovPool layer instance (a tf.layers.Layer). */
export interface CovPoolLayerInstance extends tflayers.layers.Layer {
  /** The differentiable op the layer runs (stats, pending states, the covpool layer). */
  readonly op: CovPoolOp;
  /** The covpool layer doing the work: `schedule.apply(layer.covpool, epoch)` switches its method. */
  readonly covpool: CovPoolLayer;
  /** Switches the method for the following steps; getConfig() reports the current one. */
  setMethod(spec: MethodSpec): this;
}

export interface CovPoolLayerClass {
  new (args?: CovPoolLayerArgs): CovPoolLayerInstance;
  readonly className: string;
}

// The arguments tf.layers.Layer takes (LayerArgs) go to it; everything else is covpool's. So a
// misspelt option ('iteration') is an error naming the method's options, not silently ignored.
const LAYER_KEYS = new Set(['inputShape', 'batchInputShape', 'batchSize', 'dtype', 'name', 'trainable', 'weights', 'inputDType']);
// Added to every config by tfjs-layers' deserializer (models.modelFromJSON, loadLayersModel).
const DESERIALIZER_KEYS = new Set(['customObjects']);

function defineLayer(layers: TfLayers): CovPoolLayerClass {
  class CovPool extends layers.layers.Layer {
    static className = 'CovPool';
    readonly op: CovPoolOp;

    constructor(args: CovPoolLayerArgs = {}) {
      const base: Record<string, unknown> = {};
      const own: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(args ?? {})) if (!DESERIALIZER_KEYS.has(k)) (LAYER_KEYS.has(k) ? base : own)[k] = v;
      super(base as LayerArgs);
      this.op = new CovPoolOp(own as CovPoolConfig);
    }

    get covpool(): CovPoolLayer {
      return this.op.covpool;
    }

    setMethod(spec: MethodSpec): this {
      this.op.setMethod(spec);
      return this;
    }

    computeOutputShape(inputShape: tflayers.Shape | tflayers.Shape[]): tflayers.Shape {
      const s = (Array.isArray(inputShape[0]) ? (inputShape as tflayers.Shape[])[0] : inputShape) as tflayers.Shape;
      return this.op.outputShape(s);
    }

    call(inputs: tfc.Tensor | tfc.Tensor[]): tfc.Tensor {
      if (Array.isArray(inputs) && inputs.length !== 1) throw new RangeError(`covpool/tfjs: the CovPool layer takes one input, got ${inputs.length}`);
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      return this.op.apply(x);
    }

    getConfig(): tfc.serialization.ConfigDict {
      // The current method (after setMethod / a schedule), as given: defaults stay implicit so a
      // loaded layer resolves them the same way for its own C.
      const own: Record<string, unknown> = { ...this.op.options, vectorize: this.op.vectorize, dataFormat: this.op.dataFormat };
      return { ...super.getConfig(), ...(own as tfc.serialization.ConfigDict) };
    }

    dispose(): ReturnType<tflayers.layers.Layer["dispose"]> {
      const r = super.dispose();
      this.op.dispose();
      return r;
    }
  }
  // Registered under 'covpool>CovPool', so tf.loadLayersModel / modelFromJSON rebuild it from a
  // saved model once covpool/tfjs has been imported.
  tf.serialization.registerClass(CovPool as unknown as tfc.serialization.SerializableConstructor<tfc.serialization.Serializable>, 'covpool');
  return CovPool as unknown as CovPoolLayerClass;
}

function missingLayers(): CovPoolLayerClass {
  return class {
    static className = 'CovPool';
    constructor() {
      throw new Error(`covpool/tfjs: the CovPool layer needs @tensorflow/tfjs-layers, which was not found; ${INSTALL_HINT}.`);
    }
  } as unknown as CovPoolLayerClass;
}

/** The GCP head as a tf.layers.Layer subclass, registered for serialization as 'covpool>CovPool'. */
export const CovPool: CovPoolLayerClass = tfl ? defineLayer(tfl) : missingLayers();

/** Factory in the style of tf.layers.*: `model.add(covPoolLayer({ method: 'svd-pade' }))`. */
export function covPoolLayer(args: Method | CovPoolLayerArgs = {}): CovPoolLayerInstance {
  return new CovPool(typeof args === 'string' ? { method: args } : args);
}

/**
 * A model.fit callback that applies a MethodSchedule at the start of each epoch, e.g. the paper's
 * hybrid protocol: `callbacks: [scheduleCallback(gcp, MethodSchedule.hybrid(40))]`.
 */
export function scheduleCallback(
  layer: CovPoolLayerInstance | CovPoolOp,
  schedule: MethodSchedule,
  onChange?: (epoch: number, method: MethodOptions) => void,
): { onEpochBegin: (epoch: number) => Promise<void> } {
  const target = layer instanceof CovPoolOp ? layer.covpool : layer.covpool;
  return {
    onEpochBegin: async (epoch: number) => {
      if (schedule.apply(target, epoch) && onChange) onChange(epoch, target.options);
    },
  };
}

export { METHODS, MethodSchedule };
export type { Method, MethodOptions, MethodSpec };
