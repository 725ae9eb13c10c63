// Gradient smoothness: how each backward method's gradient behaves as the smallest eigen-gap
// shrinks, on spectra where that gap is set exactly, and on realistic (rank-deficient) covariances.
//
// Controlled family (see data.ts controlledSpectrum): C - 1 eigenvalues log-uniform in
// [lambdaMin, 1], one of them doubled into a pair (b, b (1 + g)) at the bottom or in the middle of
// the spectrum, g from 1e-1 down to 1e-14 and g = 0 (exact tie); A = Q diag(l) Q^T with a seeded
// Haar-random Q, and the loss L = <G, sqrt(A)> for a seeded random symmetric G. Three views:
//   1. library: sqrtm + sqrtmBackward of each method on A (float64), against svd-lyap's backward on
//      the same A (the reference). svd-lyap itself is checked against the exact gradient from
//      the known eigenpairs. A float64 matrix cannot carry a relative gap below ~eps64 lambda_max / b,
//      so the gap eigh actually sees is reported next to the nominal one.
//   2. exact eigenpairs: the method's coefficient matrix F (backwardCoefficientsSync on the nominal
//      eigenvalues, after replacement) put into the backward formula with the exact Q: what F alone
//      does to the gradient, for every g including exact ties.
//   3. F itself: the pair's entry before replacement against 1/(l_b - l_a), the largest |F| after
//      replacement, and the share of non-finite entries before replacement.
import { CovPoolLayer } from '../layer';
import { METHODS, Method } from '../methods';
import { backwardCoefficientsSync, covpoolSync, eighSync, resolveOptions, sqrtmBackwardSync, sqrtmSync } from '../ops';
import { Tensor } from '../tensor';
import {
  FeatureModel,
  FeatureSet,
  PAIR_POSITIONS,
  PairPosition,
  Size,
  controlledSpectrum,
  spdWithSpectrum,
  syntheticFeatures,
} from './data';
import { Mat, coefficientGradient, fromBasis, lyapunovGradient, randomSymmetric, relErr, sym, toBasis } from './linalg';
import { image, table } from './markdown';
import { ProgressSink, silentProgress } from './progress';
import { Report, regenerateHint } from './report';
import { PlotSpec, Series, svgPlot } from './svg';
import { EPS64, decades, maximum, median, percent, sci, uniform } from './util';

/** Methods whose backward builds a coefficient matrix F in the eigenbasis. */
export const K_METHODS: readonly Method[] = ['svd', 'svd-trunc', 'svd-topn', 'svd-taylor', 'svd-pade', 'svd-pi'];
/** Methods that replace non-finite F entries (the others are finite by construction). */
export const REPLACING_METHODS: readonly Method[] = ['svd', 'svd-topn', 'svd-pade'];

export const DEFAULT_GAPS: readonly number[] = [...decades(-1, -14), 0];

export interface GradientOptions {
  sizes: number[];
  gaps?: readonly number[];
  positions?: readonly PairPosition[];
  seeds: number;
  seed: number;
  /** Smallest background eigenvalue (largest is 1). */
  lambdaMin?: number;
  realistic: Size[];
  realisticModels?: readonly FeatureModel[];
  realisticBatch: number;
  /** Feature files (e.g. from a trained model) analysed like the realistic synthetic cases. */
  extraSets?: FeatureSet[];
  progress?: ProgressSink;
}

export interface GapRow {
  gap: number;
  /** lambda_b - lambda_a. */
  absGap: number;
  /** The pair's relative gap in float64 eigh of A (median over seeds). */
  seenGap: number;
  /** Library backward vs svd-lyap's (svd-lyap: vs the exact gradient), max over seeds. */
  library: Record<string, number>;
  /** F with exact eigenpairs vs the exact gradient (K methods and svd-lyap), max over seeds. */
  exactPairs: Record<string, number>;
  /** The pair's F entry (coefficient of u_a in du_b) before replacement, nominal eigenvalues. */
  pairEntry: Record<string, number>;
  /** The exact value of that entry, 1/(l_b - l_a). */
  pairExact: number;
  /** max |F| after replacement (nominal eigenvalues; svd-lyap: max C_ij). */
  maxK: Record<string, number>;
  /** Share of non-finite off-diagonal F entries before replacement (nominal eigenvalues). */
  nonFinite: Record<string, number>;
  /** The same two on the eigenvalues eigh computed from A (max over seeds). */
  maxKSeen: Record<string, number>;
  nonFiniteSeen: Record<string, number>;
}

