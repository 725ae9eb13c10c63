// Data precision: what a float32 eigendecomposition does to the covariances a GCP layer sees.
//
// For each feature batch the covariance is formed once in float64 (A64); the float32 run gets the
// same matrix rounded to float32 (A32), so every difference below comes from the eigensolver's
// precision (plus the one rounding of A), not from a different covariance. float64 eigh of A64 is
// the reference. Reported per batch (worst sample unless stated):
//   - how many eigenvalues fall below eps * lambda_max in each precision, against the C - N + 1 a
//     centred covariance of N < C positions must have at zero, and how many each library floor hits;
//   - eigenvalue relative errors by magnitude (decade of lambda / lambda_max);
//   - eigenvector errors: ||sin Theta||_F of the top-k subspaces, and per-vector angles vs gap;
//   - reconstruction ||V diag(l) V^T - A|| / ||A||;
//   - the matrix square root, and the GCP layer's output and gradient, with the spectral part in
//     float32 vs float64 (the layer is fed the float32 features either way).
import { CovPoolLayer } from '../layer';
import { Method } from '../methods';
import { covpoolSync, eighSync, sqrtmSync } from '../ops';
import { Tensor } from '../tensor';
import { FeatureModel, FeatureSet, Size, syntheticFeatures } from './data';
import { reconstruct, relErr, subspaceSin, vectorSin } from './linalg';
import { image, table } from './markdown';
import { ProgressSink, silentProgress } from './progress';
import { Report, regenerateHint } from './report';
import { EPS32, EPS64, maximum, median, normal, num, sci } from './util';
import { PlotSpec, Series, svgPlot } from './svg';

export interface PrecisionOptions {
  sets: FeatureSet[];
  progress?: ProgressSink;
  /** covpool-analyze arguments shown in the report as what regenerates it. */
  command?: string;
  /** Seed of the layer's output gradient. */
  seed?: number;
  /** Methods of the layer comparison (default LAYER_METHODS). */
  layerMethods?: readonly Method[];
}

export interface EigenCounts {
  /** C - N + 1 (clamped at 0): eigenvalues a centred covariance of N positions has at exactly zero. */
  expectedNull: number;
  f64BelowEps64Rel: number;
  f64BelowEps32Rel: number;
  f32BelowEps32Rel: number;
  f32BelowEps64Rel: number;
  f64Negative: number;
  f32Negative: number;
  /** Floored by the library's default eps (absolute: eps of the spectral precision). */
  f64Floored: number;
  f32Floored: number;
  /**
   * The covariance as the layer forms it from float32 features (in float32), decomposed in float64:
   * its C - N + 1 smallest eigenvalues should be zero but carry float32 rounding noise. How many of
   * them exceed the float64 floor (so they are not floored), and the largest |lambda| / lambda_max.
   */
  f32CovNullAboveFloor: number;
  f32CovNullMax: number;
}

export interface SampleResult {
  lambdaMax: number;
  counts: EigenCounts;
  /** ||V diag(l) V^T - A64|| / ||A64||. */
  reconF32: number;
  reconF64: number;
  /** float32 eigh against its own (rounded) input A32: LAPACK's backward error alone. */
  reconF32Own: number;
  /** ||sin Theta||_F of top-k subspaces, keyed by k. */
  subspace: Record<number, number>;
  /** sqrt(A): svd float32 (on A32) vs svd float64 (on A64). */
  sqrtF32: number;
  /** sqrt(A) in float64 but floored at eps32: how much of sqrtF32 the floor alone explains. */
  sqrtFloorOnly: number;
  /** Newton-Schulz (5 iterations, trace normalization) float32 vs float64. */
  sqrtNsF32: number;
  /** Newton-Schulz float64 vs the exact root: its approximation error, for scale. */
  sqrtNsApprox: number;
}

/**
 * The GCP layer in three precision set-ups, each against the exact layer (svd-lyap with the
 * covariance and the spectral part in float64):
 *   f32:     float32 features, spectral part float32 (the covariance is formed in float32);
 *   mixed:   float32 features, spectral part float64 - the library's default for eigen methods: the
 *            features are converted and the covariance formed (and back-propagated) in float64;
 *   f64:     the same feature values as float64, so the covariance is formed in float64 too.
 */
