// The Pade coefficients the library derives and how svd-pade / mpa-lya use them.
//  - 'geometric' (svd-pade): the [L/L] approximant of sum r^k = 1/(1-r). The Pade table of
//    1/(1-r) is degenerate: P/Q equals 1/(1-r) exactly, so the pole at r = 1 (eigenvalue ties) is
//    real and svd-pade needs the svd rule for non-finite K entries there.
//  - 'sqrt' (mpa-lya): the [m/m] approximant of sqrt(1-z), checked against exact rational
//    arithmetic (BigInt fractions) and against the Taylor coefficients binom(1/2, k)(-1)^k.
import { Tensor, backwardCoefficientsSync, covpoolSync, padeCoefficients, sqrtmBackwardSync, sqrtmSync } from '../lib';
import { eighOne, hornerEval, powerSeriesQuotient, randomSquare, relErr, reluFeatures, sqrtmGradOne, withSpectrum } from './helpers';

const EPS64 = 2 ** -52;

describe("geometric-series Pade coefficients ('geometric', used by svd-pade)", () => {
  const degrees = [1, 2, 3, 5, 10, 50, 100];

  test.each(degrees)('L = %i: L+1 coefficients each, normalized Q(0) = 1', (L) => {
    const { p, q } = padeCoefficients('geometric', L);
    expect(p).toHaveLength(L + 1);
    expect(q).toHaveLength(L + 1);
    expect(q[0]).toBe(1);
  });

  test.each(degrees)('L = %i: Pade conditions, the Taylor coefficients of P/Q are 1 up to order 2L (and beyond)', (L) => {
    const { p, q } = padeCoefficients('geometric', L);
    const c = powerSeriesQuotient(p, q, 2 * L + 6);
    for (let k = 0; k < c.length; k++) expect(Math.abs(c[k] - 1)).toBeLessThan(1e-13);
  });

  test.each(degrees)('L = %i: P(r)(1 - r) = Q(r) as polynomials (the degenerate Pade table)', (L) => {
    const { p, q } = padeCoefficients('geometric', L);
    // coefficients of P(r)(1 - r): p_0, p_k - p_{k-1} (k = 1..L), -p_L
    const prod = [p[0], ...p.slice(1).map((v, k) => v - p[k]), -p[L]];
    for (let k = 0; k <= L; k++) expect(Math.abs(prod[k] - q[k])).toBeLessThan(1e-15);
    expect(Math.abs(prod[L + 1])).toBeLessThan(1e-15);
  });

  test.each(degrees)('L = %i: P/Q evaluates to 1/(1 - r) on [0, 0.99]', (L) => {
    const { p, q } = padeCoefficients('geometric', L);
    for (let i = 0; i <= 99; i++) {
      const r = (0.99 * i) / 99;
      expect(Math.abs((hornerEval(p, r) / hornerEval(q, r)) * (1 - r) - 1)).toBeLessThan(1e-12);
    }
  });

  test.each(degrees)('L = %i: at r = 1, Q(1) is zero up to rounding while P(1) = (L + 1)/2: the pole is real', (L) => {
    const { p, q } = padeCoefficients('geometric', L);
    // Horner's rounding bound for Q(1): 2 (L + 1) u sum |q_k|.
    const bound = 2 * (L + 1) * EPS64 * q.reduce((a, v) => a + Math.abs(v), 0);
    expect(Math.abs(hornerEval(q, 1))).toBeLessThanOrEqual(bound);
    expect(hornerEval(p, 1)).toBeCloseTo((L + 1) / 2, 10);
  });
});

