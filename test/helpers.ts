// Shared test utilities: seeded random inputs shaped like real GCP data, small dense linear
// algebra in float64 for independent references, and finite differences.
import { Tensor } from '../lib';

/** Deterministic PRNG (mulberry32) so every run sees the same inputs. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box-Muller). */
export function gaussian(r: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/** ReLU features [B, C, N]: what a CNN's last conv layer hands a GCP head. */
export function reluFeatures(B: number, C: number, N: number, seed = 1, dtype: 'float32' | 'float64' = 'float64'): Tensor {
  const g = gaussian(rng(seed));
  const n = B * C * N;
  const data = dtype === 'float32' ? new Float32Array(n) : new Float64Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.max(0, g());
  return new Tensor(data, [B, C, N]);
}

/** n x n matrices as row-major Float64Arrays. */
export function matmul(a: ArrayLike<number>, b: ArrayLike<number>, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      for (let j = 0; j < n; j++) c[i * n + j] += aik * b[k * n + j];
    }
  return c;
}

export function transpose(a: ArrayLike<number>, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j];
  return t;
}

/** Random orthogonal matrix (Gram-Schmidt on Gaussian columns). */
export function randomOrthogonal(n: number, seed: number): Float64Array {
  const g = gaussian(rng(seed));
  const q = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const v = new Float64Array(n).map(() => g());
    for (let k = 0; k < j; k++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += v[i] * q[i * n + k];
      for (let i = 0; i < n; i++) v[i] -= d * q[i * n + k];
    }
    const nv = Math.hypot(...v);
    for (let i = 0; i < n; i++) q[i * n + j] = v[i] / nv;
  }
  return q;
}

/** Symmetric matrix with the given eigenvalues: Q diag(l) Q^T. */
export function withSpectrum(l: number[], seed: number): Float64Array {
  const n = l.length;
  const q = randomOrthogonal(n, seed);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += q[i * n + k] * l[k] * q[j * n + k];
      a[i * n + j] = s;
    }
  // exact symmetry
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) a[j * n + i] = a[i * n + j];
  return a;
}

/** Symmetric random direction of unit Frobenius norm. */
export function symmetricDirection(n: number, seed: number): Float64Array {
  const g = gaussian(rng(seed));
  const e = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) e[i * n + j] = e[j * n + i] = g();
  const s = Math.hypot(...e);
  return e.map((v) => v / s);
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Relative difference ||a - b|| / max(||b||, tiny). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-300);
}

/** Central finite difference of a scalar function along a direction. */
export function centralDiff(f: (h: number) => number, h: number): number {
  return (f(h) - f(-h)) / (2 * h);
}

// ---- API/robustness helpers (tensor, errors, async, layer tests) ---------------------------

/**
 * Detaches an ArrayBuffer the way postMessage/transfer does, leaving `a` a zero-length view.
 * Returns `a` for chaining.
 */
export function detach<T extends ArrayBufferView>(a: T): T {
  structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] });
  return a;
}

/** True when two typed arrays have the same element type, length and bytes (NaN/-0 exact). */
export function sameBits(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (Object.prototype.toString.call(a) !== Object.prototype.toString.call(b)) return false;
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** The error class name of a thrown value. Errors built by the native addon come from Node's main
 * realm, not jest's sandbox, so `instanceof TypeError` fails for them; compare names instead. */
export function errorName(e: unknown): string {
  if (Object.prototype.toString.call(e) !== '[object Error]') return `not an Error: ${String(e)}`;
  return (e as Error).name;
}

/** Asserts that `f()` throws an error of class `name` (by name: realm-independent) whose message matches `re`. */
export function expectThrow(f: () => unknown, name: 'Error' | 'TypeError' | 'RangeError', re: RegExp): Error {
  let thrown: unknown = undefined;
  let threw = false;
  try {
    f();
  } catch (e) {
    threw = true;
    thrown = e;
  }
  if (!threw) throw new Error(`expected a ${name} matching ${re}, but nothing was thrown`);
  expect({ name: errorName(thrown), message: (thrown as Error).message }).toEqual({ name, message: expect.stringMatching(re) });
  return thrown as Error;
}

/**
 * Asserts that the async call `f()` returns a promise (no synchronous throw) and that the promise
 * rejects with an error of class `name` whose message matches `re`.
 */
export async function expectReject(
  f: () => Promise<unknown>,
  name: 'Error' | 'TypeError' | 'RangeError',
  re: RegExp,
): Promise<Error> {
  let p: Promise<unknown> | undefined;
  let syncError: unknown = undefined;
  try {
    p = f();
  } catch (e) {
    syncError = e;
  }
  if (syncError !== undefined)
    throw new Error(`expected a rejected promise, but the async call threw synchronously: ${String(syncError)}`);
  expect(p).toBeInstanceOf(Promise);
  let rejected: unknown = undefined;
  let didReject = false;
  try {
    await p;
  } catch (e) {
    didReject = true;
    rejected = e;
  }
  if (!didReject) throw new Error(`expected the promise to reject with a ${name} matching ${re}, but it resolved`);
  expect({ name: errorName(rejected), message: (rejected as Error).message }).toEqual({ name, message: expect.stringMatching(re) });
  return rejected as Error;
}

// ---- numerical helpers for the forward / backward / identity / Pade suites ----------------
import { eighSync, sqrtmBackwardSync, sqrtmSync } from '../lib';


/** A dense n x n matrix of standard normal entries (not symmetric). */
export function randomSquare(n: number, seed: number): Float64Array {
  const g = gaussian(rng(seed));
  return new Float64Array(n * n).map(() => g());
}

/** sym(M) = (M + M^T) / 2. */
export function symPart(a: ArrayLike<number>, n: number): Float64Array {
  const s = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) s[i * n + j] = 0.5 * (a[i * n + j] + a[j * n + i]);
  return s;
}

