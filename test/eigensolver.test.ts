// The CPU eigensolver (native/cpu/symmetric_eigen.h) has size-dependent paths: a fused Householder
// reduction up to n = 64, LAPACK's blocked one above; for the tridiagonal problem (float64) the
// lane-interleaved QL iteration for batches up to n = 60, covpool's divide and conquer above n = 25
// otherwise (its merges of 16 or more roots by the vector root finder, smaller ones by LAPACK's
// ?laed3), ?stedc for float32 and for matrices that split; the blocked back-transformation (16
// reflectors a block, 32 from n = 192); and ?syevd itself for matrices whose entries are too small
// or too large for an unscaled reduction. Every path is checked here
// on the matrices the layers see (rank-deficient covariances: N < C), on known spectra (clusters,
// zeros, negative values) and on matrices that are already partly reduced (diagonal and
// block-diagonal ones, where a step's reflector is the identity while an update is still pending).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { CovPoolLayer, Tensor, eighSync } from '../lib';
import { gaussian, reluFeatures, rng, withSpectrum, centeredItem } from './helpers';

const SIZES = [1, 2, 3, 5, 16, 25, 26, 63, 64, 65, 100, 127, 128, 129, 200, 256];

interface Check {
  residual: number; // ||A V - V diag(l)||_F / ||A||_F
  orthogonality: number; // max |V^T V - I|
  ascending: boolean;
}

/** How well values l and eigenvectors v (columns, row-major n x n) decompose the n x n matrix a. */
function measure(a: ArrayLike<number>, l: ArrayLike<number>, v: ArrayLike<number>, n: number): Check {
  let r2 = 0;
  let a2 = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += a[i * n + k] * v[k * n + j];
      const r = s - v[i * n + j] * l[j];
      r2 += r * r;
      a2 += a[i * n + j] * a[i * n + j];
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
  return { residual: a2 > 0 ? Math.sqrt(r2 / a2) : Math.sqrt(r2), orthogonality: orth, ascending };
}

