// Backward passes against central finite differences of the methods' own forward passes.
// Loss L = <W, S(A)> with a random, non-symmetric W. The argument A is symmetric, so gradients
// are compared on symmetric perturbations A + h E (E = sym(E)): <dA, E> must equal
// (L(A + hE) - L(A - hE)) / 2h. Only methods whose backward is the derivative of their own forward
// are checked this way (ns, svd, svd-lyap, svd-trunc without clipping, svd-pade / long svd-taylor on
// separated spectra); mpa-lya's backward is the derivative of the true root at its own S.
import {
  CovPoolLayer,
  Tensor,
  covpoolBackwardSync,
  covpoolSync,
  padeCoefficients,
  sqrtmBackwardSync,
  sqrtmSync,
  triuvecBackwardSync,
  triuvecSync,
} from '../lib';
import {
  dot,
  eighOne,
  frobeniusNorm,
  gaussian,
  hornerEval,
  matmul,
  randomSquare,
  relErr,
  reluFeatures,
  rng,
  sqrtmGradOne,
  sqrtmOne,
  symPart,
  symmetricDirection,
  transpose,
  withSpectrum,
  centeredItem,
} from './helpers';

type Spec = Parameters<typeof sqrtmSync>[1];

// Separated spectrum 0.1..2 in a random basis, C = 6.
const SPECTRUM = [0.1, 0.35, 0.6, 0.95, 1.4, 2.0];
const C = SPECTRUM.length;
const A = withSpectrum(SPECTRUM, 41);
const W = randomSquare(C, 42);

/**
 * Worst relative mismatch between <dA, E> and the central difference over a few symmetric unit
 * directions. The denominator is floored at 1e-3 ||dA|| so a direction nearly orthogonal to the
 * gradient cannot blow the ratio up.
 */
function fdMismatch(a: Float64Array, n: number, spec: Spec, w: Float64Array, h = 1e-5, seeds = [1, 2, 3]): number {
  const g = sqrtmGradOne(a, n, spec, w);
  const scale = frobeniusNorm(g);
  let worst = 0;
  for (const seed of seeds) {
    const e = symmetricDirection(n, seed);
    const loss = (t: number) => dot(w, sqrtmOne(a.map((v, i) => v + t * e[i]), n, spec));
    const numeric = (loss(h) - loss(-h)) / (2 * h);
    worst = Math.max(worst, Math.abs(dot(g, e) - numeric) / Math.max(Math.abs(numeric), 1e-3 * scale));
  }
  return worst;
}

