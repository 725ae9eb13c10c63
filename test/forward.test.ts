// Forward passes: every square-root method against S·S = A and against independent float64
// references computed here in plain JS (eigen reconstruction, the Newton-Schulz recurrence, the
// scalar Pade approximant of mpa-lya), plus covariance pooling, triangular vectorization, the
// eigendecomposition and float32 inputs.
import { CovPoolLayer, Tensor, covpoolSync, eighSync, padeCoefficients, sqrtmSync, triuvecSync } from '../lib';
import {
  eighOne,
  frobeniusNorm,
  hornerEval,
  matmul,
  randomOrthogonal,
  reconstructFromEigen,
  relErr,
  reluFeatures,
  sqrtmGradOne,
  sqrtmOne,
  symPart,
  transpose,
  withSpectrum,
  centeredItem,
} from './helpers';

const EPS64 = 2 ** -52;

// A well-conditioned SPD test matrix: eigenvalues spread over 0.1..2 in a random basis.
const SPECTRUM = [0.1, 0.3, 0.5, 0.7, 1.0, 1.3, 1.6, 2.0];
const C = SPECTRUM.length;
const A = withSpectrum(SPECTRUM, 3);

/** The exact principal square root U diag(sqrt l) U^T, from the library's own eigh. */
function exactSqrt(a: Float64Array, n: number): Float64Array {
  const e = eighOne(a, n);
  return reconstructFromEigen(e.vectors, Array.from(e.values, (l) => Math.sqrt(l)), n);
}

function maxAsymmetry(s: ArrayLike<number>, n: number): number {
  let m = 0;
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) m = Math.max(m, Math.abs(s[i * n + j] - s[j * n + i]));
  return m;
}

/** The Newton-Schulz recurrence of iSQRT-COV in plain JS: S = sqrt(tau) Y_T with A_hat = A / tau. */
function newtonSchulzReference(a: Float64Array, n: number, iters: number, norm: 'trace' | 'frobenius'): Float64Array {
  let tau = 0;
  if (norm === 'trace') for (let i = 0; i < n; i++) tau += a[i * n + i];
  else tau = frobeniusNorm(a);
  const threeMinus = (m: Float64Array) => {
    const p = m.map((v) => -0.5 * v);
    for (let i = 0; i < n; i++) p[i * n + i] += 1.5;
    return p;
  };
  let y: Float64Array = a.map((v) => v / tau);
  let z: Float64Array = new Float64Array(n * n);
  for (let i = 0; i < n; i++) z[i * n + i] = 1;
  for (let k = 1; k < iters; k++) {
    const p = threeMinus(matmul(z, y, n));
    y = matmul(y, p, n);
    z = matmul(p, z, n);
  }
  const yT = matmul(y, threeMinus(matmul(z, y, n)), n);
  return yT.map((v) => v * Math.sqrt(tau));
}