export interface FamilyResult {
  C: number;
  position: PairPosition;
  lambdaMin: number;
  /** The pair's value b (the lower eigenvalue of the pair). */
  pairValue: number;
  rows: GapRow[];
}

export interface RealisticRow {
  method: Method;
  /** dL/dA vs svd-lyap's, max over the batch. */
  dA: number;
  /** dL/dX through the whole layer (float64 features) vs svd-lyap's, max over the batch. */
  dX: number;
  maxK: number;
  nonFinite: number;
}

export interface RealisticResult {
  name: string;
  C: number;
  N: number;
  B: number;
  /** Eigenvalues at or below the floor (tied at eps64), per sample. */
  floored: number[];
  /** Smallest relative gap among the eigenvalues above the floor, per sample. */
  smallestGap: number[];
  rows: RealisticRow[];
}

export interface GradientResult {
  families: FamilyResult[];
  realistic: RealisticResult[];
}

function oneMatrix(a: ArrayLike<number>, C: number): Tensor {
  return new Tensor(Float64Array.from(a), [1, C, C]);
}

/** The eigenvalues a method's backward sees: floored at eps64, and for svd-topn all but the top n set to eps. */
export function methodValues(method: Method, l: ArrayLike<number>, C: number): Float64Array {
  const v = Float64Array.from(l, (x) => Math.max(x, EPS64));
  if (method === 'svd-topn') {
    const n = resolveOptions('svd-topn', 'float64', C).n as number;
    for (let i = 0; i < C - n; i++) v[i] = EPS64;
  }
  return v;
}

/** F (or svd-lyap's C) for one spectrum, raw or after replacement. */
export function coefficients(method: Method, l: ArrayLike<number>, C: number, replace: boolean): Float64Array {
  return backwardCoefficientsSync(new Tensor(methodValues(method, l, C), [1, C]), method, replace).data as Float64Array;
}

export function maxAbsOffDiagonal(f: ArrayLike<number>, C: number): number {
  let m = 0;
  for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) if (i !== j) m = Math.max(m, Math.abs(f[i * C + j]));
  return m;
}

export function nonFiniteShare(f: ArrayLike<number>, C: number): number {
  let n = 0;
  for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) if (i !== j && !Number.isFinite(f[i * C + j])) n++;
  return n / (C * (C - 1));
}

/** The library's backward of one method for one float64 matrix and one dL/dS. */
export function libraryGradient(method: Method, a: Mat, g: Mat, C: number): Float64Array {
  const r = sqrtmSync(oneMatrix(a, C), method);
  const d = sqrtmBackwardSync(r.state, oneMatrix(g, C));
  r.state.dispose();
  return d.data as Float64Array;
}