describe('sqrtm backward = finite differences of its own forward', () => {
  // Measured mismatches are 1e-11..1e-9 (truncation O(h^2) plus rounding O(eps/h)); 1e-7 leaves
  // room while any wrong term in a gradient shows up at 1e-3 or more.
  const TOL = 1e-7;

  test.each([3, 5])('ns, %i iterations, trace and Frobenius normalization: exact derivative of the recurrence', (iterations) => {
    for (const normalization of ['trace', 'frobenius'] as const) {
      expect(fdMismatch(A, C, { method: 'ns', iterations, normalization }, W)).toBeLessThan(TOL);
    }
  });

  test('ns with 1 iteration (a polynomial of degree 3): derivative still exact', () => {
    expect(fdMismatch(A, C, { method: 'ns', iterations: 1 }, W)).toBeLessThan(TOL);
  });

  test('ns gradient is the derivative of the truncated iteration, not of the true root', () => {
    // With 3 iterations the recurrence is far from converged: its derivative must differ from the
    // exact root's (svd-lyap) by a visible amount, while it matches its own finite differences.
    const ns = sqrtmGradOne(A, C, { method: 'ns', iterations: 3 }, W);
    expect(relErr(ns, sqrtmGradOne(A, C, 'svd-lyap', W))).toBeGreaterThan(1e-2);
  });

  test.each(['svd', 'svd-lyap', 'svd-pade'] as const)('%s', (method) => {
    expect(fdMismatch(A, C, method, W)).toBeLessThan(TOL);
  });

  test('svd-lyap with trace / Frobenius normalization (the normalization backward is exact too)', () => {
    for (const normalization of ['trace', 'frobenius'] as const) {
      expect(fdMismatch(A, C, { method: 'svd-lyap', normalization }, W)).toBeLessThan(TOL);
      expect(fdMismatch(A, C, { method: 'svd', normalization }, W)).toBeLessThan(TOL);
      // S does not depend on the normalization, so neither may its gradient.
      expect(relErr(sqrtmGradOne(A, C, { method: 'svd-lyap', normalization }, W), sqrtmGradOne(A, C, 'svd-lyap', W))).toBeLessThan(1e-12);
    }
  });

  test('svd-trunc equals svd when no K entry reaches kappa, and matches finite differences', () => {
    // Smallest gap 0.25 -> |K| <= 4 << 1e10.
    expect(relErr(sqrtmGradOne(A, C, 'svd-trunc', W), sqrtmGradOne(A, C, 'svd', W))).toBeLessThan(1e-15);
    expect(fdMismatch(A, C, 'svd-trunc', W)).toBeLessThan(TOL);
  });

  test('svd-taylor with a long series (D = 300) is the derivative of the root on a separated spectrum', () => {
    // Truncation error of each K entry is r^(D+1) with r <= 0.7 here: 1e-46, below rounding.
    expect(fdMismatch(A, C, { method: 'svd-taylor', degree: 300 }, W)).toBeLessThan(TOL);
  });

  test('a finite-difference check can fail: the default 5-iteration ns gradient is not the root derivative', () => {
    // Guard against a vacuous harness: the svd-lyap gradient compared with ns's forward.
    const g = sqrtmGradOne(A, C, 'svd-lyap', W);
    const e = symmetricDirection(C, 1);
    const h = 1e-5;
    const loss = (t: number) => dot(W, sqrtmOne(A.map((v, i) => v + t * e[i]), C, 'ns'));
    const numeric = (loss(h) - loss(-h)) / (2 * h);
    expect(Math.abs(dot(g, e) - numeric) / Math.abs(numeric)).toBeGreaterThan(1e-3);
  });

  test('every method returns the symmetric representative and symmetrizes dS', () => {
    const methods = ['ns', 'svd', 'svd-trunc', 'svd-topn', 'svd-taylor', 'svd-pade', 'svd-pi', 'svd-newton', 'svd-lyap', 'mpa-lya'] as const;
    for (const method of methods) {
      const g = sqrtmGradOne(A, C, method, W);
      for (let i = 0; i < C; i++) for (let j = i + 1; j < C; j++) expect(g[i * C + j]).toBe(g[j * C + i]);
      // Only sym(W) matters: W and W^T give the same gradient.
      expect(relErr(sqrtmGradOne(A, C, method, transpose(W, C)), g)).toBeLessThan(1e-13);
    }
  });

  test('batched backward: each item gets its own gradient', () => {
    const a2 = withSpectrum([0.2, 0.5, 0.7, 1.2, 1.9, 3.0], 43);
    const w2 = randomSquare(C, 44);
    const batch = new Tensor(Float64Array.from([...A, ...a2]), [2, C, C]);
    const r = sqrtmSync(batch, 'svd-lyap');
    const g = sqrtmBackwardSync(r.state, new Tensor(Float64Array.from([...W, ...w2]), [2, C, C])).data;
    expect(relErr(g.slice(0, C * C), sqrtmGradOne(A, C, 'svd-lyap', W))).toBeLessThan(1e-14);
    expect(relErr(g.slice(C * C), sqrtmGradOne(a2, C, 'svd-lyap', w2))).toBeLessThan(1e-14);
  });
});