describe('matrix square root forward, float64, well-conditioned input', () => {
  const sRef = exactSqrt(A, C);

  // All eigen-based methods share the exact forward U diag(sqrt l) U^T; their names differ only in
  // the backward. (svd-topn keeps all C eigenvalues here, so it is exact too.)
  const eigenSpecs = [
    'svd',
    'svd-trunc',
    { method: 'svd-topn' as const, n: C },
    'svd-taylor',
    'svd-pade',
    'svd-pi',
    'svd-newton',
    'svd-lyap',
  ] as const;
  test.each(eigenSpecs.map((s) => [JSON.stringify(s), s]))('%s: S·S = A and S is the symmetric principal root', (_name, spec) => {
    const s = sqrtmOne(A, C, spec);
    expect(relErr(matmul(s, s, C), A)).toBeLessThan(1e-12);
    expect(relErr(s, sRef)).toBeLessThan(1e-12);
    expect(maxAsymmetry(s, C)).toBeLessThan(1e-14);
  });

  test('eigen methods give the same S with trace or Frobenius normalization (the root is homogeneous)', () => {
    const base = sqrtmOne(A, C, 'svd');
    for (const normalization of ['trace', 'frobenius'] as const) {
      expect(relErr(sqrtmOne(A, C, { method: 'svd', normalization }), base)).toBeLessThan(1e-13);
      expect(relErr(sqrtmOne(A, C, { method: 'svd-lyap', normalization }), base)).toBeLessThan(1e-13);
    }
  });

  test('ns with 40 iterations converges to the square root (trace and Frobenius normalization)', () => {
    for (const normalization of ['trace', 'frobenius'] as const) {
      const s = sqrtmOne(A, C, { method: 'ns', iterations: 40, normalization });
      expect(relErr(matmul(s, s, C), A)).toBeLessThan(1e-12);
      expect(relErr(s, sRef)).toBeLessThan(1e-12);
    }
  });

  test('ns computes exactly the Newton-Schulz recurrence (checked against a JS implementation)', () => {
    for (const iters of [1, 2, 3, 5, 8])
      for (const normalization of ['trace', 'frobenius'] as const) {
        const s = sqrtmOne(A, C, { method: 'ns', iterations: iters, normalization });
        expect(relErr(s, newtonSchulzReference(A, C, iters, normalization))).toBeLessThan(1e-13);
      }
    // The default (5 iterations) is an approximation on this spectrum, not the exact root: the
    // smallest normalized eigenvalue 0.1/7.5 has not converged yet.
    const s5 = sqrtmOne(A, C, 'ns');
    expect(relErr(matmul(s5, s5, C), A)).toBeGreaterThan(1e-3);
  });

  test('symmetric products are exact at every size their splitting tells apart', () => {
    // The CPU forms each symmetric product's upper triangle with its own GEMM kernels where the
    // column count is a multiple of the vector width (native/cpu/small_gemm.h: tiles of 6 or 8 rows,
    // two vectors wide, stopping at the diagonal), and otherwise by a staircase of OpenBLAS GEMMs up
    // to 64 rows and halving above (gemmUpper in native/cpu/blas.h), in the three transpose patterns
    // the methods use. These sizes give one-row blocks, uneven last steps, exactly 64, one past it,
    // two levels of halving with remainders, and for the kernels (float64: 4 lanes with AVX2, 8
    // with AVX-512) odd and even numbers of vectors and every remainder of the row blocks.
    // bench/native/gemm_check.cpp checks the kernels themselves, shape by shape.
    for (const n of [3, 9, 24, 31, 40, 64, 65, 100, 136]) {
      const spectrum = Array.from({ length: n }, (_, i) => 0.2 + (1.8 * i) / (n - 1));
      const a = withSpectrum(spectrum, 40 + n);
      // ns: Z Y, Y P and P Z, untransposed
      expect(relErr(sqrtmOne(a, n, { method: 'ns', iterations: 3 }), newtonSchulzReference(a, n, 3, 'trace'))).toBeLessThan(1e-12);
      // svd: S = V^T V with V = diag(l^1/4) U^T, the left factor transposed
      expect(relErr(sqrtmOne(a, n, 'svd'), exactSqrt(a, n))).toBeLessThan(1e-12);
      // svd-lyap's backward: dA = U [(U^T G U) o 1/(sqrt l_i + sqrt l_j)] U^T, whose products run
      // with the right factor transposed, then the left
      const w = symPart(withSpectrum(spectrum.map((l, i) => (i % 2 ? -l : l)), 90 + n), n);
      const { values, vectors: u } = eighOne(a, n);
      const sq = Array.from(values, Math.sqrt);
      const mid = matmul(matmul(transpose(u, n), w, n), u, n).map((v, k) => v / (sq[Math.floor(k / n)] + sq[k % n]));
      expect(relErr(sqrtmGradOne(a, n, 'svd-lyap', w), matmul(matmul(u, mid, n), transpose(u, n), n))).toBeLessThan(1e-12);
    }
  });

  test('mpa-lya computes sqrt(tau) Q(Z)^-1 P(Z) of the [m/m] Pade approximant of sqrt(1 - z)', () => {
    // Z = I - A/tau commutes with A, so the forward is the scalar function
    //   s(l) = sqrt(tau) P(1 - l/tau) / Q(1 - l/tau)
    // applied to each eigenvalue; that is evaluated here from the published coefficients.
    const tau = frobeniusNorm(A);
    const e = eighOne(A, C);
    for (const degree of [3, 5, 8]) {
      const { p, q } = padeCoefficients('sqrt', degree);
      const sc = Array.from(e.values, (l) => Math.sqrt(tau) * (hornerEval(p, 1 - l / tau) / hornerEval(q, 1 - l / tau)));
      const ref = reconstructFromEigen(e.vectors, sc, C);
      const s = sqrtmOne(A, C, degree === 5 ? 'mpa-lya' : { method: 'mpa-lya', degree });
      // Rounding only: the matrix polynomials sum terms with coefficients up to ~10 in magnitude.
      expect(relErr(s, ref)).toBeLessThan(5e-12);

      // S·S = A only up to the approximant's error. Its exact size in the Frobenius norm is
      // ||diag(s_i^2 - l_i)|| / ||diag(l_i)||; we allow that plus rounding. For [5/5] on this
      // spectrum the error is ~2.6e-3, dominated by the smallest eigenvalue (z = 1 - 0.1/3.18 is
      // near the branch point z = 1 where the approximant is weakest).
      const predicted = Math.sqrt(sc.reduce((acc, si, i) => acc + (si * si - e.values[i]) ** 2, 0)) / frobeniusNorm(e.values);
      const err = relErr(matmul(s, s, C), A);
      expect(err).toBeLessThan(predicted * 1.001 + 1e-12);
      expect(err).toBeGreaterThan(predicted * 0.999);
      if (degree === 5) expect(err).toBeLessThan(5e-3);
    }
  });

  test('higher Pade degree makes mpa-lya more accurate', () => {
    const errs = [3, 5, 8, 12].map((degree) => {
      const s = sqrtmOne(A, C, { method: 'mpa-lya', degree });
      return relErr(matmul(s, s, C), A);
    });
    for (let i = 1; i < errs.length; i++) expect(errs[i]).toBeLessThan(errs[i - 1]);
    expect(errs[3]).toBeLessThan(1e-4);
  });

  test('batches: every item gets its own square root', () => {
    const mats = [withSpectrum(SPECTRUM, 21), withSpectrum([0.2, 0.4, 0.9, 1.1, 1.5, 3, 4, 5], 22), withSpectrum(SPECTRUM.map((l) => 10 * l), 23)];
    const batch = new Tensor(Float64Array.from(mats.flatMap((m) => Array.from(m))), [3, C, C]);
    for (const spec of ['svd', 'svd-pade', { method: 'ns' as const, iterations: 40 }] as const) {
      const out = sqrtmSync(batch, spec).output.data;
      for (let b = 0; b < 3; b++) {
        const s = out.slice(b * C * C, (b + 1) * C * C);
        expect(relErr(matmul(s, s, C), mats[b])).toBeLessThan(1e-12);
      }
    }
  });
});