export function runGradients(opts: GradientOptions): GradientResult {
  const progress = opts.progress ?? silentProgress;
  const gaps = opts.gaps ?? DEFAULT_GAPS;
  const positions = opts.positions ?? PAIR_POSITIONS;
  const lambdaMin = opts.lambdaMin ?? 1e-6;
  const models = opts.realisticModels ?? ['iid', 'decay'];
  const sets: FeatureSet[] = [];
  for (const size of opts.realistic) for (const model of models) sets.push(syntheticFeatures(model, size, opts.realisticBatch, opts.seed));
  sets.push(...(opts.extraSets ?? []));
  const total = opts.sizes.length * positions.length * gaps.length * opts.seeds + sets.length;
  const task = progress.start('gradients', total);
  const families: FamilyResult[] = [];
  for (const C of opts.sizes)
    for (const position of positions) {
      const rows: GapRow[] = [];
      let pairValue = NaN;
      for (const gap of gaps) {
        const spec = controlledSpectrum(C, position, gap, lambdaMin);
        const l = spec.values;
        pairValue = l[spec.a];
        const row: GapRow = {
          gap,
          absGap: l[spec.b] - l[spec.a],
          seenGap: NaN,
          library: {},
          exactPairs: {},
          pairEntry: {},
          pairExact: 1 / (l[spec.b] - l[spec.a]),
          maxK: {},
          nonFinite: {},
          maxKSeen: {},
          nonFiniteSeen: {},
        };
        // F on the nominal eigenvalues (seed 0's spectrum, unscaled).
        for (const m of K_METHODS) {
          const raw = coefficients(m, l, C, false);
          row.pairEntry[m] = raw[spec.a * C + spec.b];
          row.maxK[m] = maxAbsOffDiagonal(coefficients(m, l, C, true), C);
          row.nonFinite[m] = nonFiniteShare(raw, C);
        }
        row.maxK['svd-lyap'] = maximum(Array.from(coefficients('svd-lyap', l, C, true)));
        row.nonFinite['svd-lyap'] = 0;

        const lib: Record<string, number[]> = {};
        const ex: Record<string, number[]> = {};
        const seenK: Record<string, number[]> = {};
        const seenNF: Record<string, number[]> = {};
        const seen: number[] = [];
        for (let s = 0; s < opts.seeds; s++) {
          const seedQ = opts.seed * 1000 + s * 17 + C;
          // Seeds after the first also scale the whole spectrum by a factor in [1, 1.5): relative
          // gaps stay the same, but the rounding of sqrt(l_b) - sqrt(l_a) (which decides svd's error
          // near ties) changes from seed to seed, so the worst case over seeds is not one lucky digit.
          const scale = s === 0 ? 1 : 1 + 0.5 * uniform(seedQ + 3)();
          const ls = l.map((v) => v * scale);
          const { a, q } = spdWithSpectrum(ls, seedQ);
          const g = randomSymmetric(C, seedQ + 7);
          const exact = lyapunovGradient(q, ls, g, C);
          const ref = libraryGradient('svd-lyap', a, g, C);
          for (const m of METHODS) {
            const d = m === 'svd-lyap' ? ref : libraryGradient(m, a, g, C);
            (lib[m] ??= []).push(relErr(d, m === 'svd-lyap' ? exact : ref));
          }
          // the eigenvalues the methods actually work with
          const computed = Float64Array.from(eighSync(oneMatrix(a, C)).values.data);
          const fl = computed.map((v) => Math.max(v, EPS64));
          seen.push((fl[spec.b] - fl[spec.a]) / fl[spec.a]);
          for (const m of K_METHODS) {
            (seenK[m] ??= []).push(maxAbsOffDiagonal(coefficients(m, computed, C, true), C));
            (seenNF[m] ??= []).push(nonFiniteShare(coefficients(m, computed, C, false), C));
          }
          // F alone, with the exact eigenpairs
          for (const m of K_METHODS)
            (ex[m] ??= []).push(relErr(coefficientGradient(q, methodValues(m, ls, C), coefficients(m, ls, C, true), g, C), exact));
          const lyapC = coefficients('svd-lyap', ls, C, true);
          const m2 = toBasis(q, sym(g, C), C);
          for (let i = 0; i < C * C; i++) m2[i] *= lyapC[i];
          (ex['svd-lyap'] ??= []).push(relErr(fromBasis(q, m2, C), exact));
          task.tick(`C=${C} ${position} gap=${gap === 0 ? 'tie' : sci(gap, 0)} seed ${s + 1}/${opts.seeds}`);
        }
        row.seenGap = median(seen);
        for (const k of Object.keys(lib)) row.library[k] = maximum(lib[k]);
        for (const k of Object.keys(ex)) row.exactPairs[k] = maximum(ex[k]);
        for (const k of Object.keys(seenK)) row.maxKSeen[k] = maximum(seenK[k]);
        for (const k of Object.keys(seenNF)) row.nonFiniteSeen[k] = maximum(seenNF[k]);
        rows.push(row);
      }
      families.push({ C, position, lambdaMin, pairValue, rows });
    }

  const realistic: RealisticResult[] = [];
  for (const set of sets) {
    realistic.push(realisticCase(set, opts.seed));
    task.tick(set.name);
  }
  task.done();
  return { families, realistic };
}

/**
 * A realistic GCP input: covariances of synthetic ReLU features with N < C, formed in float64 (the
 * float32-formed case is in the precision report). dL/dA of every method against svd-lyap's, the
 * same through the whole layer (dL/dX), and F's largest entry and non-finite share.
 */
