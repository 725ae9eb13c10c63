// The [L/L] Pade approximant svd-pade uses for 1/(1 - r), evaluated across r in [0, 1], against
// 1/(1 - r) itself and the degree-D Taylor sum svd-taylor uses, and what each gives for the K entry
// of two close eigenvalues.
//
// svd-pade and svd-taylor write K_ij = s / l_big * series(r), r = l_small / l_big, so series(r) IS
// the K entry for l_big = 1. The library's own values come from backwardCoefficientsSync on the
// spectrum [r, 1, 2] (entry (0, 1): the pair (r, 1)); alongside them:
//   - the same evaluation re-done here in float64 (Horner, like native/cpu/eigen_sqrtm.h padeRatio,
//     including its rule that |Q(r)| below the Horner rounding bound 2 (L + 1) u sum |q_k| r^k is
//     the pole) - it must match the library bit for bit, which the report states;
//   - the exact value of P/Q for the float64-stored coefficients (BigInt rational arithmetic): what
//     the stored coefficients define, with no evaluation rounding;
//   - the same Horner evaluation in float32 (coefficients, r and every operation rounded), as a
//     float32 implementation would compute it.
import { backwardCoefficientsSync, padeCoefficients } from '../ops';
import { Tensor } from '../tensor';
import { image, table } from './markdown';
import { ProgressSink, silentProgress } from './progress';
import { Report, regenerateHint } from './report';
import { PlotSpec, svgPlot } from './svg';
import { EPS64, num, sci } from './util';

export interface PadeOptions {
  /** Pade degree L (the library default is 50). */
  degree?: number;
  /** Taylor degree D (the library default is 100). */
  taylorDegree?: number;
  progress?: ProgressSink;
}

export interface PadePoint {
  r: number;
  /** 1 - r as computed (exact for r >= 1/2). */
  oneMinusR: number;
  /** 1/(1 - r); +inf at r = 1. */
  exact: number;
  /** Horner in float64, no pole rule. */
  horner: number;
  /** Horner in float64 with the library's pole rule (this module's re-evaluation). */
  rule: number;
  /** The library's K entry, raw (before replacement) and after replacement in the spectrum [r, 1, 2]. */
  libraryK: number;
  libraryKReplaced: number;
  /** Computed Q(r) and the rounding bound under which the library calls it the pole. */
  q: number;
  bound: number;
  /** P/Q of the stored float64 coefficients, evaluated exactly. */
  storedExact: number;
  /** Horner entirely in float32. */
  float32: number;
  /** Degree-D Taylor sum (Horner of ones, as the library) and the library's svd-taylor K entry. */
  taylor: number;
  taylorK: number;
  relHorner: number;
  relTaylor: number;
  relFloat32: number;
}

export interface PadeResult {
  L: number;
  D: number;
  p: number[];
  q: number[];
  /** Dense near 1 (1 - r = 10^-t, t = 0.1, 0.2, ..., 16, then r = 1): table and plots. */
  near: PadePoint[];
  /** r = k / 100, k = 0..99: the "ordinary" range. */
  linear: PadePoint[];
  /** The decade points 1 - r = 1, 1e-1, ..., 1e-16 and r = 1, for the table. */
  decadePoints: PadePoint[];
  /** Does this module's re-evaluation reproduce the library's K bit for bit at every point? */
  matchesLibrary: boolean;
  summary: {
    maxRelHornerLinear: number;
    maxRelTaylorLinear: number;
    /** Largest 1 - r at which the relative error exceeds 1e-8 (Horner Pade / Taylor). */
    firstBadPade: number;
    firstBadTaylor: number;
    /** Largest 1 - r at which the library's pole rule fires. */
    firstPole: number;
    /** Sum of the stored q_k, evaluated exactly: Q(1) of the stored coefficients (0 in exact arithmetic). */
    storedQ1: number;
  };
}

// ---- exact dyadic arithmetic: every double is n * 2^e with integer n --------------------------

interface Dyadic {
  n: bigint;
  e: number;
}

