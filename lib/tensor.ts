// Typed tensors: a float32/float64 TypedArray plus a shape. A Tensor wraps the caller's array
// without copying; conversions accept the plain {data, shape} objects that TensorFlow.js
// (`dataSync()` + `.shape`) and onnxruntime-node tensors provide.

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

export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: FloatArray;

  /**
   * Wraps `data` (no copy for Float32Array/Float64Array). Plain number arrays are copied into
   * the requested dtype (float32 by default). Other element types are rejected.
   */
  constructor(data: FloatArray | ArrayLike<number>, shape: readonly number[], dtype?: DType) {
    if (isTfjsTensor(data)) throw tfjsTensorError('new Tensor(data, shape) got, as its data,');
    const shp = Tensor.checkShape(shape);
    const own = dtypeOfArray(data);
    if (own) {
      if (dtype && dtype !== own) throw new TypeError(`covpool: data is a ${own} array but dtype '${dtype}' was requested`);
      this.data = data as FloatArray;
      this.dtype = own;
    } else if (ArrayBuffer.isView(data)) {
      throw new TypeError(
        `covpool: unsupported element type ${Object.prototype.toString.call(data).slice(8, -1)}; ` +
          'expected Float32Array or Float64Array (convert with Float32Array.from(data))',
      );
    } else if (Array.isArray(data) || (data && typeof data === 'object' && typeof (data as ArrayLike<number>).length === 'number')) {
      const d = dtype ?? 'float32';
      if (d !== 'float32' && d !== 'float64') throw new TypeError(`covpool: dtype must be 'float32' or 'float64', got ${formatValue(d)}`);
      this.data = copyNumbers(data as ArrayLike<unknown>, shp, d);
      this.dtype = d;
    } else {
      throw new TypeError('covpool: tensor data must be a Float32Array, a Float64Array or an array of numbers');
    }
    if (isDetached(this.data) && shp.reduce((a, b) => a * b, 1) > 0)
      throw new TypeError('covpool: the tensor data is a view of a detached ArrayBuffer (it was transferred); pass a live array');
    const size = shp.reduce((a, b) => a * b, 1);
    if (size !== this.data.length)
      throw new RangeError(
        `covpool: shape ${shapeString(shp)} needs ${size} elements but the data holds ${this.data.length}`,
      );
    this.shape = Object.freeze(shp.slice());
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
    return this.data.length;
  }

  /** Same data, another shape (no copy). */
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