export function realisticCase(set: FeatureSet, seed: number): RealisticResult {
  const [B, C, N] = set.features.shape;
  const x64 = new Tensor(Float64Array.from(set.features.data), set.features.shape);
  const a = covpoolSync(x64);
  const m = C * C;
  const gs = new Float64Array(B * m);
  for (let b = 0; b < B; b++) gs.set(randomSymmetric(C, seed * 4099 + b + C), b * m);
  const gT = new Tensor(gs, [B, C, C]);
  const T = (C * (C + 1)) / 2;
  const dy = new Tensor(Float64Array.from({ length: B * T }, (_, i) => Math.sin(0.37 * i + seed)), [B, T]);
  const NX = C * N;
  const dA: Record<string, Float64Array> = {};
  const dX: Record<string, Float64Array> = {};
  for (const method of METHODS) {
    const r = sqrtmSync(a, method);
    dA[method] = sqrtmBackwardSync(r.state, gT).data as Float64Array;
    r.state.dispose();
    const layer = new CovPoolLayer(method);
    const f = layer.forwardSync(x64);
    dX[method] = layer.backwardSync(f.state, dy).data as Float64Array;
    f.state.dispose();
  }
  const values = eighSync(a).values.data;
  const floored: number[] = [];
  const smallestGap: number[] = [];
  const kStats: Record<string, { maxK: number[]; nf: number[] }> = {};
  for (let b = 0; b < B; b++) {
    const l = Array.from(values.slice(b * C, (b + 1) * C), (v) => Math.max(v, EPS64));
    floored.push(l.filter((v) => v <= EPS64).length);
    let g = Infinity;
    for (let i = 0; i + 1 < C; i++) if (l[i] > EPS64) g = Math.min(g, (l[i + 1] - l[i]) / l[i]);
    smallestGap.push(g);
    for (const mth of [...K_METHODS, 'svd-lyap' as Method]) {
      const st = (kStats[mth] ??= { maxK: [], nf: [] });
      st.maxK.push(maxAbsOffDiagonal(coefficients(mth, l, C, true), C));
      st.nf.push(nonFiniteShare(coefficients(mth, l, C, false), C));
    }
  }
  const worst = (u: Float64Array, v: Float64Array, len: number) =>
    maximum(Array.from({ length: B }, (_, b) => relErr(u.subarray(b * len, (b + 1) * len), v.subarray(b * len, (b + 1) * len))));
  const rows: RealisticRow[] = METHODS.map((method) => ({
    method,
    dA: worst(dA[method], dA['svd-lyap'], m),
    dX: worst(dX[method], dX['svd-lyap'], NX),
    maxK: kStats[method] ? maximum(kStats[method].maxK) : NaN,
    nonFinite: kStats[method] ? maximum(kStats[method].nf) : NaN,
  }));
  return { name: set.name, C, N, B, floored, smallestGap, rows };
}

// ---- report ---------------------------------------------------------------------------------

function gapLabel(g: number): string {
  return g === 0 ? 'tie (0)' : sci(g, 0);
}

/** Where exact ties are drawn on the log gap axis. */
export const TIE_X = 1e-16;
const xOf = (g: number) => (g === 0 ? TIE_X : g);

function familyTitle(f: FamilyResult): string {
  return `C=${f.C}, ${f.position} pair (b ≈ ${sci(f.pairValue, 0)})`;
}

function fileStem(f: FamilyResult): string {
  return `gradients-C${f.C}-${f.position}`;
}

export function libraryErrorPlot(f: FamilyResult): PlotSpec {
  const series: Series[] = METHODS.map((m) => ({
    name: m === 'svd-lyap' ? 'svd-lyap (vs exact)' : m,
    points: f.rows.map((r) => [xOf(r.gap), r.library[m]] as [number, number]),
    mode: 'both',
    dashed: m === 'ns' || m === 'mpa-lya' || m === 'svd-newton',
  }));
  return {
    title: `Gradient error vs gap, library backward — ${familyTitle(f)}`,
    xLabel: 'relative gap g of the pair (exact tie drawn at 1e-16)',
    yLabel: '‖dA − dA_svd-lyap‖ / ‖dA_svd-lyap‖',
    xLog: true,
    yLog: true,
    series,
    xTicks: [{ value: TIE_X, label: 'tie' }],
    refLines: [{ points: decades(-1, -14).map((g) => [g, EPS64 / g] as [number, number]), label: 'ε64/g' }],
  };
}