export interface LayerRow {
  method: Method;
  out: { f32: number; mixed: number; f64: number };
  grad: { f32: number; mixed: number; f64: number };
}

/**
 * <dL/dX, E> for L = <dy, layer(X)> and a random feature direction E: by central differences of the
 * float64 layer (svd-lyap), and from the analytic backward in each precision set-up. Settles which
 * gradient is right when the set-ups disagree.
 */
export interface FdCheck {
  h: number;
  fd: number;
  f64: number;
  mixed: number;
  f32: number;
}

export interface Bucket {
  /** Decade d: 10^d <= lambda/lambda_max < 10^(d+1); null for the numerical null space. */
  decade: number | null;
  count: number;
  medianRel: number;
  maxRel: number;
  /** max |l32 - l64| / lambda_max. */
  maxAbsRel: number;
}

export interface PrecisionCase {
  name: string;
  source: string;
  B: number;
  C: number;
  N: number;
  samples: SampleResult[];
  buckets: Bucket[];
  ks: number[];
  layer: LayerRow[];
  /** Finite-difference check of the layer gradient (svd-lyap), sample 0. */
  fd: FdCheck;
  /** Sample 0's spectra, descending, for the plot (not written to JSON). */
  spectrum64: number[];
  spectrum32: number[];
  /** (lambda/lambda_max, relative error) of non-null eigenvalues, all samples. */
  eigErrors: Array<[number, number]>;
  /** (relative gap, sin angle) of the top N-1 eigenvectors, all samples. */
  vecErrors: Array<[number, number]>;
}

export interface PrecisionResult {
  cases: PrecisionCase[];
}

export const LAYER_METHODS: readonly Method[] = ['ns', 'svd', 'svd-taylor', 'svd-pade', 'svd-lyap', 'mpa-lya'];

/** The synthetic feature sets for the given sizes and models (one batch each). */
export function syntheticSets(sizes: Size[], models: readonly FeatureModel[], batch: number, seed: number): FeatureSet[] {
  const out: FeatureSet[] = [];
  for (const size of sizes) for (const m of models) out.push(syntheticFeatures(m, size, batch, seed));
  return out;
}

/** Eigenvalues a float64 eigensolver cannot tell from zero: below C eps64 lambda_max. */
export function nullThreshold(C: number, lambdaMax: number): number {
  return C * EPS64 * lambdaMax;
}

export function topKs(C: number, N: number): number[] {
  const ks = [1, Math.round(C / 16), Math.round(C / 4), Math.min(N - 1, C - 1)];
  return Array.from(new Set(ks.filter((k) => k >= 1 && k < C))).sort((a, b) => a - b);
}

function countBelow(xs: ArrayLike<number>, t: number): number {
  let n = 0;
  for (let i = 0; i < xs.length; i++) if (xs[i] < t) n++;
  return n;
}

function slice(a: ArrayLike<number>, off: number, len: number): Float64Array {
  const out = new Float64Array(len);
  for (let i = 0; i < len; i++) out[i] = a[off + i];
  return out;
}