describe('svd-topn', () => {
  test('keeps exactly the n largest eigenvalues and floors the rest at eps', () => {
    const spec6 = [0.05, 0.2, 0.6, 1.1, 1.7, 2.5];
    const n6 = spec6.length;
    const a = withSpectrum(spec6, 9);
    const e = eighOne(a, n6);
    for (const keep of [1, 3, 5, 6]) {
      const s = sqrtmOne(a, n6, { method: 'svd-topn', n: keep });
      // eigh returns ascending values: the last `keep` are the largest.
      const roots = Array.from(e.values, (l, i) => (i >= n6 - keep ? Math.sqrt(l) : Math.sqrt(EPS64)));
      expect(relErr(s, reconstructFromEigen(e.vectors, roots, n6))).toBeLessThan(1e-12);
      // S·S is the rank-`keep` truncation of A (plus eps on the dropped directions).
      const trunc = reconstructFromEigen(e.vectors, Array.from(e.values, (l, i) => (i >= n6 - keep ? l : EPS64)), n6);
      expect(relErr(matmul(s, s, n6), trunc)).toBeLessThan(1e-12);
      // And the spectrum of S is exactly that: `keep` roots of A's top eigenvalues.
      const sv = eighOne(s, n6).values;
      for (let i = 0; i < n6; i++) expect(sv[i]).toBeCloseTo(roots[i], 12);
      if (keep < n6) expect(relErr(matmul(s, s, n6), a)).toBeGreaterThan(1e-3);
    }
  });

  test("the default n drops round(50 C / 256) eigenvalues (the paper's 50 of 256)", () => {
    const C16 = 16;
    const spec16 = Array.from({ length: C16 }, (_, i) => 0.1 + 0.2 * i);
    const a = withSpectrum(spec16, 12);
    const r = sqrtmSync(new Tensor(Float64Array.from(a), [1, C16, C16]), 'svd-topn');
    const drop = Math.round((50 * C16) / 256); // 3
    expect(r.state.options.n).toBe(C16 - drop);
    const e = eighOne(a, C16);
    const roots = Array.from(e.values, (l, i) => (i >= drop ? Math.sqrt(l) : Math.sqrt(EPS64)));
    expect(relErr(r.output.data, reconstructFromEigen(e.vectors, roots, C16))).toBeLessThan(1e-12);
  });
});