describe('svd-pade at and near the pole (eigenvalue ties)', () => {
  const W5 = randomSquare(5, 101);

  /** A permuted diagonal with an exactly repeated eigenvalue (syevd returns it exactly). */
  function tiedDiagonal(values: number[]): Float64Array {
    const n = values.length;
    const a = new Float64Array(n * n);
    values.forEach((v, i) => (a[i * n + i] = v));
    return a;
  }

  test.each([undefined, 1, 5, 7, 50, 100])(
    'exact tie (degree %s): K falls back to the svd replacement rule, gradient finite and equal to svd',
    (degree) => {
      const a = tiedDiagonal([2, 0.7, 3, 0.7, 1.5]);
      const vals = eighOne(a, 5).values;
      expect(vals[0]).toBe(vals[1]); // a real tie reaches the K matrix
      const spec = degree === undefined ? ('svd-pade' as const) : { method: 'svd-pade' as const, degree };
      const g = sqrtmGradOne(a, 5, spec, W5);
      expect(g.every(Number.isFinite)).toBe(true);
      // Whatever the rounding of Q(1) (exactly 0 for some L, +-1e-16 for others), the result must
      // be the svd gradient with its replacement of the infinite K entries, not a K of size
      // P(1)/Q(1) ~ 1e17 with a rounding-dependent sign.
      expect(relErr(g, sqrtmGradOne(a, 5, 'svd', W5))).toBeLessThan(1e-12);
    },
  );

  test('ties at the eps floor of a singular covariance (N < C): svd-pade = svd, finite', () => {
    const x = reluFeatures(1, 16, 6, 102);
    const a = covpoolSync(x);
    const vals = eighOne(a.data, 16).values;
    // At least two eigenvalues are floored to the same eps: exact ties inside the K matrix.
    expect(vals.filter((l) => l <= EPS64).length).toBeGreaterThanOrEqual(2);
    const w = randomSquare(16, 103);
    const dS = new Tensor(w, [1, 16, 16]);
    const pade = sqrtmBackwardSync(sqrtmSync(a, 'svd-pade').state, dS).data;
    const svd = sqrtmBackwardSync(sqrtmSync(a, 'svd').state, dS).data;
    expect(pade.every(Number.isFinite)).toBe(true);
    expect(relErr(pade, svd)).toBeLessThan(1e-12);
  });

  test('near a tie (gap 1e-3 .. 1e-9) svd-pade still equals svd: the pole is approached, not cut off', () => {
    for (const gap of [1e-3, 1e-6, 1e-9]) {
      const a = tiedDiagonal([2, 0.7, 3, 0.7 + gap, 1.5]);
      // K ~ 1/gap is large but correct; the rounding of Q(r) ~ gap * P(r) limits agreement to
      // ~ (L + 1) u / gap relative at worst, far below 1e-6 here.
      expect(relErr(sqrtmGradOne(a, 5, 'svd-pade', W5), sqrtmGradOne(a, 5, 'svd', W5))).toBeLessThan(1e-6);
    }
  });
});

describe('svd-pade K matrix at a tie (backwardCoefficientsSync)', () => {
  // Ascending eigenvalues with one exact tie (0.5, 0.5). Entries (0, 1) and (1, 0) sit on the pole.
  const values = new Tensor(Float64Array.from([0.5, 0.5, 1, 2]), [1, 4]);
  const n = 4;

  test.each([undefined, 1, 5, 7, 50, 100])('degree %s: raw K is infinite on the tie, finite and equal to svd after replacement', (degree) => {
    const spec = degree === undefined ? ('svd-pade' as const) : { method: 'svd-pade' as const, degree };
    const raw = backwardCoefficientsSync(values, spec, false).data;
    expect(Number.isFinite(raw[0 * n + 1])).toBe(false);
    expect(Number.isFinite(raw[1 * n + 0])).toBe(false);
    // Off the tie the approximant is 1/(1 - r): K_ij = 1/(l_j - l_i).
    expect(raw[0 * n + 2]).toBeCloseTo(1 / (1 - 0.5), 12);
    expect(raw[3 * n + 2]).toBeCloseTo(1 / (1 - 2), 12);
    const k = backwardCoefficientsSync(values, spec, true).data;
    expect(Array.prototype.every.call(k, Number.isFinite)).toBe(true);
    // svd rule: +inf -> the largest finite entry of the matrix (here 1/(1 - 0.5) = 2).
    expect(k[0 * n + 1]).toBeCloseTo(2, 12);
    expect(relErr(k, backwardCoefficientsSync(values, 'svd', true).data)).toBeLessThan(1e-13);
  });
});

