// Relations between the backward methods on well-separated spectra, where the exact square-root
// derivative is unambiguous: the K-matrix gradients that are exact (svd, svd-pade, svd-lyap)
// coincide, the truncated ones (svd-taylor, ns, svd-pi) converge to it with their truncation
// parameter, svd-newton is ns's backward, mpa-lya is svd-lyap up to its forward's Pade error, and
// svd-pi is the derivative of an explicit deflated power iteration.
import { padeCoefficients, sqrtmSync } from '../lib';
import {
  dot,
  eighOne,
  frobeniusNorm,
  hornerEval,
  randomSquare,
  relErr,
  sqrtmGradOne,
  symmetricDirection,
  withSpectrum,
} from './helpers';

type Spec = Parameters<typeof sqrtmSync>[1];

// Eigenvalues spread over 0.1..2; the closest ratio of neighbours is 1.65/2 = 0.825.
const SPECTRUM = [0.1, 0.25, 0.45, 0.7, 1.0, 1.3, 1.65, 2.0];
const C = SPECTRUM.length;
const A = withSpectrum(SPECTRUM, 81);
const W = randomSquare(C, 82);
const grad = (spec: Spec, a = A, w = W, n = C) => sqrtmGradOne(a, n, spec, w);

/** Largest ratio min/max over eigenvalue pairs: governs every truncated geometric series here. */
function maxRatio(l: number[]): number {
  let r = 0;
  for (let i = 0; i < l.length; i++) for (let j = 0; j < l.length; j++) if (i !== j) r = Math.max(r, Math.min(l[i], l[j]) / Math.max(l[i], l[j]));
  return r;
}

describe('exact eigen gradients agree on separated spectra', () => {
  test('svd = svd-pade = svd-lyap (relative 1e-8)', () => {
    const lyap = grad('svd-lyap');
    expect(relErr(grad('svd'), lyap)).toBeLessThan(1e-8);
    expect(relErr(grad('svd-pade'), lyap)).toBeLessThan(1e-8);
    // and on a second, wider spectrum
    const a2 = withSpectrum([0.01, 0.05, 0.2, 0.9, 3, 10], 83);
    const w2 = randomSquare(6, 84);
    const l2 = grad('svd-lyap', a2, w2, 6);
    expect(relErr(grad('svd', a2, w2, 6), l2)).toBeLessThan(1e-8);
    expect(relErr(grad('svd-pade', a2, w2, 6), l2)).toBeLessThan(1e-8);
  });

  test('svd-pade of any degree L is exact: its [L/L] approximant of 1/(1-r) is 1/(1-r) itself', () => {
    const lyap = grad('svd-lyap');
    for (const degree of [1, 2, 7, 50, 200]) expect(relErr(grad({ method: 'svd-pade', degree }), lyap)).toBeLessThan(1e-8);
  });

  test('svd-trunc with a tiny kappa differs from svd (clipping is active)', () => {
    const svd = grad('svd');
    // |K| = 1/|l_i - l_j| >= 1/1.9 > 0.3 for every pair: kappa = 0.3 clips them all.
    const clipped = grad({ method: 'svd-trunc', kappa: 0.3 });
    expect(relErr(clipped, svd)).toBeGreaterThan(1e-2);
    // The diagonal (eigenvalue) part is untouched by clipping: <dA, u_i u_i^T> agrees.
    const e = eighOne(A, C);
    for (let i = 0; i < C; i++) {
      const uu = new Float64Array(C * C);
      for (let r = 0; r < C; r++) for (let c = 0; c < C; c++) uu[r * C + c] = e.vectors[r * C + i] * e.vectors[c * C + i];
      expect(Math.abs(dot(clipped, uu) - dot(svd, uu))).toBeLessThan(1e-12 * frobeniusNorm(svd));
    }
    // A kappa above every |K| entry changes nothing.
    expect(relErr(grad({ method: 'svd-trunc', kappa: 100 }), svd)).toBeLessThan(1e-15);
  });
});