export function runPrecision(opts: PrecisionOptions): PrecisionResult {
  const progress = opts.progress ?? silentProgress;
  const cases: PrecisionCase[] = [];
  const steps = opts.sets.reduce((s, f) => s + f.features.shape[0] + 1, 0);
  const task = progress.start('precision', steps);
  for (const set of opts.sets) {
    const [B, C, N] = set.features.shape;
    const x32 = set.features.dtype === 'float32' ? set.features : new Tensor(Float32Array.from(set.features.data), set.features.shape);
    // One covariance for both precisions: formed in float64 from the float32 features.
    const a64 = covpoolSync(new Tensor(Float64Array.from(x32.data), x32.shape)).data as Float64Array;
    const a32 = Float32Array.from(a64);
    const e64 = eighSync(new Tensor(a64, [B, C, C]));
    const e32 = eighSync(new Tensor(a32, [B, C, C]));
    const s64 = sqrtmSync(new Tensor(a64, [B, C, C]), { method: 'svd', precision: 'float64' });
    const s32 = sqrtmSync(new Tensor(a32, [B, C, C]), { method: 'svd', precision: 'float32' });
    const sFloor = sqrtmSync(new Tensor(a64, [B, C, C]), { method: 'svd', precision: 'float64', eps: EPS32 });
    const ns64 = sqrtmSync(new Tensor(a64, [B, C, C]), { method: 'ns', precision: 'float64' });
    const ns32 = sqrtmSync(new Tensor(a32, [B, C, C]), { method: 'ns', precision: 'float32' });
    for (const r of [s64, s32, sFloor, ns64, ns32]) r.state.dispose();

    // The covariance as the layer forms it from float32 features: in float32, then widened.
    const eCov32 = eighSync(new Tensor(Float64Array.from(covpoolSync(x32).data), [B, C, C]));
    const ks = topKs(C, N);
    const samples: SampleResult[] = [];
    const eigErrors: Array<[number, number]> = [];
    const vecErrors: Array<[number, number]> = [];
    const bucketVals = new Map<string, { rel: number[]; abs: number[] }>();
    let spectrum64: number[] = [];
    let spectrum32: number[] = [];
    for (let b = 0; b < B; b++) {
      const m = C * C;
      const A = slice(a64, b * m, m);
      const A32 = slice(a32, b * m, m);
      const l64 = slice(e64.values.data, b * C, C);
      const l32 = slice(e32.values.data, b * C, C);
      const v64 = slice(e64.vectors.data, b * m, m);
      const v32 = slice(e32.vectors.data, b * m, m);
      const lmax = l64[C - 1];
      const nullT = nullThreshold(C, lmax);
      let neg64 = 0, neg32 = 0;
      for (let i = 0; i < C; i++) {
        if (l64[i] < 0) neg64++;
        if (l32[i] < 0) neg32++;
      }
      const counts: EigenCounts = {
        expectedNull: Math.max(0, C - N + 1),
        f64BelowEps64Rel: countBelow(l64, EPS64 * lmax),
        f64BelowEps32Rel: countBelow(l64, EPS32 * lmax),
        f32BelowEps32Rel: countBelow(l32, EPS32 * lmax),
        f32BelowEps64Rel: countBelow(l32, EPS64 * lmax),
        f64Negative: neg64,
        f32Negative: neg32,
        f64Floored: countBelow(l64, EPS64),
        f32Floored: countBelow(l32, EPS32),
        f32CovNullAboveFloor: 0,
        f32CovNullMax: 0,
      };
      const lc = slice(eCov32.values.data, b * C, C);
      for (let i = 0; i < Math.max(0, C - N + 1); i++) {
        if (lc[i] > EPS64) counts.f32CovNullAboveFloor++;
        counts.f32CovNullMax = Math.max(counts.f32CovNullMax, Math.abs(lc[i]) / lc[C - 1]);
      }
      // eigenvalue errors, by decade of lambda / lambda_max
      for (let i = 0; i < C; i++) {
        const isNull = l64[i] <= nullT;
        const rel = Math.abs(l32[i] - l64[i]) / Math.abs(l64[i]);
        const key = isNull ? 'null' : String(Math.floor(Math.log10(l64[i] / lmax)));
        const e = bucketVals.get(key) ?? { rel: [], abs: [] };
        e.rel.push(isNull ? NaN : rel);
        e.abs.push(Math.abs(l32[i] - l64[i]) / lmax);
        bucketVals.set(key, e);
        if (!isNull) eigErrors.push([l64[i] / lmax, rel]);
      }
      // per-vector angles for the nonzero part of the spectrum (null-space vectors are arbitrary)
      const rank = Math.min(C, N - 1);
      for (let i = C - rank; i < C; i++) {
        if (l64[i] <= nullT) continue;
        const lo = i > 0 ? l64[i] - Math.max(l64[i - 1], 0) : Infinity;
        const hi = i + 1 < C ? l64[i + 1] - l64[i] : Infinity;
        vecErrors.push([Math.min(lo, hi) / lmax, vectorSin(v64, v32, C, i)]);
      }
      const subspace: Record<number, number> = {};
      for (const k of ks) subspace[k] = subspaceSin(v64, v32, C, k);
      const sl = (t: Tensor) => slice(t.data, b * m, m);
      samples.push({
        lambdaMax: lmax,
        counts,
        reconF32: relErr(reconstruct(v32, l32, C), A),
        reconF64: relErr(reconstruct(v64, l64, C), A),
        reconF32Own: relErr(reconstruct(v32, l32, C), A32),
        subspace,
        sqrtF32: relErr(sl(s32.output), sl(s64.output)),
        sqrtFloorOnly: relErr(sl(sFloor.output), sl(s64.output)),
        sqrtNsF32: relErr(sl(ns32.output), sl(ns64.output)),
        sqrtNsApprox: relErr(sl(ns64.output), sl(s64.output)),
      });
      if (b === 0) {
        spectrum64 = Array.from(l64).reverse().map((v) => v / lmax);
        spectrum32 = Array.from(l32).reverse().map((v) => v / lmax);
      }
      task.tick(`${set.name} sample ${b + 1}/${B}`);
    }
    const buckets: Bucket[] = Array.from(bucketVals.entries())
      .map(([key, v]) => ({
        decade: key === 'null' ? null : Number(key),
        count: v.rel.length,
        medianRel: key === 'null' ? NaN : median(v.rel),
        maxRel: key === 'null' ? NaN : maximum(v.rel),
        maxAbsRel: maximum(v.abs),
      }))
      .sort((p, q) => (q.decade ?? -1e9) - (p.decade ?? -1e9));
    const layer = layerEffect(x32, opts.seed ?? 1, opts.layerMethods ?? LAYER_METHODS);
    const fd = finiteDifferenceCheck(x32, opts.seed ?? 1);
    task.tick(`${set.name} layer`);
    cases.push({ name: set.name, source: set.source, B, C, N, samples, buckets, ks, layer, fd, spectrum64, spectrum32, eigErrors, vecErrors });
  }
  task.done();
  return { cases };
}