/** eigh of one matrix, measured. */
function checkEigh(a: ArrayLike<number>, n: number, dtype: 'float32' | 'float64' = 'float64'): Check & { values: Float64Array } {
  const data = dtype === 'float64' ? Float64Array.from(a) : Float32Array.from(a);
  const e = eighSync(new Tensor(data, [1, n, n]));
  const l = Float64Array.from(e.values.data);
  return { ...measure(data, l, e.vectors.data, n), values: l };
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

  // Batches of 3 or more matrices up to n = 60 take the lane-interleaved QL iteration on CPUs with
  // AVX2 (native/cpu/tridiagonal_batched.h); single matrices, larger ones and other CPUs the divide
  // and conquer (or ?stedc up to n = 25).
  test.each([5, 16, 60, 61, 96])('n = %i: a batch of 7 (groups of 4 and 3) agrees with the matrices solved one by one', (n) => {
    const B = 7;
    const mats = Array.from({ length: B }, (_, b) => (b === 5 ? withSpectrum(knownSpectrum(n), 300 + n) : covariance(n, 40 * n + b)));
    const batch = new Float64Array(B * n * n);
    mats.forEach((m, b) => batch.set(m, b * n * n));
    const e = eighSync(new Tensor(batch, [B, n, n]));
    for (let b = 0; b < B; b++) {
      const l = e.values.data.slice(b * n, (b + 1) * n);
      const v = e.vectors.data.slice(b * n * n, (b + 1) * n * n);
      const a = mats[b];
      const r = measure(a, l, v, n);
      expect(r.residual).toBeLessThan(10 * n * EPS64);
      expect(r.orthogonality).toBeLessThan(10 * n * EPS64);
      expect(r.ascending).toBe(true);
      const alone = checkEigh(a, n).values;
      const top = Math.max(Math.abs(alone[0]), Math.abs(alone[n - 1]));
      for (let i = 0; i < n; i++) expect(Math.abs(l[i] - alone[i])).toBeLessThan(10 * n * EPS64 * top);
    }
  });

  // The divide and conquer (native/cpu/tridiagonal_divide_conquer.h) on the spectra that stress it:
  // no deflation at all (every root through the vector root finder), heavy deflation (many equal
  // eigenvalues: the zero eigenvalues of rank-deficient covariances), roots crowded against poles
  // (tight clusters, eigenvalues graded over many orders of magnitude), and a tridiagonal input
  // that splits (?stedc then). Exact eigenvalues where they are known.
  const tridiagonal = (diag: number[], off: number[]): Float64Array => {
    const n = diag.length;
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      a[i * n + i] = diag[i];
      if (i + 1 < n) a[i * n + i + 1] = a[(i + 1) * n + i] = off[i];
    }
    return a;
  };
  test.each([40, 150, 300])('n = %i: divide and conquer, the 1D Laplacian (no deflation; eigenvalues 2 - 2 cos(k pi / (n + 1)))', (n) => {
    const r = checkEigh(tridiagonal(new Array(n).fill(2), new Array(n - 1).fill(-1)), n);
    expect(r.residual).toBeLessThan(10 * n * EPS64);
    expect(r.orthogonality).toBeLessThan(10 * n * EPS64);
    for (let k = 1; k <= n; k++) expect(Math.abs(r.values[k - 1] - (2 - 2 * Math.cos((k * Math.PI) / (n + 1))))).toBeLessThan(10 * n * EPS64 * 4);
  });
  test.each([64, 256])('n = %i: divide and conquer, a covariance of rank n / 8 (most eigenvalues deflate)', (n) => {
    const N = n / 8 + 1;
    const xc = centeredItem(reluFeatures(1, n, N, 5 * n).data, 0, n, N);
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let k = 0; k < N; k++) a[i * n + j] += (xc[i * N + k] * xc[j * N + k]) / N;
    const r = checkEigh(a, n);
    expect(r.residual).toBeLessThan(10 * n * EPS64);
    expect(r.orthogonality).toBeLessThan(10 * n * EPS64);
    const top = r.values[n - 1];
    for (let i = 0; i < n - N + 1; i++) expect(Math.abs(r.values[i])).toBeLessThan(10 * n * EPS64 * top);
  });
  test.each([100, 256])('n = %i: divide and conquer, tight clusters and a spectrum graded over 12 orders of magnitude', (n) => {
    const clustered = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : i % 3 === 1 ? 1 + 1e-12 * i : 2 + 1e-10 * i));
    const graded = Array.from({ length: n }, (_, i) => 10 ** ((-12 * i) / (n - 1)));
    for (const lams of [clustered, graded]) {
      const r = checkEigh(withSpectrum(lams, 17 * n), n);
      expect(r.residual).toBeLessThan(10 * n * EPS64);
      expect(r.orthogonality).toBeLessThan(10 * n * EPS64);
      // 20 n eps: forming the matrix Q diag(l) Q^T rounds too; at n = 256 the clustered matrix's
      // eigenvalues lie 1.8e-12 from l by LAPACK's dsyevd as well.
      const sorted = lams.slice().sort((x, y) => x - y);
      for (let i = 0; i < n; i++) expect(Math.abs(r.values[i] - sorted[i])).toBeLessThan(20 * n * EPS64 * sorted[n - 1]);
    }
  });
  // Eigenvalues a few ulps apart: the divide and conquer's deflation (?laed2) rotates close pairs
  // and changes the deflated values after they were ordered, which once left neighbours 1-4 ulps
  // out of order from n = 61 on. eigh promises ascending values, as LAPACK gives them, with the
  // eigenvectors in the same order: checked by reconstructing A from the result.
  const CLUSTERED_SIZES = [61, 62, 63, 64, 65, 66, 70, 83, 96, 109, 128, 135, 148, 161, 187, 213, 252, 256];
  const clusters = (n: number): Record<string, number[]> => ({
    'five values 2^-23 apart, repeated': Array.from({ length: n }, (_, i) => 1 + (i % 5) * EPS32),
    'values 1e-14 apart around 1': Array.from({ length: n }, (_, i) => 1 + 1e-14 * ((i * 7) % n)),
    'two clusters graded by 1e-13': Array.from({ length: n }, (_, i) => (i % 2 ? 1 : 2) * (1 + 1e-13 * i)),
  });
  /** ||A - V diag(l) V^T||_F / ||A||_F, with V's columns the eigenvectors (row-major n x n). */
  const reconstruction = (a: ArrayLike<number>, l: ArrayLike<number>, v: ArrayLike<number>, n: number): number => {
    let r2 = 0;
    let a2 = 0;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += v[i * n + k] * l[k] * v[j * n + k];
        r2 += (a[i * n + j] - s) ** 2;
        a2 += a[i * n + j] ** 2;
      }
    return Math.sqrt(r2 / a2);
  };
  describe.each(['float64', 'float32'] as const)('%s: clustered spectra come back ascending and still reconstruct A', (dtype) => {
    const ulp = dtype === 'float64' ? EPS64 : EPS32;
    test.each(CLUSTERED_SIZES)('n = %i', (n) => {
      for (const [name, lams] of Object.entries(clusters(n))) {
        const a = withSpectrum(lams, 3 * n + 1);
        const data = dtype === 'float64' ? a : Float32Array.from(a);
        const e = eighSync(new Tensor(data, [1, n, n]));
        const l = e.values.data;
        const descents: string[] = [];
        for (let i = 1; i < n; i++) if (l[i] < l[i - 1]) descents.push(`${i - 1}: ${l[i - 1]} > ${l[i]}`);
        expect({ name, descents }).toEqual({ name, descents: [] });
        expect(reconstruction(data, l, e.vectors.data, n)).toBeLessThan(10 * n * ulp);
        expect(measure(data, l, e.vectors.data, n).orthogonality).toBeLessThan(10 * n * ulp);
      }
    });
  });

  test('divide and conquer: a tridiagonal matrix with a zero off-diagonal entry splits and is solved by ?stedc', () => {
    const n = 120;
    const off = Array.from({ length: n - 1 }, (_, i) => (i === 70 ? 0 : 0.5 + 0.001 * i));
    const r = checkEigh(tridiagonal(Array.from({ length: n }, (_, i) => Math.sin(i)), off), n);
    expect(r.ascending).toBe(true);
    expect(r.residual).toBeLessThan(10 * n * EPS64);
    expect(r.orthogonality).toBeLessThan(10 * n * EPS64);
  });

  test('a batch mixes paths per item (a scaled item next to plain ones)', () => {
    const n = 64;
    const a = covariance(n, 11);
    const batch = new Float64Array(5 * n * n);
    for (const b of [0, 2, 3, 4]) batch.set(a, b * n * n);
    batch.set(a.map((x) => x * 1e-160), n * n);
    const e = eighSync(new Tensor(batch, [5, n, n]));
    for (let i = 0; i < n; i++) {
      // items 0, 2, 3 share a group (and lanes): the same matrix gives the same numbers in any lane
      expect(e.values.data[i]).toBe(e.values.data[2 * n + i]);
      expect(e.values.data[i]).toBe(e.values.data[3 * n + i]);
      expect(Math.abs(e.values.data[4 * n + i] - e.values.data[i])).toBeLessThan(10 * n * EPS64 * e.values.data[n - 1]);
      expect(Math.abs(e.values.data[n + i] / 1e-160 - e.values.data[i])).toBeLessThan(10 * n * EPS64 * e.values.data[n - 1]);
    }
  });

  test('the baseline kernels (COVPOOL_CPU_BASELINE=1: what CPUs without AVX2 run) agree with the default ones', () => {
    // A fresh process, since the kernel choice is made once per process. It solves the same batch
    // (?stedc for the tridiagonal problems, the fused reduction without AVX2), measured here like
    // every other result; its eigenvalues and the layer's square roots must match this process's.
    const root = path.join(__dirname, '..');
    if (!fs.existsSync(path.join(root, 'dist', 'lib', 'index.js'))) throw new Error('this test runs dist/ in a child: run `npm run build` first');
    const n = 64;
    const B = 7;
    const batch = new Float64Array(B * n * n);
    for (let b = 0; b < B; b++) batch.set(covariance(n, 900 + b), b * n * n);
    const features = reluFeatures(B, n, 49, 77);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-baseline-'));
    fs.writeFileSync(path.join(dir, 'a.bin'), Buffer.from(batch.buffer));
    fs.writeFileSync(path.join(dir, 'x.bin'), Buffer.from(Float64Array.from(features.data).buffer));
    const script = `
      const c = require('./dist/lib'), fs = require('fs'), dir = ${JSON.stringify(dir)};
      const n = ${n}, B = ${B};
      const read = (f) => { const b = fs.readFileSync(dir + '/' + f); return new Float64Array(b.buffer, b.byteOffset, b.length / 8); };
      const a = read('a.bin'), x = read('x.bin');
      const e = c.eighSync(new c.Tensor(Float64Array.from(a), [B, n, n]));
      fs.writeFileSync(dir + '/vectors.bin', Buffer.from(Float64Array.from(e.vectors.data).buffer));
      const s = new c.CovPoolLayer('svd').forwardSync(new c.Tensor(Float64Array.from(x), [B, n, 49])).output.data;
      fs.writeFileSync(dir + '/out.json', JSON.stringify({ values: Array.from(e.values.data), s: Array.from(s) }));
    `;
    const r = spawnSync(process.execPath, ['-e', script], { cwd: root, env: { ...process.env, COVPOOL_CPU_BASELINE: '1' }, encoding: 'utf8' });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    const out = JSON.parse(fs.readFileSync(path.join(dir, 'out.json'), 'utf8'));
    const raw = fs.readFileSync(path.join(dir, 'vectors.bin'));
    const vectors = new Float64Array(raw.buffer, raw.byteOffset, raw.length / 8);
    fs.rmSync(dir, { recursive: true, force: true });
    for (let b = 0; b < B; b++) {
      const r = measure(batch.subarray(b * n * n, (b + 1) * n * n), out.values.slice(b * n, (b + 1) * n), vectors.subarray(b * n * n, (b + 1) * n * n), n);
      expect(r.residual).toBeLessThan(10 * n * EPS64);
      expect(r.orthogonality).toBeLessThan(10 * n * EPS64);
    }
    const here = eighSync(new Tensor(batch, [B, n, n])).values.data;
    for (let b = 0; b < B; b++) {
      const top = here[b * n + n - 1];
      for (let i = 0; i < n; i++) expect(Math.abs(out.values[b * n + i] - here[b * n + i])).toBeLessThan(10 * n * EPS64 * top);
    }
    // The roots agree to the solvers' rounding of the null eigenvalues (sqrt of ~1e-16 noise).
    const s = new CovPoolLayer('svd').forwardSync(features).output.data;
    let d2 = 0;
    let s2 = 0;
    for (let i = 0; i < s.length; i++) {
      d2 += (s[i] - out.s[i]) ** 2;
      s2 += s[i] ** 2;
    }
    expect(Math.sqrt(d2 / s2)).toBeLessThan(1e-6);
  });
});