export function toDyadic(x: number): Dyadic {
  if (!Number.isFinite(x)) throw new RangeError('toDyadic: not finite');
  if (x === 0) return { n: 0n, e: 0 };
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const negative = bits >> 63n === 1n;
  const biased = Number((bits >> 52n) & 0x7ffn);
  let mant = bits & ((1n << 52n) - 1n);
  let e: number;
  if (biased === 0) e = -1074;
  else {
    mant |= 1n << 52n;
    e = biased - 1075;
  }
  return { n: negative ? -mant : mant, e };
}

function dAdd(a: Dyadic, b: Dyadic): Dyadic {
  if (a.n === 0n) return b;
  if (b.n === 0n) return a;
  const e = Math.min(a.e, b.e);
  return { n: (a.n << BigInt(a.e - e)) + (b.n << BigInt(b.e - e)), e };
}

function dMul(a: Dyadic, b: Dyadic): Dyadic {
  return { n: a.n * b.n, e: a.e + b.e };
}

function bitLength(n: bigint): number {
  return n === 0n ? 0 : n.toString(2).length;
}

/** a / b as the nearest-ish double (64 quotient bits, then one rounding): exact enough for a report. */
export function dyadicRatio(a: Dyadic, b: Dyadic): number {
  if (b.n === 0n) return a.n === 0n ? NaN : a.n > 0n ? Infinity : -Infinity;
  if (a.n === 0n) return 0;
  const negative = a.n < 0n !== b.n < 0n;
  const an = a.n < 0n ? -a.n : a.n;
  const bn = b.n < 0n ? -b.n : b.n;
  // Scale so that the integer quotient has ~66 bits (more than a double holds), then round once.
  const shift = bitLength(bn) - bitLength(an) + 66;
  const quotient = shift >= 0 ? (an << BigInt(shift)) / bn : an / (bn << BigInt(-shift));
  let v = Number(quotient);
  let k = a.e - b.e - shift;
  while (k > 1000) {
    v *= 2 ** 1000;
    k -= 1000;
  }
  while (k < -1000) {
    v *= 2 ** -1000;
    k += 1000;
  }
  v *= 2 ** k;
  return negative ? -v : v;
}

export function dyadicToNumber(a: Dyadic): number {
  return dyadicRatio(a, { n: 1n, e: 0 });
}

/** sum c_k r^k evaluated exactly for double coefficients and a double r. */
export function exactPolyval(c: readonly number[], r: number): Dyadic {
  const rd = toDyadic(r);
  let acc = toDyadic(c[c.length - 1]);
  for (let k = c.length - 2; k >= 0; k--) acc = dAdd(dMul(acc, rd), toDyadic(c[k]));
  return acc;
}

// ---- float evaluations --------------------------------------------------------------------------

/** Horner in float64, the way native polyval does it (c = null: all ones). */
export function horner(c: readonly number[] | null, deg: number, r: number): number {
  let acc = c ? c[deg] : 1;
  for (let k = deg - 1; k >= 0; k--) acc = acc * r + (c ? c[k] : 1);
  return acc;
}

/** The library's padeRatio re-done in float64: P/Q, or the pole (+-inf) when |Q| is within rounding. */
export function padeRule(p: readonly number[], q: readonly number[], r: number): { value: number; q: number; bound: number } {
  const L = q.length - 1;
  const num = horner(p, L, r);
  const den = horner(q, L, r);
  let absDen = Math.abs(q[L]);
  for (let k = L - 1; k >= 0; k--) absDen = absDen * r + Math.abs(q[k]);
  const bound = 2 * (L + 1) * EPS64 * absDen;
  if (Math.abs(den) <= bound) return { value: num >= 0 ? Infinity : -Infinity, q: den, bound };
  return { value: num / den, q: den, bound };
}

/** Horner with every coefficient, input and operation rounded to float32. */
export function hornerFloat32(c: readonly number[], r: number): number {
  const f = Math.fround;
  const rr = f(r);
  let acc = f(c[c.length - 1]);
  for (let k = c.length - 2; k >= 0; k--) acc = f(f(acc * rr) + f(c[k]));
  return acc;
}

function relative(v: number, exact: number): number {
  if (exact === Infinity) return v === Infinity ? 0 : Infinity;
  if (!Number.isFinite(v)) return Infinity;
  return Math.abs(v - exact) / Math.abs(exact);
}

