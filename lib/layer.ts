// The GCP meta-layer: features -> covariance -> matrix square root -> upper-triangle vector,
// with a backward pass, a method that may change between steps, and the hybrid-schedule helper.
import { MethodSpec, MethodOptions, toMethodOptions } from './methods';
import { NativeControl, NativeForwardResult, addonFor, cuda, explainNativeError, native } from './native';
import {
  BackwardOptions,
  BackwardState,
  CallOptions,
  batchOf,
  DataFormat,
  ForwardResult,
  backwardImpl,
  binaryOf,
  canonicalDataFormat,
  controlled,
  featureDims,
  isGenuineState,
  promised,
  stateBatch,
  tensorOf,
  triangleSize,
} from './ops';
import { Tensor, TensorInput, formatValue, isDetached } from './tensor';

export type LayerConfig = MethodSpec & {
  /** Return the C(C+1)/2 upper triangle (default) instead of the full C x C matrix. */
  vectorize?: boolean;
  /**
   * Layout of the features: 'channelsFirst' (default; [B, C, H, W] or [B, C, N]) or
   * 'channelsLast' ([B, H, W, C] or [B, N, C], as TensorFlow.js convolutions give them). Both run
   * natively on the CPU (no transposed copy); the gradient comes back in the same layout.
   */
  dataFormat?: DataFormat;
};

export class CovPoolLayer {
  private opts: MethodOptions;
  // The options last given for each method, so that a schedule switching back to a method by
  // name keeps them (MethodSchedule.apply).
  private readonly given = new Map<string, MethodOptions>();
  readonly vectorize: boolean;
  readonly dataFormat: 'channelsFirst' | 'channelsLast';
  // States made by this layer: backward refuses states of other layers or other ops.
  private readonly own = new WeakSet<BackwardState>();

  constructor(config: LayerConfig | MethodSpec = 'ns') {
    const obj = (typeof config === 'string' ? { method: config } : config) as Record<string, unknown>;
    if (obj === null || typeof obj !== 'object') throw new TypeError('covpool: layer config must be a method name or an options object');
    const { vectorize, dataFormat, ...spec } = obj;
    if (vectorize !== undefined && typeof vectorize !== 'boolean') throw new TypeError('covpool: vectorize must be a boolean');
    this.vectorize = vectorize ?? true;
    this.dataFormat = canonicalDataFormat(dataFormat);
    this.opts = checkedMethodOptions(spec as unknown as MethodSpec);
    this.given.set(this.opts.method, this.opts);
  }

  /** The options this layer was last given for `method` (undefined if never). */
  optionsGivenFor(method: string): MethodOptions | undefined {
    const o = this.given.get(method);
    return o ? { ...o } : undefined;
  }

  /** The current method's options (as given; see `resolvedOptions` for the defaults filled in). */
  get options(): MethodOptions {
    return { ...this.opts };
  }
  get method(): string {
    return this.opts.method;
  }

  /**
   * The device this layer's calls run on: 'cpu' or 'cuda:N'. `device: 'auto'` resolves here as a
   * forward resolves it (the first CUDA device when one can be used, else the CPU), and 'cuda' is
   * 'cuda:0'; `layer.options.device` keeps what was asked for. A forward's `state.device` names the
   * device that forward ran on.
   */
  get device(): string {
    const asked = this.opts.device ?? 'cpu';
    if (asked === 'cpu') return 'cpu';
    if (asked === 'cuda') return 'cuda:0';
    if (asked !== 'auto') return asked;
    const c = cuda(); // what addonFor('auto') decides by
    return c.addon && c.status.devices > 0 ? 'cuda:0' : 'cpu';
  }

  /** Switches the method (and its options) for the following steps; states already made keep theirs. */
  setMethod(spec: MethodSpec): this {
    this.opts = checkedMethodOptions(spec);
    this.given.set(this.opts.method, this.opts);
    return this;
  }

  /** Options with defaults filled in for inputs of this dtype and C. */
  resolvedOptions(dtype: 'float32' | 'float64', C: number): Record<string, unknown> {
    return native().resolveOptions(this.opts, dtype, C);
  }

  /** Output shape for an input shape ([B, C, N] or [B, C, H, W]; channels last with dataFormat 'channelsLast'). */
  outputShape(inputShape: readonly number[]): number[] {
    const { B, C } = featureDims(inputShape, this.dataFormat);
    return this.vectorize ? [B, triangleSize(C)] : [B, C, C];
  }

  /**
   * Forward on the thread pool. Resolves to the output and the state backward needs.
   * `options.signal` cancels it between batch items; `options.onProgress` reports finished items.
   */
  forward(x: TensorInput, options?: CallOptions): Promise<ForwardResult> {
    return promised(() =>
      controlled(options, batchOf(x), (c) => this.forwardImpl(x, true, c) as Promise<ForwardResult>, () =>
        x instanceof Tensor && x.deviceSide ? binaryOf(x) : addonFor(this.opts.device),
      ),
    );
  }
  forwardSync(x: TensorInput): ForwardResult {
    return this.forwardImpl(x, false) as ForwardResult;
  }

  /**
   * Gradient w.r.t. the features, given dL/d(output). Frees the state's native memory once used,
   * unless called with `{ retainState: true }` (to run several backwards from one forward).
   * `options.signal` / `options.onProgress` as for forward.
   */
  backward(state: BackwardState, dy: TensorInput, options?: BackwardOptions & CallOptions): Promise<Tensor> {
    return promised(() => {
      this.checkOwn(state);
      return controlled(options, stateBatch(state), (c) => backwardImpl(state, dy, 'layer', true, options, c) as Promise<Tensor>, () => state.addon ?? native());
    });
  }
  backwardSync(state: BackwardState, dy: TensorInput, options?: BackwardOptions): Tensor {
    this.checkOwn(state);
    return backwardImpl(state, dy, 'layer', false, options) as Tensor;
  }