describe('mpa-lya backward', () => {
  // mpa-lya's backward solves S X + X S = sym(dS) for its own forward S (the Pade root), i.e. it is
  // the exact-root derivative evaluated at that S: in A's eigenbasis X = M_ij / (s_i + s_j) with
  // M = U^T sym(W) U and s_i the scalar Pade roots. Check that directly (it is not the derivative
  // of mpa-lya's own forward, so no finite differences here).
  test('equals the Lyapunov solution at its own S (coupled sign iteration converged)', () => {
    const e = eighOne(A, C);
    const tau = frobeniusNorm(A);
    const { p, q } = padeCoefficients('sqrt', 5);
    const s = Array.from(e.values, (l) => Math.sqrt(tau) * (hornerEval(p, 1 - l / tau) / hornerEval(q, 1 - l / tau)));
    const u = e.vectors;
    const ut = transpose(u, C);
    const m = matmul(ut, matmul(symPart(W, C), u, C), C);
    const x = m.map((v, k) => v / (s[Math.floor(k / C)] + s[k % C]));
    const ref = matmul(u, matmul(x, ut, C), C);
    // Default 8 sign iterations: the smallest normalized root is 0.2 and the iteration squares its
    // error after ~5 steps, leaving ~1e-8 here. 16 iterations reach rounding.
    expect(relErr(sqrtmGradOne(A, C, 'mpa-lya', W), ref)).toBeLessThan(1e-6);
    expect(relErr(sqrtmGradOne(A, C, { method: 'mpa-lya', iterations: 16 }, W), ref)).toBeLessThan(1e-12);
    // Too few sign iterations leave a visible error: the iteration count is really used.
    expect(relErr(sqrtmGradOne(A, C, { method: 'mpa-lya', iterations: 3 }, W), ref)).toBeGreaterThan(1e-3);
  });
});

describe('full layer (covpool -> sqrtm -> triuvec) against finite differences in the features', () => {
  /** <dx, D> vs the central difference of L(x) = <w, layer(x)> along D, for a few directions D. */
  function layerMismatch(spec: Spec, shape: number[], seed: number): number {
    const [B, Cc] = shape;
    const N = shape.slice(2).reduce((a, b) => a * b, 1);
    const base = reluFeatures(B, Cc, N, seed).data as Float64Array;
    // A little noise so no feature row is constant and the covariance is well conditioned.
    const g = gaussian(rng(seed + 1));
    const x = base.map((v) => v + 0.1 * g());
    const layer = new CovPoolLayer({ ...(typeof spec === 'string' ? { method: spec } : spec), vectorize: true } as never);
    const tri = (Cc * (Cc + 1)) / 2;
    const w = new Float64Array(B * tri).map(() => g());
    const fwd = layer.forwardSync(new Tensor(x, shape));
    expect(fwd.output.shape).toEqual([B, tri]);
    const dx = layer.backwardSync(fwd.state, new Tensor(w, [B, tri])).data;
    expect(dx.length).toBe(x.length);
    let worst = 0;
    for (let k = 0; k < 3; k++) {
      const d = new Float64Array(x.length).map(() => g());
      const h = 1e-5;
      const loss = (t: number) => dot(w, layer.forwardSync(new Tensor(x.map((v, i) => v + t * d[i]), shape)).output.data);
      const numeric = (loss(h) - loss(-h)) / (2 * h);
      worst = Math.max(worst, Math.abs(dot(dx, d) - numeric) / Math.max(Math.abs(numeric), 1e-3 * frobeniusNorm(dx)));
    }
    return worst;
  }

  test.each([
    ['svd-lyap', [2, 5, 16]],
    ['svd-lyap', [1, 4, 3, 5]],
    ['ns', [2, 5, 16]],
    ['ns', [1, 4, 3, 5]],
  ] as const)('%s, features %j', (method, shape) => {
    expect(layerMismatch(method, [...shape], 51)).toBeLessThan(1e-6);
  });

  test('ns with Frobenius normalization and 3 iterations, and svd, through the layer', () => {
    expect(layerMismatch({ method: 'ns', iterations: 3, normalization: 'frobenius' }, [2, 5, 16], 52)).toBeLessThan(1e-6);
    expect(layerMismatch('svd', [2, 5, 16], 53)).toBeLessThan(1e-6);
  });

  test('vectorize: false returns the full-matrix gradient path; triuvec of it matches the vectorized layer', () => {
    const x = reluFeatures(1, 4, 12, 54);
    const full = new CovPoolLayer({ method: 'svd-lyap', vectorize: false });
    const vec = new CovPoolLayer({ method: 'svd-lyap' });
    const dy = new Float64Array(10).map((_, i) => i + 1);
    const dyFull = triuvecBackwardSync(new Tensor(dy, [1, 10]), 4);
    const g1 = vec.backwardSync(vec.forwardSync(x).state, new Tensor(dy, [1, 10])).data;
    const g2 = full.backwardSync(full.forwardSync(x).state, dyFull).data;
    expect(relErr(g1, g2)).toBeLessThan(1e-14);
  });
});

