// Realistic GCP inputs are singular: covariances of ReLU features with fewer positions than
// channels (N < C) have at most N - 1 non-zero eigenvalues, and after flooring at eps the rest are
// exactly tied. Every method promises finite outputs and gradients there (svd and svd-topn through
// the non-finite replacement of K). Where a sharper statement holds it is checked too: the
// svd-lyap gradient is bounded by ||G|| / (2 sqrt(eps)), the ns gradient by a constant that does
// not depend on the smallest eigenvalue at all, and svd-taylor's K at a tie is s (D + 1) / l.
import { CovPoolLayer, METHODS, Tensor, backwardCoefficientsSync, covpoolSync, sqrtmBackwardSync, sqrtmSync } from '../lib';
import {
  eighOne,
  frobeniusNorm,
  gaussian,
  matmul,
  randomSquare,
  relErr,
  reluFeatures,
  rng,
  sqrtmGradOne,
  symPart,
  transpose,
  withSpectrum,
} from './helpers';

const EPS64 = 2 ** -52;
const allFinite = (a: ArrayLike<number>) => Array.prototype.every.call(a, Number.isFinite);

interface Case {
  name: string;
  a: Tensor; // [B, C, C] float64
}

function featureCase(B: number, C: number, N: number, seed: number): Case {
  return { name: `covariance of ReLU features B=${B} C=${C} N=${N}`, a: covpoolSync(reluFeatures(B, C, N, seed)) };
}

function matrixCase(name: string, m: Float64Array, n: number): Case {
  return { name, a: new Tensor(Float64Array.from(m), [1, n, n]) };
}

function diag(values: number[]): Float64Array {
  const n = values.length;
  const a = new Float64Array(n * n);
  values.forEach((v, i) => (a[i * n + i] = v));
  return a;
}

const CASES: Case[] = [
  featureCase(2, 32, 12, 201),
  featureCase(1, 64, 49, 202),
  // Exactly repeated eigenvalues (a diagonal: syevd returns them exactly), incl. an exact zero.
  matrixCase('diagonal with exact ties [0, 0, 1, 1, 1, 2.5, 2.5]', diag([1, 0, 2.5, 1, 0, 1, 2.5]), 7),
  // Repeated eigenvalues in a random basis: the computed ones differ by ~1e-16, so K ~ 1e16.
  matrixCase('rotated repeated spectrum [0.5 x3, 1, 2 x2]', withSpectrum([0.5, 0.5, 0.5, 1, 2, 2], 203), 6),
  // Rank 2 in a random basis: four eigenvalues at rounding level (some negative), floored to eps.
  matrixCase('rotated rank-2 matrix', withSpectrum([0, 0, 0, 0, 1, 3], 204), 6),
];

function randomLike(n: number, seed: number): Float64Array {
  const g = gaussian(rng(seed));
  return new Float64Array(n).map(() => g());
}