describe('truncated gradients converge to the exact one', () => {
  test('svd-taylor -> svd as the degree D grows, within the bound r_max^(D+1)', () => {
    // For each pair the Taylor K entry is (1 - r^(D+1)) times the exact one, with the same r for
    // (i, j) and (j, i), so in the eigenbasis every entry of the gradient is scaled by
    // (1 - r^(D+1)): the relative error is at most r_max^(D+1) (0.825^(D+1) here).
    const svd = grad('svd');
    const rmax = maxRatio(SPECTRUM);
    let prev = Infinity;
    for (const degree of [5, 10, 20, 40, 80, 100, 160]) {
      const err = relErr(grad({ method: 'svd-taylor', degree }), svd);
      expect(err).toBeLessThan(prev);
      expect(err).toBeLessThan(rmax ** (degree + 1) + 1e-14);
      prev = Math.max(err, 1e-15);
    }
    expect(relErr(grad({ method: 'svd-taylor', degree: 5 }), svd)).toBeGreaterThan(1e-2);
    expect(relErr(grad('svd-taylor'), svd)).toBeLessThan(1e-8); // default D = 100
    expect(relErr(grad({ method: 'svd-taylor', degree: 250 }), svd)).toBeLessThan(1e-13);
  });

  test('ns gradient -> svd-lyap as the iterations grow', () => {
    // The Newton-Schulz iteration converges quadratically once the smallest normalized eigenvalue
    // (0.1 / 7.45) has grown: the gradient error falls from ~1e-1 at 5 to rounding by ~12.
    const lyap = grad('svd-lyap');
    const errs = [3, 5, 7, 9, 11, 30].map((iterations) => relErr(grad({ method: 'ns', iterations }), lyap));
    for (let i = 1; i < errs.length - 1; i++) expect(errs[i]).toBeLessThan(errs[i - 1]);
    expect(errs[0]).toBeGreaterThan(1e-2);
    expect(errs[errs.length - 1]).toBeLessThan(1e-12);
    expect(relErr(grad({ method: 'ns', iterations: 30, normalization: 'frobenius' }), lyap)).toBeLessThan(1e-12);
  });

  test('svd-pi -> svd as the power iterations grow', () => {
    const svd = grad('svd');
    const errs = [2, 5, 10, 19, 40, 200].map((iterations) => relErr(grad({ method: 'svd-pi', iterations }), svd));
    for (let i = 1; i < errs.length; i++) expect(errs[i]).toBeLessThan(errs[i - 1]);
    expect(errs[0]).toBeGreaterThan(1e-2);
    expect(errs[errs.length - 1]).toBeLessThan(1e-13);
  });
});

describe('svd-newton', () => {
  // svd-newton = eigen forward + the Newton-Schulz backward (trace normalization, T iterations)
  // evaluated at the same A, so its gradient is the ns gradient up to rounding.
  test.each([1, 3, 5, 12])('backward equals ns backward with %i iterations', (iterations) => {
    const ns = grad({ method: 'ns', iterations });
    expect(relErr(grad({ method: 'svd-newton', iterations }), ns)).toBeLessThan(1e-13);
  });

  test('default iterations (5) match ns defaults (5, trace)', () => {
    expect(relErr(grad('svd-newton'), grad('ns'))).toBeLessThan(1e-13);
  });

  // Regression: the forward once overwrote the saved raw A with A / tr(A) when a normalization was
  // given, so the Newton-Schulz backward ran at the wrong point (sqrt(tr A) times too large). The
  // square root, and so the gradient a user expects, does not depend on this option.
  test.each(['trace', 'frobenius'] as const)("backward does not depend on the normalization option ('%s' given explicitly)", (normalization) => {
    const ns = grad({ method: 'ns', iterations: 5 });
    expect(relErr(grad({ method: 'svd-newton', iterations: 5, normalization }), ns)).toBeLessThan(1e-13);
  });
});

describe('mpa-lya vs svd-lyap', () => {
  test("agree to the forward's Pade approximation error", () => {
    // mpa-lya's backward is the exact-root derivative at its own (Pade) root s_i instead of
    // sqrt(l_i): each eigenbasis entry 1/(s_i + s_j) is off by at most delta/(1 - delta), where
    // delta = max_i |s_i / sqrt(l_i) - 1| is the approximant's worst relative error. That bound is
    // computed here from the published coefficients (delta ~ 3e-2 at the smallest eigenvalue for
    // [5/5], z = 1 - 0.1/3.2); the sign iteration adds ~1e-8 at 8 steps.
    const lyap = grad('svd-lyap');
    const tau = frobeniusNorm(A);
    for (const degree of [5, 8, 12]) {
      const { p, q } = padeCoefficients('sqrt', degree);
      const delta = Math.max(
        ...SPECTRUM.map((l) => Math.abs((Math.sqrt(tau) * hornerEval(p, 1 - l / tau)) / hornerEval(q, 1 - l / tau) / Math.sqrt(l) - 1)),
      );
      const err = relErr(grad({ method: 'mpa-lya', degree, iterations: 12 }), lyap);
      expect(err).toBeLessThan(delta / (1 - delta) + 1e-10);
      if (degree === 5) expect(err).toBeLessThan(5e-2);
    }
    // and more Pade terms bring it closer
    const e5 = relErr(grad({ method: 'mpa-lya', degree: 5 }), lyap);
    const e12 = relErr(grad({ method: 'mpa-lya', degree: 12 }), lyap);
    expect(e12).toBeLessThan(e5 / 10);
  });
});

