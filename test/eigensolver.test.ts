// The CPU eigensolver (native/cpu/symmetric_eigen.h) has size-dependent paths: a fused Householder
// reduction up to n = 64, LAPACK's blocked one above; LAPACK's back-transformation below n = 128,
// a blocked one (16 reflectors a block, 32 from n = 192) from there; and ?syevd itself for matrices
// whose entries are too small or too large for an unscaled reduction. Every path is checked here
// on the matrices the layers see (rank-deficient covariances: N < C), on known spectra (clusters,
// zeros, negative values) and on matrices that are already partly reduced (diagonal and
// block-diagonal ones, where a step's reflector is the identity while an update is still pending).
import { Tensor, eighSync } from '../lib';
import { gaussian, reluFeatures, rng, withSpectrum, centeredItem } from './helpers';

const SIZES = [1, 2, 3, 5, 16, 63, 64, 65, 100, 127, 128, 129, 200];

interface Check {
  residual: number; // ||A V - V diag(l)||_F / ||A||_F
  orthogonality: number; // max |V^T V - I|
  ascending: boolean;
}

function checkEigh(a: ArrayLike<number>, n: number, dtype: 'float32' | 'float64' = 'float64'): Check & { values: Float64Array } {
  const data = dtype === 'float64' ? Float64Array.from(a) : Float32Array.from(a);
  const e = eighSync(new Tensor(data, [1, n, n]));
  const l = Float64Array.from(e.values.data);
  const v = Float64Array.from(e.vectors.data); // columns are eigenvectors
  let r2 = 0;
  let a2 = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += data[i * n + k] * v[k * n + j];
      const r = s - v[i * n + j] * l[j];
      r2 += r * r;
      a2 += data[i * n + j] * data[i * n + j];
    }
  let orth = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += v[k * n + i] * v[k * n + j];
      orth = Math.max(orth, Math.abs(s - (i === j ? 1 : 0)));
    }
  let ascending = true;
  for (let i = 1; i < n; i++) if (l[i] < l[i - 1]) ascending = false;
  return { residual: a2 > 0 ? Math.sqrt(r2 / a2) : Math.sqrt(r2), orthogonality: orth, ascending, values: l };
}

/** Covariance of ReLU features with N = round(0.77 n) < n positions: rank N - 1. */
function covariance(n: number, seed: number): Float64Array {
  const N = Math.max(2, Math.round(0.77 * n));
  const x = reluFeatures(1, n, N, seed).data;
  const xc = centeredItem(x, 0, n, N);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let k = 0; k < N; k++) s += xc[i * N + k] * xc[j * N + k];
      a[i * n + j] = a[j * n + i] = s / N;
    }
  return a;
}

/** A known spectrum with zeros, a tight cluster and negative values, in a random basis. */
function knownSpectrum(n: number): number[] {
  const g = gaussian(rng(n + 7));
  return Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 0 : i % 7 === 0 ? 1 + 1e-9 * i : i % 11 === 0 ? -0.5 * Math.abs(g()) : Math.abs(g()) * 3));
}

function blockDiagonal(n: number, seed: number): Float64Array {
  const h = Math.floor(n / 2);
  const a = new Float64Array(n * n);
  const g = gaussian(rng(seed));
  for (const [lo, hi] of [
    [0, h],
    [h, n],
  ])
    for (let i = lo; i < hi; i++) for (let j = i; j < hi; j++) a[i * n + j] = a[j * n + i] = g();
  return a;
}

const EPS64 = 2 ** -52;
const EPS32 = 2 ** -23;

describe('eigensolver: every size path, backward-stable on the matrices layers see', () => {
  test.each(SIZES)('n = %i: rank-deficient covariance (N < C)', (n) => {
    const r = checkEigh(covariance(n, n), n);
    expect(r.ascending).toBe(true);
    expect(r.residual).toBeLessThan(10 * Math.max(n, 4) * EPS64);
    expect(r.orthogonality).toBeLessThan(10 * Math.max(n, 4) * EPS64);
  });

  test.each(SIZES)('n = %i: known spectrum with zeros, clusters and negative eigenvalues', (n) => {
    const lams = knownSpectrum(n);
    const r = checkEigh(withSpectrum(lams, 100 + n), n);
    expect(r.ascending).toBe(true);
    expect(r.residual).toBeLessThan(10 * Math.max(n, 4) * EPS64);
    expect(r.orthogonality).toBeLessThan(10 * Math.max(n, 4) * EPS64);
    const sorted = lams.slice().sort((x, y) => x - y);
    const norm = Math.max(...lams.map(Math.abs));
    for (let i = 0; i < n; i++) expect(Math.abs(r.values[i] - sorted[i])).toBeLessThanOrEqual(10 * Math.max(n, 4) * EPS64 * norm);
  });

  test.each([3, 17, 64, 65, 150, 200])('n = %i: diagonal and block-diagonal matrices (identity reflectors)', (n) => {
    const diag = new Float64Array(n * n);
    for (let i = 0; i < n; i++) diag[i * n + i] = ((i * 37) % n) - n / 3;
    const d = checkEigh(diag, n);
    const expected = Array.from({ length: n }, (_, i) => ((i * 37) % n) - n / 3).sort((x, y) => x - y);
    expect(Array.from(d.values)).toEqual(expected);
    expect(d.orthogonality).toBe(0);
    const b = checkEigh(blockDiagonal(n, n), n);
    expect(b.ascending).toBe(true);
    expect(b.residual).toBeLessThan(10 * n * EPS64);
    expect(b.orthogonality).toBeLessThan(10 * n * EPS64);
  });

  test.each([16, 64, 200])('n = %i: entries near the ends of the float64 range take the rescaling path and agree', (n) => {
    const a = covariance(n, 3 * n);
    const plain = checkEigh(a, n).values;
    for (const s of [1e-150, 1e150]) {
      const r = checkEigh(a.map((x) => x * s), n);
      expect(r.residual).toBeLessThan(10 * n * EPS64);
      expect(r.orthogonality).toBeLessThan(10 * n * EPS64);
      const top = plain[n - 1];
      for (let i = 0; i < n; i++) expect(Math.abs(r.values[i] / s - plain[i])).toBeLessThan(10 * n * EPS64 * top);
    }
  });

  test.each([16, 64, 65, 128, 200])('n = %i: float32 matrices are solved in float32 to float32 accuracy', (n) => {
    const r = checkEigh(covariance(n, 5 * n), n, 'float32');
    expect(r.ascending).toBe(true);
    expect(r.residual).toBeLessThan(10 * n * EPS32);
    expect(r.orthogonality).toBeLessThan(10 * n * EPS32);
  });

  test('a batch mixes paths per item (a scaled item next to plain ones)', () => {
    const n = 64;
    const a = covariance(n, 11);
    const batch = new Float64Array(3 * n * n);
    batch.set(a, 0);
    batch.set(a.map((x) => x * 1e-160), n * n);
    batch.set(a, 2 * n * n);
    const e = eighSync(new Tensor(batch, [3, n, n]));
    for (let i = 0; i < n; i++) {
      expect(e.values.data[i]).toBe(e.values.data[2 * n + i]);
      expect(Math.abs(e.values.data[n + i] / 1e-160 - e.values.data[i])).toBeLessThan(10 * n * EPS64 * e.values.data[n - 1]);
    }
  });
});
