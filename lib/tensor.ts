// Typed tensors: a float32/float64 TypedArray plus a shape. A Tensor wraps the caller's array
// without copying; conversions accept the plain {data, shape} objects that TensorFlow.js
// (`dataSync()` + `.shape`) and onnxruntime-node tensors provide. A tensor may also live on a CUDA
// device (`t.to('cuda')`): its memory is then held natively, ops on it run on that device and give
// their results there, and its data is read only through a copy back (`to('cpu')`).
import type { NativeAddon, NativeControl, NativeDeviceTensor } from './native';

export type DType = 'float32' | 'float64';
export type FloatArray = Float32Array | Float64Array;

/** Anything with data and a shape: a Tensor, a tfjs/onnxruntime-style object, or a literal. */
export interface TensorLike {
  data: FloatArray | ArrayLike<number>;
  shape: readonly number[];
  dtype?: DType | string;
  /** onnxruntime-node tensors call the shape `dims`. */
  dims?: readonly number[];
}

export type TensorInput = Tensor | TensorLike;

/**
 * A value as it appears in an error message, unambiguous about its type: strings quoted ('5' is
 * not 5), arrays and plain objects spelt out (shortened), other objects by their class.
 */
export function formatValue(v: unknown, depth = 0): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v).replace(/^"|"$/g, "'");
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null || v === undefined || typeof v === 'boolean') return String(v);
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'symbol') return v.toString();
  if (Array.isArray(v)) {
    if (depth > 1) return '[…]';
    const head = v.slice(0, 8).map((e) => formatValue(e, depth + 1));
    return '[' + head.join(', ') + (v.length > 8 ? `, … (${v.length} entries)` : '') + ']';
  }
  const tag = Object.prototype.toString.call(v).slice(8, -1);
  if (tag !== 'Object' || depth > 1) return `a ${tag}`;
  const keys = Object.keys(v as object);
  if (keys.length === 0) return '{}';
  const body = keys.slice(0, 6).map((k) => `${k}: ${formatValue((v as Record<string, unknown>)[k], depth + 1)}`);
  return '{ ' + body.join(', ') + (keys.length > 6 ? ', …' : '') + ' }';
}

export function shapeString(shape: readonly unknown[]): string {
  return Array.isArray(shape) ? '[' + shape.map((d) => formatValue(d, 1)).join(', ') + ']' : formatValue(shape);
}

// Bytes a copy may take before it starts: the addon's memory budget of one call (its default, half
// the physical memory, when the addon cannot be loaded: building a Tensor does not need it).
function copyBudget(): number {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return (require('./native') as typeof import('./native')).native().maxBytes();
  } catch {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return (require('os') as typeof import('os')).totalmem() / 2;
  }
}

/** A TensorFlow.js tensor (duck-typed: covpool never loads tfjs itself). */
function isTfjsTensor(x: unknown): boolean {
  const t = x as { dataSync?: unknown; data?: unknown; dataId?: unknown } | null;
  return t !== null && typeof t === 'object' && typeof t.dataSync === 'function' && typeof t.data === 'function';
}

/** The error for a tf.Tensor where covpool wants its own data: where it went, and how to convert it. */
function tfjsTensorError(what: string): TypeError {
  return new TypeError(
    `covpool: ${what} a TensorFlow.js tensor; covpool ops take covpool Tensors or {data, shape} objects. ` +
      "In a tfjs model use covpool/tfjs (covPoolLayer, covPoolOp); otherwise convert with Tensor.from({ data: t.dataSync(), shape: t.shape }) " +
      "and mind the layout: tfjs convolutions give NHWC [B, H, W, C], so pass dataFormat: 'channelsLast'",
  );
}

// By tag rather than instanceof: arrays made in another realm (a vm context, jest's sandbox, a
// worker's transferred view) are still Float32Arrays.
function dtypeOfArray(a: unknown): DType | undefined {
  const tag = Object.prototype.toString.call(a);
  if (tag === '[object Float32Array]') return 'float32';
  if (tag === '[object Float64Array]') return 'float64';
  return undefined;
}

/** A view of a detached (transferred) ArrayBuffer reports length 0 and byteLength 0. */
export function isDetached(a: FloatArray): boolean {
  return a.length === 0 && a.buffer.byteLength === 0;
}