describe('user-supplied p / q for svd-pade', () => {
  const A = withSpectrum([0.1, 0.4, 0.8, 1.3, 2.0], 111);
  const W = randomSquare(5, 112);

  test('p = [1, 0], q = [1, -1] (degree 1) is 1/(1 - r) exactly: the svd gradient', () => {
    const g = sqrtmGradOne(A, 5, { method: 'svd-pade', degree: 1, p: [1, 0], q: [1, -1] }, W);
    expect(relErr(g, sqrtmGradOne(A, 5, 'svd', W))).toBeLessThan(1e-12);
  });

  test('p = [1, 1], q = [1, 0] (degree 1) is 1 + r: the degree-1 Taylor gradient, so the coefficients are really used', () => {
    const g = sqrtmGradOne(A, 5, { method: 'svd-pade', degree: 1, p: [1, 1], q: [1, 0] }, W);
    expect(relErr(g, sqrtmGradOne(A, 5, { method: 'svd-taylor', degree: 1 }, W))).toBeLessThan(1e-14);
    expect(relErr(g, sqrtmGradOne(A, 5, 'svd', W))).toBeGreaterThan(1e-2);
  });

  test('the default svd-pade uses exactly padeCoefficients("geometric", 50)', () => {
    const { p, q } = padeCoefficients('geometric', 50);
    const g = sqrtmGradOne(A, 5, { method: 'svd-pade', degree: 50, p, q }, W);
    expect(Array.from(g)).toEqual(Array.from(sqrtmGradOne(A, 5, 'svd-pade', W)));
  });

  test('p / q of the wrong length are rejected', () => {
    expect(() => sqrtmSync(new Tensor(Float64Array.from(A), [1, 5, 5]), { method: 'svd-pade', degree: 2, p: [1, 0], q: [1, -1] })).toThrow(
      /degree\+1|3 coefficients/,
    );
  });
});

// ---- exact rational arithmetic for the sqrt(1 - z) approximant ------------------------------

type Frac = [bigint, bigint]; // numerator, positive denominator, reduced
const babs = (a: bigint) => (a < 0n ? -a : a);
function gcd(a: bigint, b: bigint): bigint {
  a = babs(a);
  b = babs(b);
  while (b) [a, b] = [b, a % b];
  return a || 1n;
}
function frac(n: bigint, d = 1n): Frac {
  if (d < 0n) [n, d] = [-n, -d];
  const g = gcd(n, d);
  return [n / g, d / g];
}
const fadd = (a: Frac, b: Frac) => frac(a[0] * b[1] + b[0] * a[1], a[1] * b[1]);
const fsub = (a: Frac, b: Frac) => frac(a[0] * b[1] - b[0] * a[1], a[1] * b[1]);
const fmul = (a: Frac, b: Frac) => frac(a[0] * b[0], a[1] * b[1]);
const fdiv = (a: Frac, b: Frac) => frac(a[0] * b[1], a[1] * b[0]);
const fnum = (a: Frac) => Number((a[0] * 10n ** 40n) / a[1]) / 1e40;

/** Taylor coefficients of sqrt(1 - z): binom(1/2, k) (-1)^k, exactly. */
function sqrtTaylor(count: number): Frac[] {
  const c: Frac[] = [frac(1n)];
  for (let k = 1; k < count; k++) c.push(fmul(c[k - 1], frac(BigInt(2 * k - 3), BigInt(2 * k))));
  return c;
}

/** The [m/m] Pade approximant of sqrt(1 - z) in exact arithmetic (Q(0) = 1). */
function exactSqrtPade(m: number): { p: Frac[]; q: Frac[] } {
  const c = sqrtTaylor(2 * m + 1);
  const coef = (k: number) => (k < 0 ? frac(0n) : c[k]);
  // sum_{j=1..m} q_j c_{k-j} = -c_k for k = m+1..2m; Gauss-Jordan over the rationals.
  const rows: Frac[][] = [];
  for (let r = 0; r < m; r++) {
    const k = m + 1 + r;
    rows.push([...Array.from({ length: m }, (_, j) => coef(k - j - 1)), fsub(frac(0n), coef(k))]);
  }
  for (let col = 0; col < m; col++) {
    let piv = col;
    while (rows[piv][col][0] === 0n) piv++;
    [rows[col], rows[piv]] = [rows[piv], rows[col]];
    for (let r = 0; r < m; r++) {
      if (r === col) continue;
      const f = fdiv(rows[r][col], rows[col][col]);
      for (let k = col; k <= m; k++) rows[r][k] = fsub(rows[r][k], fmul(f, rows[col][k]));
    }
  }
  const q: Frac[] = [frac(1n), ...rows.map((row, j) => fdiv(row[m], row[j]))];
  const p: Frac[] = [];
  for (let k = 0; k <= m; k++) {
    let s = frac(0n);
    for (let j = 0; j <= k; j++) s = fadd(s, fmul(q[j], c[k - j]));
    p.push(s);
  }
  return { p, q };
}