/** The layer in the three precision set-ups of LayerRow, worst sample of the batch. */
function layerEffect(x32: Tensor, seed: number, methods: readonly Method[]): LayerRow[] {
  const [B, C] = x32.shape;
  const T = (C * (C + 1)) / 2;
  const NX = x32.size / B;
  const x64 = new Tensor(Float64Array.from(x32.data), x32.shape);
  const g = normal(seed * 1009 + C);
  const dy64 = new Tensor(Float64Array.from({ length: B * T }, () => g()), [B, T]);
  const dy32 = new Tensor(Float32Array.from(dy64.data), [B, T]);
  const run = (spec: object, x: Tensor, dy: Tensor) => {
    const layer = new CovPoolLayer(spec as never);
    const r = layer.forwardSync(x);
    const dx = layer.backwardSync(r.state, dy);
    r.state.dispose();
    return { out: r.output.data, grad: dx.data };
  };
  const exact = run({ method: 'svd-lyap', precision: 'float64' }, x64, dy64);
  const worst = (u: ArrayLike<number>, v: ArrayLike<number>, len: number) =>
    maximum(Array.from({ length: B }, (_, b) => relErr(slice(u, b * len, len), slice(v, b * len, len))));
  return methods.map((method) => {
    const f32 = run({ method, precision: 'float32' }, x32, dy32);
    const mixed = run({ method, precision: 'float64' }, x32, dy32);
    const f64 = run({ method, precision: 'float64' }, x64, dy64);
    return {
      method,
      out: { f32: worst(f32.out, exact.out, T), mixed: worst(mixed.out, exact.out, T), f64: worst(f64.out, exact.out, T) },
      grad: { f32: worst(f32.grad, exact.grad, NX), mixed: worst(mixed.grad, exact.grad, NX), f64: worst(f64.grad, exact.grad, NX) },
    };
  });
}