describe('svd-pi = derivative of the explicit deflated power iteration', () => {
  // The reference, in plain float64 JS: for eigenvalues in DESCENDING order, deflate with the
  // (differentiable) outputs found so far, M_i = A - sum_{j before i} lam_j v_j v_j^T, run T
  // normalized power steps v <- M_i v / |M_i v| from the FIXED start u_i (the eigenvector of the
  // base point A0, a constant), take lam_i = v^T M_i v, and return sum_i sqrt(lam_i) v_i v_i^T.
  // At A0 this is the exact square root; its derivative is what svd-pi claims to compute.
  function powerIterationSqrt(a: Float64Array, n: number, u0: Float64Array, lam0: Float64Array, steps: number): Float64Array {
    const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => lam0[y] - lam0[x]);
    const m = Float64Array.from(a);
    const s = new Float64Array(n * n);
    const mv = (v: Float64Array) => {
      const w = new Float64Array(n);
      for (let r = 0; r < n; r++) {
        let acc = 0;
        for (let c = 0; c < n; c++) acc += m[r * n + c] * v[c];
        w[r] = acc;
      }
      return w;
    };
    for (const i of order) {
      let v = new Float64Array(n);
      for (let r = 0; r < n; r++) v[r] = u0[r * n + i];
      for (let t = 0; t < steps; t++) {
        const w = mv(v);
        const nw = Math.sqrt(dot(w, w));
        v = w.map((x) => x / nw);
      }
      const lam = dot(v, mv(v));
      const root = Math.sqrt(lam);
      for (let r = 0; r < n; r++)
        for (let c = 0; c < n; c++) {
          s[r * n + c] += root * v[r] * v[c];
          m[r * n + c] -= lam * v[r] * v[c];
        }
    }
    return s;
  }

  const n = 5;
  const a0 = withSpectrum([1, 0.8, 0.5, 0.3, 0.1], 91);
  const w = randomSquare(n, 92);
  const e0 = eighOne(a0, n);

  test('the reference equals the exact square root at the base point', () => {
    const s = powerIterationSqrt(a0, n, e0.vectors, e0.values, 3);
    const sref = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) sref[r * n + c] += Math.sqrt(e0.values[i]) * e0.vectors[r * n + i] * e0.vectors[c * n + i];
    expect(relErr(s, sref)).toBeLessThan(1e-14);
  });

  test.each([1, 2, 3, 6])('T = %i: svd-pi backward = central differences of the reference, and != svd', (steps) => {
    const g = grad({ method: 'svd-pi', iterations: steps }, a0, w, n);
    const svd = grad('svd', a0, w, n);
    let worst = 0;
    let worstSvd = 0;
    for (const seed of [1, 2, 3, 4]) {
      const e = symmetricDirection(n, seed);
      const h = 1e-5;
      const loss = (t: number) => dot(w, powerIterationSqrt(a0.map((v, i) => v + t * e[i]), n, e0.vectors, e0.values, steps));
      const numeric = (loss(h) - loss(-h)) / (2 * h);
      const denom = Math.max(Math.abs(numeric), 1e-3 * frobeniusNorm(g));
      worst = Math.max(worst, Math.abs(dot(g, e) - numeric) / denom);
      worstSvd = Math.max(worstSvd, Math.abs(dot(svd, e) - numeric) / denom);
    }
    // Measured ~1e-10; the truncation is real: the exact gradient is off by 1e-3 or more.
    expect(worst).toBeLessThan(1e-6);
    expect(worstSvd).toBeGreaterThan(1e-3);
  });
});