describe("sqrt(1 - z) Pade coefficients ('sqrt', used by mpa-lya)", () => {
  test('m = 1, 2: the known closed forms', () => {
    // [1/1]: (1 - 3z/4) / (1 - z/4);  [2/2]: (1 - 5z/4 + 5z^2/16) / (1 - 3z/4 + z^2/16)
    const c1 = padeCoefficients('sqrt', 1);
    expect(c1.p).toEqual([1, -0.75]);
    expect(c1.q).toEqual([1, -0.25]);
    const c2 = padeCoefficients('sqrt', 2);
    expect(c2.p.map((v) => v * 16)).toEqual([16, -20, 5].map((v) => expect.closeTo(v, 13)));
    expect(c2.q.map((v) => v * 16)).toEqual([16, -12, 1].map((v) => expect.closeTo(v, 13)));
  });

  test.each([1, 2, 3, 4, 5, 6, 7, 8])('m = %i: Taylor coefficients of P/Q match binom(1/2, k)(-1)^k up to order 2m', (m) => {
    const { p, q } = padeCoefficients('sqrt', m);
    const taylor = sqrtTaylor(2 * m + 2).map(fnum);
    const c = powerSeriesQuotient(p, q, 2 * m + 2);
    for (let k = 0; k <= 2 * m; k++) expect(Math.abs(c[k] - taylor[k])).toBeLessThan(1e-10 * Math.abs(taylor[k]));
    // ... and not beyond: the next coefficient is off (the approximant has order exactly 2m).
    expect(Math.abs(c[2 * m + 1] - taylor[2 * m + 1])).toBeGreaterThan(1e-8 * Math.abs(taylor[2 * m + 1]));
  });

  test.each([1, 2, 3, 4, 5])('m = %i (up to the default): coefficients equal the exact rational Pade to double precision', (m) => {
    const ex = exactSqrtPade(m);
    const { p, q } = padeCoefficients('sqrt', m);
    for (let k = 0; k <= m; k++) {
      expect(Math.abs(p[k] - fnum(ex.p[k]))).toBeLessThan(4e-15 * Math.abs(fnum(ex.p[k])));
      expect(Math.abs(q[k] - fnum(ex.q[k]))).toBeLessThan(4e-15 * Math.abs(fnum(ex.q[k])));
    }
  });

  test('all allowed degrees (1..12): P/Q agrees with the exact rational approximant on [0, 1]', () => {
    // The linear system for q is ill-conditioned for large m (coefficients drift by ~1e-5
    // relative at m = 12), but the function values, which is what mpa-lya uses, stay within 1e-8.
    for (let m = 1; m <= 12; m++) {
      const ex = exactSqrtPade(m);
      const { p, q } = padeCoefficients('sqrt', m);
      for (let i = 0; i <= 20; i++) {
        const zf = frac(BigInt(i), 20n);
        let pe = frac(0n);
        let qe = frac(0n);
        for (let k = m; k >= 0; k--) {
          pe = fadd(fmul(pe, zf), ex.p[k]);
          qe = fadd(fmul(qe, zf), ex.q[k]);
        }
        const exact = fnum(fdiv(pe, qe));
        expect(Math.abs(hornerEval(p, i / 20) / hornerEval(q, i / 20) - exact)).toBeLessThan(1e-8);
      }
    }
  });

  test('the approximant is exact at z = 0 and positive on [0, 1] (mpa-lya stays finite at singular inputs)', () => {
    for (let m = 1; m <= 12; m++) {
      const { p, q } = padeCoefficients('sqrt', m);
      expect(hornerEval(p, 0) / hornerEval(q, 0)).toBe(1);
      for (let i = 0; i <= 100; i++) {
        const z = i / 100;
        expect(hornerEval(q, z)).toBeGreaterThan(0);
        expect(hornerEval(p, z)).toBeGreaterThan(0);
      }
    }
  });
});