/** See FdCheck. Sample 0 only; h relative to the features' RMS. */
function finiteDifferenceCheck(x32All: Tensor, seed: number): FdCheck {
  const [, C, N] = x32All.shape;
  const x32 = new Tensor(Float32Array.from(x32All.data.subarray(0, C * N)), [1, C, N]);
  const x64 = new Tensor(Float64Array.from(x32.data), [1, C, N]);
  const T = (C * (C + 1)) / 2;
  const g = normal(seed * 7 + 11 * C + N);
  const dy64 = new Tensor(Float64Array.from({ length: T }, () => g()), [1, T]);
  const e = Float64Array.from({ length: C * N }, () => g());
  let rms = 0;
  for (const v of x64.data) rms += v * v;
  rms = Math.sqrt(rms / x64.size);
  const h = 1e-4 * rms;
  const lossAt = (t: number) => {
    const layer = new CovPoolLayer({ method: 'svd-lyap', precision: 'float64' });
    const r = layer.forwardSync(new Tensor(x64.data.map((v, i) => v + t * e[i]), [1, C, N]));
    r.state.dispose();
    let sum = 0;
    for (let i = 0; i < T; i++) sum += r.output.data[i] * dy64.data[i];
    return sum;
  };
  const directional = (precision: 'float32' | 'float64', x: Tensor) => {
    const layer = new CovPoolLayer({ method: 'svd-lyap', precision });
    const r = layer.forwardSync(x);
    const dy = x.dtype === 'float32' ? new Tensor(Float32Array.from(dy64.data), [1, T]) : dy64;
    const dx = layer.backwardSync(r.state, dy).data;
    r.state.dispose();
    let sum = 0;
    for (let i = 0; i < C * N; i++) sum += dx[i] * e[i];
    return sum;
  };
  return {
    h,
    fd: (lossAt(h) - lossAt(-h)) / (2 * h),
    f64: directional('float64', x64),
    mixed: directional('float64', x32),
    f32: directional('float32', x32),
  };
}

// ---- report ---------------------------------------------------------------------------------

function fileSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').toLowerCase();
}

function range(xs: number[], f: (x: number) => string = String): string {
  const lo = Math.min(...xs), hi = Math.max(...xs);
  return lo === hi ? f(lo) : `${f(lo)}–${f(hi)}`;
}

function decadeLabel(d: number | null): string {
  if (d === null) return 'null space (λ ≤ C·ε64·λmax)';
  return `[1e${d}, 1e${d + 1})`;
}