export function frobeniusNorm(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}

/** V diag(d) V^T for V with eigenvectors as columns (row-major n x n). */
export function reconstructFromEigen(v: ArrayLike<number>, d: ArrayLike<number>, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += v[i * n + k] * d[k] * v[j * n + k];
      out[i * n + j] = s;
    }
  return out;
}

/** Horner evaluation of sum_k c_k x^k. */
export function hornerEval(c: ArrayLike<number>, x: number): number {
  let acc = c[c.length - 1];
  for (let k = c.length - 2; k >= 0; k--) acc = acc * x + c[k];
  return acc;
}

/** The first `terms` Taylor coefficients of P(x)/Q(x) (Q(0) != 0), by power-series division. */
export function powerSeriesQuotient(p: ArrayLike<number>, q: ArrayLike<number>, terms: number): number[] {
  const c: number[] = [];
  for (let k = 0; k < terms; k++) {
    let s = k < p.length ? p[k] : 0;
    for (let j = 1; j <= Math.min(k, q.length - 1); j++) s -= q[j] * c[k - j];
    c.push(s / q[0]);
  }
  return c;
}

/** One n x n float64 matrix as a [1, n, n] tensor (copied). */
export function oneMatrix(a: ArrayLike<number>, n: number): Tensor {
  return new Tensor(Float64Array.from(a), [1, n, n]);
}

/** Square root of one float64 matrix by a method spec (anything sqrtmSync accepts). */
export function sqrtmOne(a: ArrayLike<number>, n: number, spec: Parameters<typeof sqrtmSync>[1]): Float64Array {
  return Float64Array.from(sqrtmSync(oneMatrix(a, n), spec).output.data);
}

/** dL/dA (symmetric representative) of L = <W, S(A)> for one float64 matrix. */
export function sqrtmGradOne(a: ArrayLike<number>, n: number, spec: Parameters<typeof sqrtmSync>[1], w: ArrayLike<number>): Float64Array {
  const r = sqrtmSync(oneMatrix(a, n), spec);
  return Float64Array.from(sqrtmBackwardSync(r.state, oneMatrix(w, n)).data);
}

/** Eigendecomposition of one float64 symmetric matrix: ascending values, eigenvectors as columns. */
export function eighOne(a: ArrayLike<number>, n: number): { values: Float64Array; vectors: Float64Array } {
  const e = eighSync(oneMatrix(a, n));
  return { values: Float64Array.from(e.values.data), vectors: Float64Array.from(e.vectors.data) };
}

/** Batch item b of features [B, c, n], each channel centered over its n positions (c x n, float64). */
export function centeredItem(x: ArrayLike<number>, b: number, c: number, n: number): Float64Array {
  const xc = new Float64Array(c * n);
  for (let i = 0; i < c; i++) {
    let mean = 0;
    for (let k = 0; k < n; k++) mean += x[(b * c + i) * n + k];
    mean /= n;
    for (let k = 0; k < n; k++) xc[i * n + k] = x[(b * c + i) * n + k] - mean;
  }
  return xc;
}