function point(r: number, c: { p: number[]; q: number[] }, D: number, lib: { pade: Float64Array; padeRep: Float64Array; taylor: Float64Array }, i: number): PadePoint {
  const L = c.q.length - 1;
  const oneMinusR = 1 - r;
  const exact = oneMinusR === 0 ? Infinity : 1 / oneMinusR;
  const h = horner(c.p, L, r) / horner(c.q, L, r);
  const rule = padeRule(c.p, c.q, r);
  const storedExact = dyadicRatio(exactPolyval(c.p, r), exactPolyval(c.q, r));
  const f32 = hornerFloat32(c.p, r) / hornerFloat32(c.q, r);
  const taylor = horner(null, D, r);
  const libraryK = lib.pade[i * 9 + 1];
  return {
    r,
    oneMinusR,
    exact,
    horner: h,
    rule: rule.value,
    libraryK,
    libraryKReplaced: lib.padeRep[i * 9 + 1],
    q: rule.q,
    bound: rule.bound,
    storedExact,
    float32: Math.fround(f32),
    taylor,
    taylorK: lib.taylor[i * 9 + 1],
    relHorner: relative(h, exact),
    relTaylor: relative(taylor, exact),
    relFloat32: relative(f32, exact),
  };
}

/** Evaluates every point, asking the library for its K entries in one batched call per method. */
function evaluate(rs: number[], c: { p: number[]; q: number[] }, L: number, D: number): PadePoint[] {
  const values = new Float64Array(rs.length * 3);
  rs.forEach((r, i) => values.set([r, 1, 2], i * 3));
  const t = new Tensor(values, [rs.length, 3]);
  const lib = {
    pade: backwardCoefficientsSync(t, { method: 'svd-pade', degree: L }, false).data as Float64Array,
    padeRep: backwardCoefficientsSync(t, { method: 'svd-pade', degree: L }, true).data as Float64Array,
    taylor: backwardCoefficientsSync(t, { method: 'svd-taylor', degree: D }, false).data as Float64Array,
  };
  return rs.map((r, i) => point(r, c, D, lib, i));
}

export function runPade(opts: PadeOptions = {}): PadeResult {
  const L = opts.degree ?? 50;
  const D = opts.taylorDegree ?? 100;
  const task = (opts.progress ?? silentProgress).start('pade', 3);
  const c = padeCoefficients('geometric', L);
  const nearR: number[] = [];
  for (let k = 1; k <= 160; k++) nearR.push(1 - 10 ** (-k / 10));
  nearR.push(1);
  const near = evaluate(nearR, c, L, D);
  task.tick('near r = 1');
  const linear = evaluate(Array.from({ length: 100 }, (_, k) => k / 100), c, L, D);
  task.tick('r in [0, 1)');
  const decR = [0, ...Array.from({ length: 16 }, (_, k) => 1 - 10 ** -(k + 1)), 1];
  const decadePoints = evaluate(decR, c, L, D);
  task.tick('decades');
  task.done();
  const all = [...near, ...linear, ...decadePoints];
  const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
  const matchesLibrary = all.every((pt) => same(pt.rule, pt.libraryK));
  const byDistance = near.slice().sort((a, b) => b.oneMinusR - a.oneMinusR);
  const first = (f: (p: PadePoint) => boolean) => byDistance.find(f)?.oneMinusR ?? NaN;
  return {
    L,
    D,
    p: c.p,
    q: c.q,
    near,
    linear,
    decadePoints,
    matchesLibrary,
    summary: {
      maxRelHornerLinear: Math.max(...linear.map((p) => p.relHorner)),
      maxRelTaylorLinear: Math.max(...linear.map((p) => p.relTaylor)),
      firstBadPade: first((p) => p.relHorner > 1e-8),
      firstBadTaylor: first((p) => p.relTaylor > 1e-8),
      firstPole: first((p) => !Number.isFinite(p.rule)),
      storedQ1: dyadicToNumber(exactPolyval(c.q, 1)),
    },
  };
}

// ---- report ---------------------------------------------------------------------------------