export function precisionReport(res: PrecisionResult, command = 'precision'): Report {
  const svgs: Record<string, string> = {};
  const md: string[] = [];
  md.push('# Data precision: float32 vs float64 eigendecomposition of GCP covariances\n');
  md.push(`${regenerateHint(command)}\n`);
  md.push(
    'Each batch of ReLU features (float32, as a network produces them) is pooled into its covariance ' +
      'once, in float64 (A64). The float32 run gets the same matrices rounded to float32, so the ' +
      'differences come from the eigensolver\'s precision. Reference: float64 `eighSync` of A64. ' +
      'Numbers are the worst sample of the batch unless a range is shown. ε32 = 1.19e-7, ε64 = 2.22e-16; ' +
      'the library floors eigenvalues at the ε of the spectral precision (absolute).\n',
  );
  md.push('## Inputs\n');
  md.push(
    table(
      ['case', 'source', 'B', 'C', 'N', 'λmax'],
      res.cases.map((c) => [c.name, c.source, c.B, c.C, c.N, range(c.samples.map((s) => s.lambdaMax), (v) => sci(v, 2))]),
      ['l', 'l', 'r', 'r', 'r', 'r'],
    ),
  );

  md.push('## How many eigenvalues fall below ε\n');
  md.push(
    'A centred covariance of N < C positions has rank ≤ N − 1, so at least C − N + 1 eigenvalues are ' +
      'exactly zero. Counts per sample (a range when the samples differ).\n',
  );
  md.push(
    table(
      ['case', 'zero (C−N+1)', 'f64: λ < ε64·λmax', 'f64: λ < ε32·λmax', 'f32: λ < ε32·λmax', 'f64 / f32: λ < 0', 'floored: f64 (λ < ε64) / f32 (λ < ε32)'],
      res.cases.map((c) => {
        const r = (f: (s: SampleResult) => number) => range(c.samples.map(f));
        return [
          c.name,
          String(c.samples[0].counts.expectedNull),
          r((s) => s.counts.f64BelowEps64Rel),
          r((s) => s.counts.f64BelowEps32Rel),
          r((s) => s.counts.f32BelowEps32Rel),
          `${r((s) => s.counts.f64Negative)} / ${r((s) => s.counts.f32Negative)}`,
          `${r((s) => s.counts.f64Floored)} / ${r((s) => s.counts.f32Floored)}`,
        ];
      }),
    ),
  );
  md.push(
    '`f64: λ < ε32·λmax` minus the zero count is the number of genuine (nonzero) eigenvalues a float32 ' +
      'solver cannot resolve: they sit below its rounding level and come out as noise of either sign.\n',
  );

  md.push('## Eigenvalue relative error by magnitude\n');
  for (const c of res.cases) {
    md.push(`**${c.name}** (all ${c.B} samples pooled)\n`);
    md.push(
      table(
        ['λ/λmax', 'count', 'median |Δλ|/λ', 'max |Δλ|/λ', 'max |Δλ|/λmax'],
        c.buckets.map((b) => [decadeLabel(b.decade), b.count, b.decade === null ? '—' : sci(b.medianRel), b.decade === null ? '—' : sci(b.maxRel), sci(b.maxAbsRel)]),
      ),
    );
  }
  md.push(
    'The absolute error |Δλ| stays near ε32·λmax whatever the eigenvalue (that is what a backward-stable ' +
      'solver guarantees), so the relative error grows like ε32·λmax/λ: about 1 for λ ≈ 1e-7·λmax.\n',
  );

  md.push('## Eigenvectors, reconstruction and the square root\n');
  const ksHead = (c: PrecisionCase) => c.ks.map((k) => `k=${k}`).join(', ');
  md.push(
    table(
      ['case', '‖sin Θ‖F of the top-k subspaces', 'recon. f32 (vs A64 / vs own A32)', 'recon. f64', '√A: svd f32 vs f64', '√A: f64 with ε32 floor', '√A: ns f32 vs f64', '√A: ns f64 vs exact'],
      res.cases.map((c) => [
        c.name,
        `${ksHead(c)}: ` + c.ks.map((k) => sci(maximum(c.samples.map((s) => s.subspace[k])))).join(', '),
        `${sci(maximum(c.samples.map((s) => s.reconF32)))} / ${sci(maximum(c.samples.map((s) => s.reconF32Own)))}`,
        sci(maximum(c.samples.map((s) => s.reconF64))),
        sci(maximum(c.samples.map((s) => s.sqrtF32))),
        sci(maximum(c.samples.map((s) => s.sqrtFloorOnly))),
        sci(maximum(c.samples.map((s) => s.sqrtNsF32))),
        sci(maximum(c.samples.map((s) => s.sqrtNsApprox))),
      ]),
    ),
  );
  md.push(
    'Relative Frobenius errors. `√A: f64 with ε32 floor` is the float64 root with the eigenvalues ' +
      'floored at ε32 instead of ε64: the part of `svd f32 vs f64` that the floor alone explains. ' +
      'Newton-Schulz (5 iterations, trace normalization) only multiplies matrices, so its float32 error ' +
      'stays at the GEMM rounding level, far below its own approximation error.\n',
  );

  md.push('## Effect on the GCP layer\n');
  md.push(
    'Relative error of the layer output (upper triangle) and of its gradient w.r.t. the features, for ' +
      'the same output gradient, against the exact layer (svd-lyap with covariance and spectral part in ' +
      'float64). Three set-ups: **f32** = float32 features, spectral part float32; **mixed** = float32 ' +
      'features, spectral part float64 (the library default for eigen methods: the features are converted ' +
      'and the covariance is formed and back-propagated in float64, as the paper\'s code does by casting ' +
      'the features to double before pooling); **f64** = the same feature values given as float64.\n',
  );
  for (const c of res.cases) {
    md.push(`**${c.name}**\n`);
    md.push(
      table(
        ['method', 'output: f32', 'mixed', 'f64', 'gradient: f32', 'mixed', 'f64'],
        c.layer.map((r) => [r.method, sci(r.out.f32), sci(r.out.mixed), sci(r.out.f64), sci(r.grad.f32), sci(r.grad.mixed), sci(r.grad.f64)]),
      ),
    );
  }
  md.push(
    'Which gradient is right: the directional derivative ⟨dL/dX, E⟩ of the svd-lyap layer along a random ' +
      'feature direction E (sample 0), by central differences of the float64 layer and from each set-up\'s backward.\n',
  );
  md.push(
    table(
      ['case', 'finite differences (f64)', 'backward: f64', 'mixed', 'f32'],
      res.cases.map((c) => [c.name, num(c.fd.fd, 6), num(c.fd.f64, 6), num(c.fd.mixed, 6), num(c.fd.f32, 6)]),
    ),
  );
  md.push(
    'Why the covariance must be formed in the spectral precision: a float32-formed covariance carries ' +
      'rounding noise of about ε32·λmax in its C − N + 1 zero eigenvalues (table below); a float64 solver ' +
      'would resolve that noise faithfully, the ε64 floor does not remove it, and the backward weighs those ' +
      'directions by up to 1/(2√ε64) ≈ 3.4e7 (svd-lyap) or 1/(λi − λj) (svd) — an O(1) feature-gradient ' +
      'error (an earlier version of the library did exactly that). With a float64-formed covariance, as ' +
      '**mixed** now does, the null directions are orthogonal to the centred features to ~ε64 and drop out ' +
      'of the feature gradient.\n',
  );
  md.push(
    table(
      ['case', 'zero eigenvalues (C−N+1)', 'f32-formed cov.: max |λ|/λmax among them', 'of them above the ε64 floor'],
      res.cases.map((c) => [
        c.name,
        c.samples[0].counts.expectedNull,
        sci(maximum(c.samples.map((s) => s.counts.f32CovNullMax))),
        range(c.samples.map((s) => s.counts.f32CovNullAboveFloor)),
      ]),
    ),
  );

  md.push('## Plots\n');
  for (const c of res.cases) {
    const file = `precision-spectrum-${fileSafe(c.name)}.svg`;
    svgs[file] = svgPlot(spectrumPlot(c));
    md.push(image(`spectrum ${c.name}`, file));
  }
  svgs['precision-eigenvalues.svg'] = svgPlot(eigenvaluePlot(res));
  md.push(image('eigenvalue relative error vs magnitude', 'precision-eigenvalues.svg'));
  svgs['precision-eigenvectors.svg'] = svgPlot(eigenvectorPlot(res));
  md.push(image('eigenvector error vs gap', 'precision-eigenvectors.svg'));

  const data = {
    cases: res.cases.map((c) => ({
      name: c.name, source: c.source, B: c.B, C: c.C, N: c.N, ks: c.ks,
      samples: c.samples, buckets: c.buckets, layer: c.layer, fd: c.fd,
    })),
  };
  return { name: 'precision', title: 'Data precision', markdown: md.join('\n'), svgs, data };
}