describe('covpool backward', () => {
  /** dX = (G + G^T) Xc / N, written out. */
  function covBackRef(x: ArrayLike<number>, gA: ArrayLike<number>, b: number, c: number, n: number): Float64Array {
    const xc = centeredItem(x, b, c, n);
    const out = new Float64Array(c * n);
    for (let i = 0; i < c; i++)
      for (let k = 0; k < n; k++) {
        let s = 0;
        for (let j = 0; j < c; j++) s += (gA[b * c * c + i * c + j] + gA[b * c * c + j * c + i]) * xc[j * n + k];
        out[i * n + k] = s / n;
      }
    return out;
  }

  test.each([
    [[2, 4, 9]],
    [[2, 3, 2, 5]],
  ])('features %j: matches (G + G^T) Xc / N and finite differences of <G, covpool(x)>', (shape) => {
    const [B, c] = shape;
    const n = shape.slice(2).reduce((a, b) => a * b, 1);
    const x = new Tensor(reluFeatures(B, c, n, 61).data, shape);
    const gA = randomSquare(c, 62);
    const gAll = new Float64Array(B * c * c);
    for (let b = 0; b < B; b++) gAll.set(gA.map((v) => v * (b + 1)), b * c * c); // non-symmetric, per item
    const dx = covpoolBackwardSync(x, new Tensor(gAll, [B, c, c]));
    expect(dx.shape).toEqual(shape);
    for (let b = 0; b < B; b++) expect(relErr(dx.data.slice(b * c * n, (b + 1) * c * n), covBackRef(x.data, gAll, b, c, n))).toBeLessThan(1e-14);
    // Finite differences (A is quadratic in x, so the central difference is exact up to rounding).
    const g = gaussian(rng(63));
    for (let k = 0; k < 3; k++) {
      const d = new Float64Array(x.data.length).map(() => g());
      const h = 1e-3;
      const loss = (t: number) => dot(gAll, covpoolSync(new Tensor(x.data.map((v, i) => v + t * d[i]), shape)).data);
      const numeric = (loss(h) - loss(-h)) / (2 * h);
      expect(Math.abs(dot(dx.data, d) - numeric)).toBeLessThan(1e-10 * Math.max(1, Math.abs(numeric)));
    }
  });

  test('the gradient has zero mean over positions (centering removes the mean direction)', () => {
    const x = reluFeatures(1, 4, 10, 64);
    const dx = covpoolBackwardSync(x, new Tensor(randomSquare(4, 65), [1, 4, 4])).data;
    for (let i = 0; i < 4; i++) {
      let s = 0;
      for (let k = 0; k < 10; k++) s += dx[i * 10 + k];
      expect(Math.abs(s)).toBeLessThan(1e-14);
    }
  });
});

describe('triuvec backward', () => {
  test('adjoint identity <triuvec(S), dy> = <S, triuvecBackward(dy)> and exact placement', () => {
    const [B, c] = [2, 5];
    const tri = (c * (c + 1)) / 2;
    const g = gaussian(rng(71));
    const dy = new Float64Array(B * tri).map(() => g());
    const ds = triuvecBackwardSync(new Tensor(dy, [B, tri]), c);
    expect(ds.shape).toEqual([B, c, c]);
    for (let k = 0; k < 4; k++) {
      const s = new Float64Array(B * c * c).map(() => g()); // arbitrary, not symmetric
      const y = triuvecSync(new Tensor(s, [B, c, c])).data;
      expect(Math.abs(dot(y, dy) - dot(s, ds.data))).toBeLessThan(1e-12);
    }
    // dy lands in the upper triangle row by row; the strict lower triangle is zero.
    for (let b = 0; b < B; b++) {
      let kk = 0;
      for (let i = 0; i < c; i++)
        for (let j = 0; j < c; j++) {
          const v = ds.data[(b * c + i) * c + j];
          if (j >= i) expect(v).toBe(dy[b * tri + kk++]);
          else expect(v).toBe(0);
        }
    }
  });
});