/**
 * A device name as the API spells it: 'cpu', 'cuda' (= 'cuda:0') or 'cuda:N'. Returns the canonical
 * form ('cpu' or 'cuda:N'); anything else is a RangeError.
 */
export function canonicalDevice(device: unknown, what = 'device'): string {
  if (device === 'cpu') return 'cpu';
  if (device === 'cuda') return 'cuda:0';
  if (typeof device === 'string' && /^cuda:(0|[1-9]\d{0,5})$/.test(device)) return device;
  throw new RangeError(`covpool: ${what} must be 'cpu', 'cuda' or 'cuda:N', got ${formatValue(device)}`);
}

/** @internal The native side of a device-resident tensor. */
interface DeviceSide {
  readonly handle: NativeDeviceTensor;
  /** The binary that made it (the CUDA-enabled one): every op on it runs there. */
  readonly addon: NativeAddon;
  disposed: boolean;
}

// A device tensor the program drops is freed by the native side at its next allocation of a handle
// after the garbage collector found it dead (so synchronous loops stay bounded); this frees it in a
// program that makes no further one, once the event loop turns. dispose() is the rule, this the net.
let sweepQueued = false;
const collected = new FinalizationRegistry<NativeAddon>((addon) => {
  if (sweepQueued) return;
  sweepQueued = true;
  setImmediate(() => {
    sweepQueued = false;
    addon.sweepStates();
  }).unref();
});