describe('covariance pooling', () => {
  /** A = Xc Xc^T / N with Xc the row-centered features, computed directly. */
  function covRef(x: ArrayLike<number>, b: number, c: number, n: number): Float64Array {
    const a = new Float64Array(c * c);
    const xc = centeredItem(x, b, c, n);
    for (let i = 0; i < c; i++)
      for (let j = 0; j < c; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += xc[i * n + k] * xc[j * n + k];
        a[i * c + j] = s / n;
      }
    return a;
  }

  test('[B, C, N] features: A = Xc Xc^T / N per batch item (divides by N, not N - 1)', () => {
    const [B, c, n] = [3, 7, 11];
    const x = reluFeatures(B, c, n, 5);
    const a = covpoolSync(x);
    expect(a.shape).toEqual([B, c, c]);
    for (let b = 0; b < B; b++) expect(relErr(a.data.slice(b * c * c, (b + 1) * c * c), covRef(x.data, b, c, n))).toBeLessThan(1e-14);
  });

  test('[B, C, H, W] features are pooled over the H·W positions (row-major flattening)', () => {
    const [B, c, h, w] = [2, 5, 3, 4];
    const flat = reluFeatures(B, c, h * w, 6);
    const x4 = new Tensor(flat.data, [B, c, h, w]);
    const a = covpoolSync(x4);
    expect(a.shape).toEqual([B, c, c]);
    for (let b = 0; b < B; b++) expect(relErr(a.data.slice(b * c * c, (b + 1) * c * c), covRef(flat.data, b, c, h * w))).toBeLessThan(1e-14);
    // Identical to pooling the same memory viewed as [B, C, N].
    expect(Array.from(a.data)).toEqual(Array.from(covpoolSync(flat).data));
  });

  test('a constant shift of the features per channel does not change A (centering)', () => {
    const [B, c, n] = [1, 4, 9];
    const x = reluFeatures(B, c, n, 7);
    const shifted = new Float64Array(x.data);
    for (let i = 0; i < c; i++) for (let k = 0; k < n; k++) shifted[i * n + k] += 3 * (i + 1);
    expect(relErr(covpoolSync(new Tensor(shifted, [B, c, n])).data, covpoolSync(x).data)).toBeLessThan(1e-13);
  });
});

describe('triangular vectorization', () => {
  test('upper triangle, row by row, diagonal included, per batch item', () => {
    const [B, c] = [2, 4];
    // Distinct values that encode their position, including a non-symmetric lower triangle.
    const s = new Float64Array(B * c * c);
    for (let b = 0; b < B; b++) for (let i = 0; i < c; i++) for (let j = 0; j < c; j++) s[(b * c + i) * c + j] = 1000 * b + 10 * i + j + (i > j ? 0.5 : 0);
    const y = triuvecSync(new Tensor(s, [B, c, c]));
    expect(y.shape).toEqual([B, (c * (c + 1)) / 2]);
    const expected: number[] = [];
    for (let b = 0; b < B; b++) for (let i = 0; i < c; i++) for (let j = i; j < c; j++) expected.push(1000 * b + 10 * i + j);
    expect(Array.from(y.data)).toEqual(expected);
  });

  test('the layer output is triuvec of the square root', () => {
    const x = reluFeatures(2, 5, 20, 8);
    const layer = new CovPoolLayer({ method: 'svd' });
    const full = new CovPoolLayer({ method: 'svd', vectorize: false });
    const y = layer.forwardSync(x).output;
    const s = full.forwardSync(x).output;
    expect(s.shape).toEqual([2, 5, 5]);
    expect(y.shape).toEqual([2, 15]);
    expect(Array.from(y.data)).toEqual(Array.from(triuvecSync(s).data));
    // and that S is the square root of covpool(x)
    const a = covpoolSync(x).data;
    for (let b = 0; b < 2; b++) {
      const sb = s.data.slice(b * 25, (b + 1) * 25);
      expect(relErr(matmul(sb, sb, 5), a.slice(b * 25, (b + 1) * 25))).toBeLessThan(1e-12);
    }
  });
});