export function exactPairsPlot(f: FamilyResult): PlotSpec {
  const ms = [...K_METHODS, 'svd-lyap' as Method];
  return {
    title: `Gradient error vs gap, exact eigenpairs — ${familyTitle(f)}`,
    xLabel: 'relative gap g of the pair (exact tie drawn at 1e-16)',
    yLabel: '‖dA − dA_exact‖ / ‖dA_exact‖',
    xLog: true,
    yLog: true,
    series: ms.map((m) => ({ name: m, points: f.rows.map((r) => [xOf(r.gap), r.exactPairs[m]] as [number, number]), mode: 'both' as const })),
    xTicks: [{ value: TIE_X, label: 'tie' }],
  };
}

export function maxKPlot(f: FamilyResult): PlotSpec {
  const ms = [...K_METHODS, 'svd-lyap' as Method];
  return {
    title: `Largest |K| vs gap (after replacement) — ${familyTitle(f)}`,
    xLabel: 'relative gap g of the pair (exact tie drawn at 1e-16)',
    yLabel: 'max |F_ij|',
    xLog: true,
    yLog: true,
    series: [
      ...ms.map((m) => ({ name: m === 'svd-lyap' ? 'svd-lyap (C_ij)' : m, points: f.rows.map((r) => [xOf(r.gap), r.maxK[m]] as [number, number]), mode: 'both' as const })),
      { name: '1/(λb − λa) exact', points: f.rows.filter((r) => r.gap > 0).map((r) => [r.gap, r.pairExact] as [number, number]), dashed: true, color: '#000000' },
    ],
    xTicks: [{ value: TIE_X, label: 'tie' }],
  };
}