export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Where the data lives: 'cpu', or 'cuda:N' for a tensor on a CUDA device. */
  readonly device: string = 'cpu';
  private readonly hostData: FloatArray | undefined;
  /** @internal Set for a device tensor. */
  readonly deviceSide: DeviceSide | undefined;

  /**
   * Wraps `data` (no copy for Float32Array/Float64Array). Plain number arrays are copied into
   * the requested dtype (float32 by default). Other element types are rejected.
   */
  constructor(data: FloatArray | ArrayLike<number>, shape: readonly number[], dtype?: DType) {
    if (isTfjsTensor(data)) throw tfjsTensorError('new Tensor(data, shape) got, as its data,');
    const shp = Tensor.checkShape(shape);
    const own = dtypeOfArray(data);
    let host: FloatArray;
    if (own) {
      if (dtype && dtype !== own) throw new TypeError(`covpool: data is a ${own} array but dtype '${dtype}' was requested`);
      host = data as FloatArray;
      this.dtype = own;
    } else if (ArrayBuffer.isView(data)) {
      throw new TypeError(
        `covpool: unsupported element type ${Object.prototype.toString.call(data).slice(8, -1)}; ` +
          'expected Float32Array or Float64Array (convert with Float32Array.from(data))',
      );
    } else if (Array.isArray(data) || (data && typeof data === 'object' && typeof (data as ArrayLike<number>).length === 'number')) {
      const d = dtype ?? 'float32';
      if (d !== 'float32' && d !== 'float64') throw new TypeError(`covpool: dtype must be 'float32' or 'float64', got ${formatValue(d)}`);
      host = copyNumbers(data as ArrayLike<unknown>, shp, d);
      this.dtype = d;
    } else {
      throw new TypeError('covpool: tensor data must be a Float32Array, a Float64Array or an array of numbers');
    }
    if (isDetached(host) && shp.reduce((a, b) => a * b, 1) > 0)
      throw new TypeError('covpool: the tensor data is a view of a detached ArrayBuffer (it was transferred); pass a live array');
    const size = shp.reduce((a, b) => a * b, 1);
    if (size !== host.length)
      throw new RangeError(
        `covpool: shape ${shapeString(shp)} needs ${size} elements but the data holds ${host.length}`,
      );
    this.hostData = host;
    this.deviceSide = undefined;
    this.shape = Object.freeze(shp.slice());
  }

  /**
   * The elements, row-major, as the TypedArray the tensor wraps. A device tensor has none here:
   * reading it is an error that says to move it first (`await t.to('cpu')`).
   */
  get data(): FloatArray {
    if (this.hostData === undefined)
      throw new Error(
        `covpool: this tensor lives on ${this.device}; its data cannot be read as a ${this.dtype === 'float32' ? 'Float32Array' : 'Float64Array'} ` +
          `there. Copy it to the host first: \`(await t.to('cpu')).data\` (or t.toSync('cpu').data)`,
      );
    return this.hostData;
  }

  /** @internal A tensor for a device handle a native call returned (it takes the handle over). */
  static fromDevice(handle: NativeDeviceTensor, addon: NativeAddon, device: string, dtype: DType, shape: readonly number[]): Tensor {
    const t = Object.create(Tensor.prototype) as Tensor;
    const side: DeviceSide = { handle, addon, disposed: false };
    Object.defineProperties(t, {
      dtype: { value: dtype, enumerable: true },
      shape: { value: Object.freeze(shape.slice()), enumerable: true },
      device: { value: device, enumerable: true },
      hostData: { value: undefined },
      deviceSide: { value: side },
    });
    collected.register(t, addon, side);
    return t;
  }

  /** Whether dispose() freed this device tensor's memory (always false for host tensors). */
  get disposed(): boolean {
    return this.deviceSide?.disposed ?? false;
  }

  /**
   * Frees a device tensor's memory now (tfjs-style: dispose is the rule; a tensor the program drops
   * is freed once the garbage collector finds it). Using the tensor afterwards is an error. A
   * no-op for host tensors, whose arrays the garbage collector owns.
   */
  dispose(): void {
    const side = this.deviceSide;
    if (!side || side.disposed) return;
    side.disposed = true;
    collected.unregister(side);
    side.addon.disposeDevice(side.handle);
  }

  /**
   * The tensor on `device` ('cpu', 'cuda' = 'cuda:0', or 'cuda:N'): this tensor itself when it is
   * there already, else a copy (host arrays go through pinned staging memory). On a machine where
   * CUDA cannot be used, asking for it fails with the reason (no binary, library, driver or GPU).
   */
  to(device: string, options?: { signal?: AbortSignal }): Promise<Tensor> {
    try {
      return Promise.resolve(this.moveTo(device, true, options?.signal)).then((t) => t);
    } catch (e) {
      return Promise.reject(e);
    }
  }
  /** to(), on this thread (blocks until the copy is done). */
  toSync(device: string): Tensor {
    return this.moveTo(device, false) as Tensor;
  }

  private moveTo(deviceIn: string, async: boolean, signal?: AbortSignal): Tensor | Promise<Tensor> {
    const device = canonicalDevice(deviceIn);
    this.requireLive();
    if (device === this.device) return this;
    if (signal?.aborted) throw new Error('covpool: the copy was aborted before it started');
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const native = require('./native') as typeof import('./native');
    const control: NativeControl | undefined = undefined;
    const side = this.deviceSide;
    if (!side) {
      const addon = native.addonFor(deviceIn); // as asked: its errors name the device as the caller spelt it
      const h = addon.toDevice(this.data, deviceIn, control, async);
      const wrap = (handle: NativeDeviceTensor) => Tensor.fromDevice(handle, addon, device, this.dtype, this.shape);
      return async ? (h as Promise<NativeDeviceTensor>).then(wrap) : wrap(h as NativeDeviceTensor);
    }
    const host = side.addon.toHost(side.handle, control, async);
    const wrap = (a: FloatArray) => new Tensor(a, this.shape);
    if (device === 'cpu') return async ? (host as Promise<FloatArray>).then(wrap) : wrap(host as FloatArray);
    // Device to another device: through the host.
    return async
      ? (host as Promise<FloatArray>).then((a) => wrap(a).moveTo(device, true) as Promise<Tensor>)
      : (wrap(host as FloatArray).moveTo(device, false) as Tensor);
  }

  /** @internal Throws for a disposed device tensor. */
  requireLive(what = 'the tensor'): void {
    if (this.deviceSide?.disposed) throw new Error(`covpool: ${what} on ${this.device} was disposed; it can no longer be used`);
  }

  /**
   * A Tensor from a Tensor (returned as is) or a {data, shape} / {data, dims} object. `dtype`
   * is required of the result; `plainDType` is the dtype plain number arrays are converted to
   * when neither `dtype` nor the object says (default float32).
   */
  static from(x: TensorInput, dtype?: DType, plainDType?: DType): Tensor {
    if (x instanceof Tensor) {
      if (dtype && dtype !== x.dtype) throw new TypeError(`covpool: expected a ${dtype} tensor, got ${x.dtype}`);
      return x;
    }
    if (isTfjsTensor(x)) throw tfjsTensorError('got');
    if (x === null || typeof x !== 'object' || !('data' in x))
      throw new TypeError('covpool: expected a Tensor or an object with `data` and `shape`');
    const shape = x.shape ?? x.dims;
    if (!shape) throw new TypeError('covpool: the object has `data` but no `shape` (or `dims`)');
    const declared = x.dtype;
    if (declared !== undefined && declared !== 'float32' && declared !== 'float64')
      throw new TypeError(`covpool: dtype ${formatValue(declared)} is not supported; expected 'float32' or 'float64'`);
    const plain = !ArrayBuffer.isView(x.data);
    return new Tensor(x.data, shape, dtype ?? (declared as DType | undefined) ?? (plain ? plainDType : undefined));
  }

  static zeros(shape: readonly number[], dtype: DType = 'float32'): Tensor {
    const size = Tensor.checkShape(shape).reduce((a, b) => a * b, 1);
    return new Tensor(dtype === 'float32' ? new Float32Array(size) : new Float64Array(size), shape);
  }

  get rank(): number {
    return this.shape.length;
  }
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** Same data, another shape (no copy; a host tensor only). */
  reshape(shape: readonly number[]): Tensor {
    return new Tensor(this.data, shape);
  }

  /** A plain object in the {data, shape, dtype} form other stacks consume. */
  toObject(): { data: FloatArray; shape: number[]; dtype: DType } {
    return { data: this.data, shape: this.shape.slice(), dtype: this.dtype };
  }

  /** Element at a multi-index (for inspection and tests, not for hot loops). */
  get(...index: number[]): number {
    if (index.length !== this.shape.length) throw new RangeError(`covpool: index needs ${this.shape.length} coordinates`);
    let off = 0;
    for (let i = 0; i < index.length; i++) {
      if (!(index[i] >= 0 && index[i] < this.shape[i])) throw new RangeError(`covpool: index ${index[i]} out of range for axis ${i}`);
      off = off * this.shape[i] + index[i];
    }
    return this.data[off];
  }

  private static checkShape(shape: readonly number[]): number[] {
    if (!Array.isArray(shape)) throw new TypeError(`covpool: shape must be an array of non-negative integers, got ${formatValue(shape)}`);
    for (const d of shape)
      if (!Number.isInteger(d) || d < 0)
        throw new RangeError(`covpool: shape ${shapeString(shape)} must hold non-negative integers (got ${formatValue(d)}${typeof d === 'number' ? '' : `, a ${typeof d}`})`);
    return shape.slice();
  }
}