/** |lambda| / lambda_max of sample 0, descending, split by sign (a log axis cannot show <= 0). */
export function spectrumPlot(c: PrecisionCase): PlotSpec {
  const pts = (xs: number[], pos: boolean): Array<[number, number]> =>
    xs.map((v, i) => [i + 1, pos ? (v > 0 ? v : NaN) : v <= 0 ? Math.max(Math.abs(v), 1e-300) : NaN] as [number, number]);
  const series: Series[] = [
    // float32 first so that the float64 line is drawn on top of it where the two agree
    { name: 'float32, λ > 0', points: pts(c.spectrum32, true), mode: 'points', color: '#f28e2b' },
    { name: 'float64, λ > 0', points: pts(c.spectrum64, true), mode: 'line', color: '#4e79a7' },
    { name: 'float32, λ ≤ 0 (|λ|)', points: pts(c.spectrum32, false), mode: 'points', color: '#e15759' },
    { name: 'float64, λ ≤ 0 (|λ|)', points: pts(c.spectrum64, false), mode: 'points', color: '#59a14f' },
  ];
  return {
    title: `Spectrum, ${c.name} (sample 0)`,
    xLabel: 'eigenvalue index (descending)',
    yLabel: '|λ| / λmax',
    yLog: true,
    series,
    xDomain: [0, c.C],
    refLines: [
      { y: EPS32, label: 'ε32' },
      { y: EPS64, label: 'ε64' },
      ...(c.N - 1 < c.C ? [{ x: c.N - 0.5, label: 'rank N−1' }] : []),
    ],
  };
}