export function valuePlot(res: PadeResult): PlotSpec {
  const pts = (f: (p: PadePoint) => number) => res.near.filter((p) => p.oneMinusR > 0).map((p) => [p.oneMinusR, Math.abs(f(p))] as [number, number]);
  return {
    title: `[${res.L}/${res.L}] Padé (svd-pade) vs 1/(1−r) vs Taylor D=${res.D} (svd-taylor)`,
    xLabel: '1 − r   (r = λsmall/λbig; 1 − r = relative gap)',
    yLabel: '|series(r)| = |K| · λbig',
    xLog: true,
    yLog: true,
    series: [
      { name: '1/(1−r) (exact; svd)', points: pts((p) => p.exact), color: '#000000', dashed: true },
      { name: 'Padé, float64 Horner', points: pts((p) => p.horner), mode: 'both' },
      { name: 'Padé, stored coeff. exact', points: pts((p) => p.storedExact) },
      { name: 'Padé, float32 Horner', points: pts((p) => p.float32) },
      { name: `Taylor D=${res.D}`, points: pts((p) => p.taylor) },
    ],
  };
}

export function errorPlot(res: PadeResult): PlotSpec {
  const pts = (f: (p: PadePoint) => number) => res.near.filter((p) => p.oneMinusR > 0).map((p) => [p.oneMinusR, f(p)] as [number, number]);
  return {
    title: 'Relative error against 1/(1−r)',
    xLabel: '1 − r',
    yLabel: '|series − 1/(1−r)| · (1−r)',
    xLog: true,
    yLog: true,
    series: [
      { name: 'Padé, float64 Horner', points: pts((p) => p.relHorner), mode: 'both' },
      { name: 'Padé, float32 Horner', points: pts((p) => p.relFloat32) },
      { name: `Taylor D=${res.D}`, points: pts((p) => p.relTaylor) },
    ],
    refLines: [
      { y: 1e-8, label: '1e-8' },
      { points: [1e-16, 1e-12, 1e-8, 1e-4, 1].map((x) => [x, EPS64 / x] as [number, number]), label: 'ε64/(1−r)' },
    ],
  };
}