/**
 * Copies a plain array (or array-like) of numbers into a typed array. The length is checked
 * against the shape and the memory budget before anything is copied (an array-like can claim any
 * length), and every element must be a number: strings or objects would silently become NaN.
 */
function copyNumbers(src: ArrayLike<unknown>, shape: readonly number[], dtype: DType): FloatArray {
  const length = src.length;
  const size = shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`covpool: the data's length must be a non-negative integer, got ${formatValue(length)}`);
  if (length !== size) throw new RangeError(`covpool: shape ${shapeString(shape)} needs ${size} elements but the data holds ${length}`);
  const bytes = length * (dtype === 'float32' ? 4 : 8);
  if (bytes > copyBudget())
    throw new RangeError(`covpool: a ${dtype} tensor of ${length} elements would need ${bytes} bytes, over the memory budget of ${copyBudget()} bytes (COVPOOL_MAX_BYTES / setMaxBytes)`);
  const out = dtype === 'float32' ? new Float32Array(length) : new Float64Array(length);
  for (let i = 0; i < length; i++) {
    const v = src[i];
    if (typeof v !== 'number') throw new TypeError(`covpool: tensor data must hold numbers; element ${i} is ${formatValue(v)} (a ${v === null ? 'null' : typeof v})`);
    out[i] = v;
  }
  return out;
}