/**
 * Thins a log-log scatter to the worst point of each of `bins` logarithmic x bins, so that plots of
 * thousands of eigenvalues stay a few kilobytes while still showing the upper envelope (the
 * worst case is what matters here).
 */
export function worstPerBin(points: ReadonlyArray<readonly [number, number]>, bins = 100): Array<[number, number]> {
  const ok = points.filter(([x, y]) => x > 0 && Number.isFinite(x) && y > 0 && Number.isFinite(y));
  if (ok.length <= bins) return ok.map(([x, y]) => [x, y]);
  const lx = ok.map(([x]) => Math.log10(x));
  const lo = Math.min(...lx), hi = Math.max(...lx);
  const best = new Map<number, [number, number]>();
  ok.forEach(([x, y], i) => {
    const k = hi > lo ? Math.min(bins - 1, Math.floor(((lx[i] - lo) / (hi - lo)) * bins)) : 0;
    const cur = best.get(k);
    if (!cur || y > cur[1]) best.set(k, [x, y]);
  });
  return Array.from(best.entries()).sort((a, b) => a[0] - b[0]).map(([, p]) => p);
}

export function eigenvaluePlot(res: PrecisionResult): PlotSpec {
  const xs = res.cases.flatMap((c) => c.eigErrors.map((p) => p[0]));
  const lo = Math.max(1e-16, Math.min(...xs, 1e-3));
  const bound: Array<[number, number]> = [];
  for (let e = Math.floor(Math.log10(lo)); e <= 0; e += 0.5) bound.push([10 ** e, EPS32 / 10 ** e]);
  return {
    title: 'float32 eigenvalue error vs magnitude (worst per bin)',
    xLabel: 'λ / λmax (float64 reference)',
    yLabel: '|λ32 − λ64| / λ64',
    xLog: true,
    yLog: true,
    series: res.cases.map((c) => ({ name: c.name, points: worstPerBin(c.eigErrors), mode: 'points' as const })),
    refLines: [{ points: bound, label: 'ε32·λmax/λ' }],
  };
}

export function eigenvectorPlot(res: PrecisionResult): PlotSpec {
  const xs = res.cases.flatMap((c) => c.vecErrors.map((p) => p[0])).filter((v) => v > 0 && Number.isFinite(v));
  const lo = Math.max(1e-16, Math.min(...xs, 1e-3));
  const bound: Array<[number, number]> = [];
  for (let e = Math.floor(Math.log10(lo)); e <= 0; e += 0.5) bound.push([10 ** e, Math.min(1, EPS32 / 10 ** e)]);
  return {
    title: 'float32 eigenvector error vs eigen-gap (worst per bin)',
    xLabel: 'gap to the nearest eigenvalue / λmax',
    yLabel: 'sin ∠(v32, v64)',
    xLog: true,
    yLog: true,
    series: res.cases.map((c) => ({ name: c.name, points: worstPerBin(c.vecErrors), mode: 'points' as const })),
    refLines: [{ points: bound, label: 'ε32·λmax/gap' }],
  };
}