export function padeReport(res: PadeResult, command = 'pade'): Report {
  const md: string[] = [];
  const svgs: Record<string, string> = {};
  const s = res.summary;
  md.push(`# The [${res.L}/${res.L}] Padé approximant of svd-pade across r ∈ [0, 1]\n`);
  md.push(`${regenerateHint(command)}\n`);
  md.push(
    'svd-pade and svd-taylor write the coefficient of two eigenvalues as K = s/λbig · series(r), ' +
      'r = λsmall/λbig, where series(r) approximates 1/(1 − r); with λbig = 1 the series *is* K. ' +
      `The coefficients are the library's, \`padeCoefficients('geometric', ${res.L})\`: ` +
      `p_k = 1 − k/${res.L}, q_0 = 1, q_j = −1/${res.L}, for which P(r)(1 − r) = Q(r) holds identically — ` +
      'in exact arithmetic the approximant *is* 1/(1 − r), pole included (docs/methods.md, "svd-pade\'s coefficients").\n',
  );
  md.push(
    `**Library K** is \`backwardCoefficientsSync\` on the spectrum [r, 1, 2], entry (0, 1), before replacement; ` +
      `this report re-evaluates it in float64 (Horner plus the pole rule |Q(r)| ≤ 2(L+1)·u·Σ|q_k|r^k) and the two agree bit for bit: **${res.matchesLibrary ? 'yes' : 'NO'}**. ` +
      '"stored exact" is P/Q of the float64-stored coefficients evaluated in exact rational arithmetic; ' +
      '"float32" is the same Horner evaluation with every number rounded to float32.\n',
  );
  md.push('## Summary\n');
  md.push(
    table(
      ['quantity', 'value'],
      [
        [`max relative error of the float64 Padé on r = 0, 0.01, …, 0.99`, sci(s.maxRelHornerLinear)],
        [`max relative error of Taylor D=${res.D} on the same grid`, sci(s.maxRelTaylorLinear)],
        ['largest 1 − r where the float64 Padé is off by more than 1e-8', sci(s.firstBadPade)],
        [`largest 1 − r where Taylor D=${res.D} is off by more than 1e-8`, sci(s.firstBadTaylor)],
        ['largest 1 − r where the library returns the pole (|Q| within rounding)', sci(s.firstPole)],
        ['Q(1) of the stored coefficients, exactly (0 in exact arithmetic)', sci(s.storedQ1, 3)],
      ],
    ),
  );
  md.push('## Values near r = 1\n');
  md.push(
    table(
      ['1 − r', '1/(1−r)', 'Padé f64', 'rel. err', 'library K (raw)', 'K replaced in [r,1,2]', 'computed Q(r)', 'pole bound', 'stored exact', 'Padé f32', `Taylor D=${res.D}`, 'rel. err'],
      res.decadePoints.map((p) => [
        p.oneMinusR === 0 ? '0 (r = 1)' : sci(p.oneMinusR, 2),
        sci(p.exact, 4),
        sci(p.horner, 4),
        sci(p.relHorner, 1),
        sci(p.libraryK, 4),
        sci(p.libraryKReplaced, 3),
        sci(p.q, 2),
        sci(p.bound, 2),
        sci(p.storedExact, 4),
        sci(p.float32, 3),
        num(p.taylor, 4),
        sci(p.relTaylor, 1),
      ]),
    ),
  );
  svgs['pade-values.svg'] = svgPlot(valuePlot(res));
  svgs['pade-error.svg'] = svgPlot(errorPlot(res));
  md.push(image('Pade vs 1/(1-r) vs Taylor', 'pade-values.svg'));
  md.push(image('relative error vs 1-r', 'pade-error.svg'));
  md.push('## What this means for K near ties\n');
  md.push(
    [
      `- For 1 − r ≳ ${sci(s.firstBadPade, 0)} the float64 Padé equals 1/(1 − r) to better than 1e-8: svd-pade's K is svd's K, ` +
        '1/(λj − λi), just computed through a longer formula.',
      '- Closer to a tie its error grows like u/(1 − r) (u = 1.1e-16): r = λsmall/λbig is rounded before 1 − r is ' +
        'formed, so the gap is known only to u absolutely, while svd\'s λj − λi is exact (Sterbenz). svd-pade is ' +
        'never *more* accurate than svd.',
      `- From 1 − r ≈ ${sci(s.firstPole, 1)} on, the computed Q(r) is within its rounding bound and the library returns the ` +
        'pole: the entry becomes ±inf and is replaced by the matrix\'s largest finite entry, exactly as for svd at a tie.',
      `- K is not bounded near ties by svd-pade: |K| grows like 1/(λbig (1 − r)) up to ~${sci(1 / (s.firstPole || 1e-15), 0)}/λbig. ` +
        `The bounded one is svd-taylor: its series never exceeds D + 1 = ${res.D + 1}, so |K| ≤ ${res.D + 1}/λbig — at the price of ` +
        `a relative error above 1e-8 already at 1 − r ≈ ${sci(s.firstBadTaylor, 1)}.`,
      `- The stored float64 coefficients do not sum to 0 exactly (Q(1) = ${sci(s.storedQ1, 2)}), so the function they define has its ` +
        'pole a hair away from r = 1 and a huge finite value at r = 1 (column "stored exact"). Any boundedness an implementation ' +
        'shows at r = 1 comes from such coefficient rounding or from evaluation noise, not from the approximant: without the pole rule ' +
        `the float64 evaluation gives ${sci(res.decadePoints[res.decadePoints.length - 1].horner, 2)} at r = 1 (wrong sign), and a float32 evaluation ` +
        `saturates at ${sci(res.decadePoints[res.decadePoints.length - 1].float32, 2)} once r rounds to 1 in float32 (1 − r < 6e-8).`,
    ].join('\n') + '\n',
  );
  const data = {
    L: res.L,
    D: res.D,
    matchesLibrary: res.matchesLibrary,
    summary: res.summary,
    decadePoints: res.decadePoints,
  };
  return { name: 'pade', title: 'Padé approximant', markdown: md.join('\n'), svgs, data };
}