export function gradientsReport(res: GradientResult, command = 'gradients'): Report {
  const md: string[] = [];
  const svgs: Record<string, string> = {};
  md.push('# Gradient smoothness: backward methods vs the smallest eigen-gap\n');
  md.push(`${regenerateHint(command)}\n`);
  const f0 = res.families[0];
  md.push(
    'Controlled spectra: C − 1 eigenvalues log-uniform in ' +
      `[${f0 ? sci(f0.lambdaMin, 0) : '1e-6'}, 1], one of them doubled into the pair (b, b(1 + g)) — the two ` +
      'smallest eigenvalues (**bottom**) or a pair mid-spectrum (**middle**); g is the pair\'s relative gap ' +
      '(g = 0: exact tie) and, for every g ≤ 0.1, the smallest relative gap of the spectrum. ' +
      'A = Q diag(λ) Qᵀ with a seeded Haar-random Q; loss L = ⟨G, √A⟩ with a seeded random symmetric G. ' +
      'Errors are the worst over the seeds.\n',
  );
  md.push(
    '- **Library backward**: `sqrtm` + `sqrtmBackward` of each method on A in float64, against svd-lyap\'s ' +
      'backward on the same A (svd-lyap itself against the exact gradient from the known eigenpairs, ' +
      'Q[(QᵀGQ) ∘ 1/(√λi + √λj)]Qᵀ). ns, svd-newton and mpa-lya have no coefficient matrix: only their ' +
      'gradient error is reported; their error includes their forward\'s approximation.\n' +
      '- **Exact eigenpairs**: the method\'s F (from `backwardCoefficientsSync` on the nominal eigenvalues, ' +
      'after replacement) in the backward formula with the exact Q — what F alone does, ties included.\n' +
      '- **F**: the pair\'s entry before replacement (exact: 1/(λb − λa)), the largest |F| after replacement, ' +
      'and the share of non-finite entries before it.\n' +
      '- A float64 matrix cannot hold a relative gap much below ε64·λmax/b: rounding A moves its eigenvalues ' +
      'by ~ε64·‖A‖. The column **gap seen** is the pair\'s relative gap in `eighSync(A)`; below that level ' +
      'the library-backward rows show rounding, not the nominal gap (the exact-eigenpair rows do not).\n',
  );

  for (const f of res.families) {
    const stem = fileStem(f);
    md.push(`## ${familyTitle(f)}\n`);
    md.push('**Library backward**: relative gradient error\n');
    md.push(
      table(
        ['gap g', '|λb − λa|', 'gap seen', ...METHODS.map((m) => (m === 'svd-lyap' ? 'svd-lyap vs exact' : m))],
        f.rows.map((r) => [gapLabel(r.gap), sci(r.absGap, 1), sci(r.seenGap, 1), ...METHODS.map((m) => sci(r.library[m], 1))]),
      ),
    );
    svgs[`${stem}-library.svg`] = svgPlot(libraryErrorPlot(f));
    md.push(image(`library gradient error vs gap ${familyTitle(f)}`, `${stem}-library.svg`));
    md.push('**Exact eigenpairs**: relative gradient error caused by F alone\n');
    const ms = [...K_METHODS, 'svd-lyap' as Method];
    md.push(table(['gap g', ...ms], f.rows.map((r) => [gapLabel(r.gap), ...ms.map((m) => sci(r.exactPairs[m], 1))])));
    svgs[`${stem}-exact.svg`] = svgPlot(exactPairsPlot(f));
    md.push(image(`exact-eigenpair gradient error vs gap ${familyTitle(f)}`, `${stem}-exact.svg`));
    md.push('**F**: the pair\'s entry before replacement (the coefficient of u_a in du_b)\n');
    md.push(
      table(
        ['gap g', 'exact 1/(λb − λa)', ...K_METHODS],
        f.rows.map((r) => [gapLabel(r.gap), r.gap === 0 ? '±inf' : sci(r.pairExact, 2), ...K_METHODS.map((m) => sci(r.pairEntry[m], 2))]),
      ),
    );
    md.push('**F**: largest |entry| after replacement, and (in brackets) the share of non-finite entries before it — nominal eigenvalues / eigenvalues eigh computed\n');
    md.push(
      table(
        ['gap g', ...K_METHODS, 'svd-lyap C_ij'],
        f.rows.map((r) => [
          gapLabel(r.gap),
          ...K_METHODS.map((m) => {
            const nf = REPLACING_METHODS.includes(m) ? ` (${percent(r.nonFinite[m])} / ${percent(r.nonFiniteSeen[m])})` : '';
            return `${sci(r.maxK[m], 1)}${nf}`;
          }),
          sci(r.maxK['svd-lyap'], 1),
        ]),
      ),
    );
    svgs[`${stem}-maxk.svg`] = svgPlot(maxKPlot(f));
    md.push(image(`largest K vs gap ${familyTitle(f)}`, `${stem}-maxk.svg`));
  }

  if (res.realistic.length) {
    md.push('## Realistic case: covariances of ReLU features, N < C\n');
    md.push(
      'Covariances formed in float64 from the features (see the precision report for the float32-formed ' +
        'case). **dA**: gradient w.r.t. the covariance for a random symmetric dL/dS, against svd-lyap. ' +
        '**dX**: gradient w.r.t. the features through the whole layer (covariance → root → triangle), ' +
        'against the svd-lyap layer. F statistics on the floored eigenvalues eigh computed. Worst sample.\n',
    );
    for (const r of res.realistic) {
      md.push(
        `**${r.name}** (B=${r.B}): eigenvalues at the ε64 floor (tied) ${rangeText(r.floored)}, ` +
          `smallest relative gap above the floor ${sci(Math.min(...r.smallestGap), 1)}\n`,
      );
      md.push(
        table(
          ['method', 'dA rel. error', 'dX rel. error', 'max |F| (replaced)', 'non-finite F before replacement'],
          r.rows.map((row) => [
            row.method,
            row.method === 'svd-lyap' ? '(reference)' : sci(row.dA),
            row.method === 'svd-lyap' ? '(reference)' : sci(row.dX),
            Number.isNaN(row.maxK) ? '—' : sci(row.maxK),
            Number.isNaN(row.nonFinite) ? '—' : percent(row.nonFinite),
          ]),
        ),
      );
    }
  }

  const data = {
    families: res.families,
    realistic: res.realistic,
  };
  return { name: 'gradients', title: 'Gradient smoothness', markdown: md.join('\n'), svgs, data };
}

function rangeText(xs: number[]): string {
  const lo = Math.min(...xs), hi = Math.max(...xs);
  return lo === hi ? String(lo) : `${lo}–${hi}`;
}