describe.each(CASES)('$name', ({ a }) => {
  const [B, C] = a.shape;
  const dS = new Tensor(randomLike(B * C * C, 211), [B, C, C]);

  test.each([...METHODS])('%s: forward and backward are finite', (method) => {
    const r = sqrtmSync(a, method);
    expect(allFinite(r.output.data)).toBe(true);
    const g = sqrtmBackwardSync(r.state, dS);
    expect(allFinite(g.data)).toBe(true);
  });

  test('eigen forwards still square to A (the eps floor only moves eigenvalues by ~eps)', () => {
    for (const method of ['svd', 'svd-pade', 'svd-lyap'] as const) {
      const s = sqrtmSync(a, method).output.data;
      for (let b = 0; b < B; b++) {
        const sb = s.slice(b * C * C, (b + 1) * C * C);
        const ab = a.data.slice(b * C * C, (b + 1) * C * C);
        expect(frobeniusNorm(matmul(sb, sb, C).map((v, i) => v - ab[i]))).toBeLessThan(1e-13 * Math.max(1, frobeniusNorm(ab)));
      }
    }
  });

  test('svd-lyap gradient is bounded by ||sym G|| / (2 sqrt(eps))', () => {
    // dA = U [M o 1/(s_i + s_j)] U^T with s_i >= sqrt(eps) after the floor: no entry can exceed
    // 1/(2 sqrt(eps)) = 3.4e7 times the corresponding entry of M = U^T sym(G) U.
    const g = sqrtmBackwardSync(sqrtmSync(a, 'svd-lyap').state, dS).data;
    for (let b = 0; b < B; b++) {
      const gs = symPart(dS.data.slice(b * C * C, (b + 1) * C * C), C);
      expect(frobeniusNorm(g.slice(b * C * C, (b + 1) * C * C))).toBeLessThanOrEqual((1.001 * frobeniusNorm(gs)) / (2 * Math.sqrt(EPS64)));
    }
  });

  test('ns gradient is bounded independently of the smallest eigenvalue', () => {
    // S = sqrt(tau) p(A/tau) with p the T = 5 Newton-Schulz polynomial, tau = tr A. The backward is
    // the adjoint of the Frechet derivative of p, whose eigenbasis entries are divided differences
    // of p, bounded by Lp = max |p'| on [0, 1] (7.6, at 0). With the trace terms:
    //   ||dA|| <= ||G|| / sqrt(tau) * (Lp + sqrt(C) (||S_hat|| / 2 + Lp ||A_hat||)).
    // Lp is computed here from the scalar recurrence.
    const p = (x: number) => {
      let y = x;
      let z = 1;
      for (let k = 1; k < 5; k++) {
        const q = (3 - z * y) / 2;
        y *= q;
        z *= q;
      }
      return (y * (3 - z * y)) / 2;
    };
    let lp = 0;
    for (let i = 0; i <= 2000; i++) {
      const x = i / 2000;
      const h = 1e-6;
      lp = Math.max(lp, Math.abs((p(x + h) - p(x)) / h));
    }
    lp *= 1.01;
    const r = sqrtmSync(a, 'ns');
    const g = sqrtmBackwardSync(r.state, dS).data;
    for (let b = 0; b < B; b++) {
      const ab = a.data.slice(b * C * C, (b + 1) * C * C);
      let tau = 0;
      for (let i = 0; i < C; i++) tau += ab[i * C + i];
      const sHat = frobeniusNorm(r.output.data.slice(b * C * C, (b + 1) * C * C)) / Math.sqrt(tau);
      const aHat = frobeniusNorm(ab) / tau;
      const gs = frobeniusNorm(symPart(dS.data.slice(b * C * C, (b + 1) * C * C), C));
      const bound = (gs / Math.sqrt(tau)) * (lp + Math.sqrt(C) * (sHat / 2 + lp * aHat));
      expect(frobeniusNorm(g.slice(b * C * C, (b + 1) * C * C))).toBeLessThanOrEqual(bound);
    }
  });
});

describe('realistic features through the layer', () => {
  const shapes = [
    [2, 32, 12],
    [1, 64, 7, 7],
  ];
  test.each(shapes.flatMap((s) => METHODS.map((m) => [m, s] as const)))('%s, features %j, float64: finite output and gradient', (method, shape) => {
    const [B, C] = shape;
    const N = shape.slice(2).reduce((x, y) => x * y, 1);
    const x = new Tensor(reluFeatures(B, C, N, 221).data, [...shape]);
    const layer = new CovPoolLayer({ method });
    const f = layer.forwardSync(x);
    expect(allFinite(f.output.data)).toBe(true);
    const tri = (C * (C + 1)) / 2;
    const dx = layer.backwardSync(f.state, new Tensor(randomLike(B * tri, 222), [B, tri]));
    expect(dx.shape).toEqual([...shape]);
    expect(allFinite(dx.data)).toBe(true);
  });

  test.each([...METHODS])('%s, float32 features (default spectral precision): finite, float32 out', (method) => {
    const [B, C, N] = [2, 32, 12];
    const x = reluFeatures(B, C, N, 223, 'float32');
    const layer = new CovPoolLayer({ method });
    const f = layer.forwardSync(x);
    // Eigen methods keep their spectral part in float64 even for float32 features.
    expect(f.state.options.precision).toBe(method === 'ns' || method === 'mpa-lya' ? 'float32' : 'float64');
    expect(f.output.dtype).toBe('float32');
    expect(allFinite(f.output.data)).toBe(true);
    const tri = (C * (C + 1)) / 2;
    const dx = layer.backwardSync(f.state, new Tensor(Float32Array.from(randomLike(B * tri, 224)), [B, tri]));
    expect(dx.dtype).toBe('float32');
    expect(allFinite(dx.data)).toBe(true);
  });

  test('float32 features with float64 spectral precision match the float64 pipeline on the same numbers', () => {
    // Same feature values in both dtypes. The covariance is formed in the input dtype, so the
    // float32 run sees A perturbed by ~1e-7 relative; on the null space that becomes eigenvalues of
    // size ~1e-8 whose roots (~1e-4) are all that separates the two outputs.
    const x32 = reluFeatures(2, 32, 12, 225, 'float32');
    const x64 = new Tensor(Float64Array.from(x32.data), x32.shape);
    for (const method of ['svd', 'svd-pade', 'svd-lyap'] as const) {
      const y32 = new CovPoolLayer({ method }).forwardSync(x32).output.data;
      const y64 = new CovPoolLayer({ method }).forwardSync(x64).output.data;
      expect(relErr(y32, y64)).toBeLessThan(2e-3); // measured 1.8e-4
    }
  });
});