  private forwardImpl(xIn: TensorInput, async: boolean, control?: NativeControl): ForwardResult | Promise<ForwardResult> {
    const x = Tensor.from(xIn);
    const { B, C, N } = featureDims(x.shape, this.dataFormat);
    if (B > 0 && !x.deviceSide && isDetached(x.data)) throw new TypeError('covpool: features: its ArrayBuffer was detached (transferred) after the tensor was made');
    const outShape = this.vectorize ? [B, triangleSize(C)] : [B, C, C];
    // Device-resident features run where they are, which must be where this layer runs.
    if (x.deviceSide && x.device !== this.device)
      throw new TypeError(
        `covpool: the features are on ${x.device} but this layer runs on ${this.device} (device: '${this.opts.device ?? 'cpu'}'): ` +
          `create the layer with device: '${x.device}' (or 'auto'), or move the features with .to('${this.device}')`,
      );
    x.requireLive('the features');
    const addon = x.deviceSide ? x.deviceSide.addon : addonFor(this.opts.device);
    const opts = x.deviceSide ? { ...this.opts, device: x.device } : this.opts;
    const data = x.deviceSide ? x.deviceSide.handle : x.data;
    const wrap = (r: NativeForwardResult): ForwardResult => {
      const state = new BackwardState(r.state, 'layer', x.shape, outShape, addon);
      this.own.add(state);
      return { output: tensorOf(r.output, outShape, x.dtype, addon, state.device), state };
    };
    const r = explainNativeError(() => addon.layer(data, B, C, N, opts, this.vectorize, this.dataFormat === 'channelsLast', control, async));
    return async ? (r as Promise<NativeForwardResult>).then(wrap) : wrap(r as NativeForwardResult);
  }

  private checkOwn(state: BackwardState): void {
    if (isGenuineState(state) && state.kind === 'layer' && !this.own.has(state))
      throw new TypeError('covpool: this state was produced by another CovPoolLayer; pass it to the layer that made it');
  }
}

/** Names and ranges checked now (natively, as at run time), not at the first step that uses them. */
function checkedMethodOptions(spec: MethodSpec): MethodOptions {
  const o = toMethodOptions(spec);
  native().resolveOptions(o, 'float32', 1 << 20); // C only bounds svd-topn's n: any n passes here
  return o;
}

/** A canonical string of options, independent of key order. */
function canonical(o: MethodOptions): string {
  const rec = o as unknown as Record<string, unknown>;
  return JSON.stringify(Object.keys(rec).sort().map((k) => [k, rec[k]]));
}

/** One phase of a schedule: from `from` (epoch or step, inclusive) on, use `method`. */
export interface SchedulePhase {
  from: number;
  method: MethodSpec;
}

/**
 * Which method to use at each epoch (or step). The paper's hybrid protocol, Newton-Schulz first
 * and an SVD method later, is `MethodSchedule.hybrid(E)`; apply it with `schedule.apply(layer, epoch)`.
 */
export class MethodSchedule {
  readonly phases: readonly SchedulePhase[];

  constructor(phases: SchedulePhase[]) {
    if (!Array.isArray(phases) || phases.length === 0) throw new RangeError('covpool: a schedule needs at least one phase');
    // Each phase checked before sorting: sorting compares the starts as numbers.
    for (const p of phases) {
      if (p === null || typeof p !== 'object') throw new TypeError(`covpool: a schedule phase must be an object { from, method }, got ${formatValue(p)}`);
      if (!Number.isInteger(p.from) || p.from < 0) throw new RangeError(`covpool: schedule phase start must be a non-negative integer, got ${formatValue(p.from)}`);
    }
    const sorted = phases.slice().sort((a, b) => a.from - b.from);
    if (sorted[0].from !== 0) throw new RangeError('covpool: the first phase of a schedule must start at 0');
    sorted.forEach((p, i) => {
      if (i > 0 && p.from === sorted[i - 1].from) throw new RangeError(`covpool: two schedule phases start at ${p.from}`);
      checkedMethodOptions(p.method);
    });
    this.phases = Object.freeze(sorted);
  }

  /** `before` until epoch `switchAt` (exclusive), `after` from then on: the paper's hybrid training. */
  static hybrid(switchAt: number, before: MethodSpec = 'ns', after: MethodSpec = 'svd-pade'): MethodSchedule {
    return new MethodSchedule([
      { from: 0, method: before },
      { from: switchAt, method: after },
    ]);
  }

  /** The method for an epoch. */
  at(epoch: number): MethodOptions {
    let cur = this.phases[0];
    for (const p of this.phases) if (epoch >= p.from) cur = p;
    return toMethodOptions(cur.method);
  }

  /**
   * Sets the layer's method for this epoch; returns true when it changed. Options the layer was
   * given for that method before (at construction or by setMethod) are kept unless the phase sets
   * them: a layer made with { method: 'ns', iterations: 3 } runs ns with 3 iterations in a
   * schedule's 'ns' phase. The layer's device is kept unless the phase names one.
   */
  apply(layer: CovPoolLayer, epoch: number): boolean {
    const phase = this.at(epoch) as unknown as Record<string, unknown>;
    const current = layer.options as unknown as Record<string, unknown>;
    const earlier = (layer.optionsGivenFor(phase.method as string) ?? {}) as Record<string, unknown>;
    const next: Record<string, unknown> = { ...earlier, ...phase };
    if (next.device === undefined && current.device !== undefined) next.device = current.device;
    const spec = toMethodOptions(next as unknown as MethodSpec);
    const changed = canonical(spec) !== canonical(layer.options);
    if (changed) layer.setMethod(spec);
    return changed;
  }
}
