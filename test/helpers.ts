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