describe('svd-taylor K at exact ties', () => {
  test('tied pairs get K = (D + 1) / l: the gradient equals the JS K-matrix formula', () => {
    // A diagonal with exact ties, so eigenvectors are the unit vectors and the basis inside each
    // tied block is known. Reference: dA = U [sym(F o (2 M diag(sqrt l))) + diag(M_ii / (2 sqrt l_i))] U^T,
    // F_ij = coefficient of u_i in du_j = s / max(l_i, l_j) * sum_{k<=D} r^k with r = min/max and
    // s = sign(l_j - l_i) (+1 on ties), i.e. (D + 1) / l for a tie.
    const a = diag([0.5, 2, 0.5, 1.25, 2, 0.5]);
    const n = 6;
    const w = randomSquare(n, 231);
    const e = eighOne(a, n);
    const u = e.vectors;
    const l = e.values;
    expect(l[0]).toBe(l[2]);
    for (const D of [0, 3, 100]) {
      const f = (i: number, j: number) => {
        if (i === j) return 0;
        const big = Math.max(l[i], l[j]);
        const r = Math.min(l[i], l[j]) / big;
        let series = 0;
        for (let k = 0; k <= D; k++) series += r ** k;
        return ((l[j] >= l[i] ? 1 : -1) / big) * series;
      };
      const ut = transpose(u, n);
      const m = matmul(ut, matmul(symPart(w, n), u, n), n);
      const inner = new Float64Array(n * n);
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++)
          inner[i * n + j] =
            i === j ? m[i * n + i] / (2 * Math.sqrt(l[i])) : f(i, j) * m[i * n + j] * Math.sqrt(l[j]) + f(j, i) * m[i * n + j] * Math.sqrt(l[i]);
      const ref = matmul(u, matmul(inner, ut, n), n);
      const g = sqrtmGradOne(a, n, { method: 'svd-taylor', degree: D }, w);
      expect(allFinite(g)).toBe(true);
      expect(relErr(g, ref)).toBeLessThan(1e-13);
    }
  });

  test('K matrices at ties floored to eps: svd-taylor finite without replacement, svd/svd-topn finite after it', () => {
    // Eigenvalues as a singular covariance produces them after the floor: three exact ties at eps.
    const l = [EPS64, EPS64, EPS64, 0.3, 1.2];
    const values = new Tensor(Float64Array.from(l), [1, 5]);
    const taylor = backwardCoefficientsSync(values, { method: 'svd-taylor', degree: 100 }, false).data;
    expect(Array.prototype.every.call(taylor, Number.isFinite)).toBe(true);
    // A tie at eps: K = (D + 1)/eps ~ 4.5e17, large but finite (and symmetric in i, j).
    expect(Math.abs(taylor[0 * 5 + 1] / (101 / EPS64) - 1)).toBeLessThan(1e-14);
    expect(taylor[1 * 5 + 0]).toBe(taylor[0 * 5 + 1]);
    for (const method of ['svd', 'svd-topn'] as const) {
      const raw = backwardCoefficientsSync(values, method, false).data;
      expect(Number.isFinite(raw[0 * 5 + 1])).toBe(false);
      const k = backwardCoefficientsSync(values, method, true).data;
      expect(Array.prototype.every.call(k, Number.isFinite)).toBe(true);
    }
  });

  test('at a tie svd-taylor stays bounded by (D + 1) / l while svd relies on the replacement rule', () => {
    const a = diag([1, 1, 3]);
    const w = randomSquare(3, 232);
    const taylor = sqrtmGradOne(a, 3, { method: 'svd-taylor', degree: 10 }, w);
    const svd = sqrtmGradOne(a, 3, 'svd', w);
    expect(allFinite(taylor)).toBe(true);
    expect(allFinite(svd)).toBe(true);
    // K on the tie is 11 (taylor) vs the largest finite svd entry 1/(3 - 1) = 0.5 (replacement):
    // the tied block of the two gradients must differ.
    expect(Math.abs(taylor[1] - svd[1])).toBeGreaterThan(1e-3 * Math.abs(taylor[1]));
  });
});