describe('eigh', () => {
  test('A = V diag(l) V^T, V orthonormal, values ascending', () => {
    const n = 9;
    const lams = [3.2, -0.5, 0.01, 1, 2, 7, 0.3, 0.3001, 4];
    const mats = [withSpectrum(lams, 31), withSpectrum(lams.map((l) => l * l), 32)];
    const e = eighSync(new Tensor(Float64Array.from(mats.flatMap((m) => Array.from(m))), [2, n, n]));
    expect(e.values.shape).toEqual([2, n]);
    expect(e.vectors.shape).toEqual([2, n, n]);
    for (let b = 0; b < 2; b++) {
      const l = e.values.data.slice(b * n, (b + 1) * n);
      const v = e.vectors.data.slice(b * n * n, (b + 1) * n * n);
      for (let i = 1; i < n; i++) expect(l[i]).toBeGreaterThanOrEqual(l[i - 1]);
      expect(relErr(reconstructFromEigen(v, l, n), mats[b])).toBeLessThan(1e-14);
      const vtv = matmul(transpose(v, n), v, n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(Math.abs(vtv[i * n + j] - (i === j ? 1 : 0))).toBeLessThan(1e-14);
      const sorted = (b === 0 ? lams : lams.map((x) => x * x)).slice().sort((x, y) => x - y);
      for (let i = 0; i < n; i++) expect(l[i]).toBeCloseTo(sorted[i], 12);
    }
  });
});

describe('float32 inputs', () => {
  // float32 in, float32 out. The eigen methods run their spectral part in float64 by default,
  // ns and mpa-lya in the input precision; either way the result must agree with the float64
  // computation to float32 accuracy (a few ulps of 6e-8, times the conditioning of sqrt here).
  const A32 = Float32Array.from(A);
  const A64 = Float64Array.from(A32); // the same numbers, so only the arithmetic differs
  const specs = [
    ['ns', 'float32'],
    ['svd', 'float64'],
    ['svd-trunc', 'float64'],
    ['svd-topn', 'float64'],
    ['svd-taylor', 'float64'],
    ['svd-pade', 'float64'],
    ['svd-pi', 'float64'],
    ['svd-newton', 'float64'],
    ['svd-lyap', 'float64'],
    ['mpa-lya', 'float32'],
  ] as const;
  test.each(specs)('%s: float32 result agrees with float64, spectral precision %s by default', (method, precision) => {
    const r32 = sqrtmSync(new Tensor(A32, [1, C, C]), method);
    expect(r32.output.dtype).toBe('float32');
    expect(r32.state.options.precision).toBe(precision);
    const r64 = sqrtmSync(new Tensor(A64, [1, C, C]), method);
    expect(r64.output.dtype).toBe('float64');
    // Eigen methods: only the float32 rounding of the output remains. ns: float32 GEMMs over 5
    // iterations. mpa-lya: P(Z) and Q(Z) have mixed-sign coefficients and nearly cancel at the
    // smallest eigenvalue (z = 0.97: sum |p_k| z^k / |P(z)| is ~2.5e3), so float32 loses ~3 more
    // digits there; weighted by that eigenvalue's share of S this is < 3e-5 (measured 4.5e-6).
    const tol = precision === 'float64' ? 1e-7 : method === 'mpa-lya' ? 3e-5 : 2e-6;
    expect(relErr(r32.output.data, r64.output.data)).toBeLessThan(tol);
  });

  test('eigen methods with precision float32 still agree to float32 accuracy on a well-conditioned matrix', () => {
    const r32 = sqrtmSync(new Tensor(A32, [1, C, C]), { method: 'svd', precision: 'float32' });
    expect(r32.state.options.precision).toBe('float32');
    expect(relErr(r32.output.data, sqrtmOne(A64, C, 'svd'))).toBeLessThan(2e-6);
  });

  test('float32 features through the layer agree with float64 features', () => {
    const x64 = reluFeatures(2, 6, 30, 13);
    const x32 = new Tensor(Float32Array.from(x64.data), x64.shape);
    const x64r = new Tensor(Float64Array.from(x32.data), x64.shape);
    for (const method of ['svd', 'ns', 'svd-lyap'] as const) {
      const y32 = new CovPoolLayer({ method }).forwardSync(x32).output;
      const y64 = new CovPoolLayer({ method }).forwardSync(x64r).output;
      expect(y32.dtype).toBe('float32');
      expect(relErr(y32.data, y64.data)).toBeLessThan(2e-6);
    }
  });
});

describe('test fixtures', () => {
  test('withSpectrum gives a symmetric matrix with exactly the requested eigenvalues', () => {
    const q = randomOrthogonal(C, 3);
    const qtq = matmul(transpose(q, C), q, C);
    for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) expect(Math.abs(qtq[i * C + j] - (i === j ? 1 : 0))).toBeLessThan(1e-14);
    expect(maxAsymmetry(A, C)).toBe(0);
    const vals = eighOne(A, C).values;
    for (let i = 0; i < C; i++) expect(vals[i]).toBeCloseTo(SPECTRUM[i], 13);
  });
});
