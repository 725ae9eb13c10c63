// Robustness of the public API: every bad input to every op and to the layer must give a clear JS
// error (right class, message naming what is wrong), never a crash; the async variants must report
// the same errors as REJECTED promises (never a synchronous throw); errors found inside the native
// computation must name the batch item. Error classes are compared by name because errors built by
// the addon belong to Node's main realm, not to jest's sandbox (see helpers.errorName).
import {
  BackwardState,
  CovPoolLayer,
  backwardCoefficientsSync,
  MethodSpec,
  Tensor,
  covpool,
  covpoolBackward,
  covpoolBackwardSync,
  covpoolSync,
  eigh,
  eighSync,
  padeCoefficients,
  resolveOptions,
  sqrtm,
  sqrtmBackward,
  sqrtmBackwardSync,
  sqrtmSync,
  triuvec,
  triuvecBackward,
  triuvecBackwardSync,
  triuvecSync,
} from '../lib';
import { expectReject, expectThrow, reluFeatures, sameBits, withSpectrum } from './helpers';

type ErrName = 'Error' | 'TypeError' | 'RangeError';

/** Computed on first use, inside a test: a setup failure then fails the tests that need it, not the whole file. */
function lazy<T>(f: () => T): () => T {
  let v: { value: T } | undefined;
  return () => (v ??= { value: f() }).value;
}

/** A batch of B copies of a well-conditioned SPD C x C matrix (float64 unless asked). */
function spdBatch(B: number, C: number, dtype: 'float32' | 'float64' = 'float64', seed = 3): Tensor {
  const one = withSpectrum(Array.from({ length: C }, (_, i) => 1 + i), seed);
  const data = dtype === 'float32' ? new Float32Array(B * C * C) : new Float64Array(B * C * C);
  for (let b = 0; b < B; b++) data.set(one, b * C * C);
  return new Tensor(data, [B, C, C]);
}

function filled(shape: number[], value: number, dtype: 'float32' | 'float64' = 'float64'): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return new Tensor(dtype === 'float32' ? new Float32Array(n).fill(value) : new Float64Array(n).fill(value), shape);
}

/** `t` with element `index` of batch item `item` replaced by `value` (a copy). */
function poisoned(t: Tensor, item: number, value: number, index = 1): Tensor {
  const per = t.size / t.shape[0];
  const data = t.data.slice();
  data[item * per + index] = value;
  return new Tensor(data, t.shape);
}

/**
 * One bad call in its sync and async forms. Both must fail with the same class and message; the
 * async form must return a rejected promise.
 */
interface Case {
  name: string;
  sync: () => unknown;
  async: () => Promise<unknown>;
  cls: ErrName;
  re: RegExp;
}

function checkCases(title: string, cases: Case[]): void {
  describe(title, () => {
    test.each(cases.map((c) => [c.name, c] as const))('%s (sync throws)', (_n, c) => {
      expectThrow(c.sync, c.cls, c.re);
    });
    test.each(cases.map((c) => [c.name, c] as const))('%s (async rejects, no synchronous throw)', async (_n, c) => {
      await expectReject(c.async, c.cls, c.re);
    });
  });
}

// ---- shapes and ranks ------------------------------------------------------------------------

const feats = reluFeatures(2, 3, 5, 11);
const rank2 = new Tensor(new Float64Array(6), [2, 3]);
const rank5 = new Tensor(new Float64Array(32), [2, 2, 2, 2, 2]);
const nonSquare = new Tensor(new Float64Array(12), [2, 2, 3]);
const squareRank2 = new Tensor(new Float64Array(9), [3, 3]);
const layerNs = new CovPoolLayer('ns');

checkCases('wrong rank or shape', [
  { name: 'covpool on rank-2 features', sync: () => covpoolSync(rank2), async: () => covpool(rank2), cls: 'RangeError', re: /features must have shape \[B, C, N\] or \[B, C, H, W\], got \[2, 3\] \(rank 2; dataFormat .channelsFirst.\)/ },
  { name: 'covpool on rank-5 features', sync: () => covpoolSync(rank5), async: () => covpool(rank5), cls: 'RangeError', re: /\[B, C, N\] or \[B, C, H, W\].*rank 5/ },
  { name: 'layer.forward on rank-2 features', sync: () => layerNs.forwardSync(rank2), async: () => layerNs.forward(rank2), cls: 'RangeError', re: /features must have shape.*rank 2/ },
  { name: 'layer.forward on rank-5 features', sync: () => layerNs.forwardSync(rank5), async: () => layerNs.forward(rank5), cls: 'RangeError', re: /features must have shape.*rank 5/ },
  { name: 'covpoolBackward with a wrong dA shape', sync: () => covpoolBackwardSync(feats, filled([2, 3, 4], 1)), async: () => covpoolBackward(feats, filled([2, 3, 4], 1)), cls: 'RangeError', re: /covariance gradient must have shape \[2, 3, 3\], got \[2, 3, 4\]/ },
  { name: 'covpoolBackward with rank-2 features', sync: () => covpoolBackwardSync(rank2, filled([2, 3, 3], 1)), async: () => covpoolBackward(rank2, filled([2, 3, 3], 1)), cls: 'RangeError', re: /features must have shape/ },
  { name: 'sqrtm on non-square matrices', sync: () => sqrtmSync(nonSquare, 'svd'), async: () => sqrtm(nonSquare, 'svd'), cls: 'RangeError', re: /matrices must have shape \[B, C, C\].*got \[2, 2, 3\]/ },
  { name: 'sqrtm on a rank-2 matrix (no batch axis)', sync: () => sqrtmSync(squareRank2, 'ns'), async: () => sqrtm(squareRank2, 'ns'), cls: 'RangeError', re: /\[B, C, C\].*got \[3, 3\]/ },
  { name: 'eigh on non-square matrices', sync: () => eighSync(nonSquare), async: () => eigh(nonSquare), cls: 'RangeError', re: /matrices must have shape \[B, C, C\].*got \[2, 2, 3\]/ },
  { name: 'triuvec on non-square matrices', sync: () => triuvecSync(nonSquare), async: () => triuvec(nonSquare), cls: 'RangeError', re: /\[B, C, C\].*got \[2, 2, 3\]/ },
  { name: 'triuvecBackward with a wrong triangle length', sync: () => triuvecBackwardSync(filled([2, 5], 1), 3), async: () => triuvecBackward(filled([2, 5], 1), 3), cls: 'RangeError', re: /gradient must have shape \[B, 6\] for C = 3, got \[2, 5\]/ },
  { name: 'triuvecBackward with a rank-3 gradient', sync: () => triuvecBackwardSync(filled([2, 6, 1], 1), 3), async: () => triuvecBackward(filled([2, 6, 1], 1), 3), cls: 'RangeError', re: /\[B, 6\] for C = 3, got \[2, 6, 1\]/ },
  { name: 'triuvecBackward with C = 0', sync: () => triuvecBackwardSync(filled([2, 6], 1), 0), async: () => triuvecBackward(filled([2, 6], 1), 0), cls: 'RangeError', re: /C must be a positive integer, got 0/ },
  { name: 'triuvecBackward with C = 2.5', sync: () => triuvecBackwardSync(filled([2, 6], 1), 2.5), async: () => triuvecBackward(filled([2, 6], 1), 2.5), cls: 'RangeError', re: /C must be a positive integer, got 2.5/ },
  { name: 'a non-tensor input', sync: () => covpoolSync(42 as never), async: () => covpool(42 as never), cls: 'TypeError', re: /expected a Tensor or an object with `data` and `shape`/ },
  { name: 'an Int32Array input object', sync: () => sqrtmSync({ data: new Int32Array(4), shape: [1, 2, 2] } as never, 'svd'), async: () => sqrtm({ data: new Int32Array(4), shape: [1, 2, 2] } as never, 'svd'), cls: 'TypeError', re: /unsupported element type Int32Array/ },
]);

// ---- output-gradient shape and dtype --------------------------------------------------------

describe('gradients that do not match the forward pass', () => {
  const layer32 = new CovPoolLayer('svd');
  const x32 = reluFeatures(2, 3, 6, 12, 'float32');
  const fwd32 = lazy(() => layer32.forwardSync(x32)); // output [2, 6] float32
  const sq64 = lazy(() => sqrtmSync(spdBatch(2, 3), 'svd')); // output [2, 3, 3] float64

  checkCases('dtype and shape of dy', [
    { name: 'float64 dy for a float32 layer forward', sync: () => layer32.backwardSync(fwd32().state, filled([2, 6], 1, 'float64')), async: () => layer32.backward(fwd32().state, filled([2, 6], 1, 'float64')), cls: 'TypeError', re: /output gradient must be float32 \(the dtype of the forward input\), got float64/ },
    { name: 'float32 dS for a float64 sqrtm', sync: () => sqrtmBackwardSync(sq64().state, filled([2, 3, 3], 1, 'float32')), async: () => sqrtmBackward(sq64().state, filled([2, 3, 3], 1, 'float32')), cls: 'TypeError', re: /must be float64.*got float32/ },
    { name: 'float64 dA for float32 features in covpoolBackward', sync: () => covpoolBackwardSync(x32, filled([2, 3, 3], 1, 'float64')), async: () => covpoolBackward(x32, filled([2, 3, 3], 1, 'float64')), cls: 'TypeError', re: /covariance gradient must be float32.*got float64/ },
    { name: 'layer dy of the wrong shape', sync: () => layer32.backwardSync(fwd32().state, filled([2, 5], 1, 'float32')), async: () => layer32.backward(fwd32().state, filled([2, 5], 1, 'float32')), cls: 'RangeError', re: /output gradient must have shape \[2, 6\], got \[2, 5\]/ },
    { name: 'layer dy shaped like the full matrix although the layer vectorizes', sync: () => layer32.backwardSync(fwd32().state, filled([2, 3, 3], 1, 'float32')), async: () => layer32.backward(fwd32().state, filled([2, 3, 3], 1, 'float32')), cls: 'RangeError', re: /must have shape \[2, 6\], got \[2, 3, 3\]/ },
    { name: 'sqrtm dS of the wrong batch size', sync: () => sqrtmBackwardSync(sq64().state, filled([3, 3, 3], 1)), async: () => sqrtmBackward(sq64().state, filled([3, 3, 3], 1)), cls: 'RangeError', re: /must have shape \[2, 3, 3\], got \[3, 3, 3\]/ },
  ]);
});

// ---- NaN and Infinity -----------------------------------------------------------------------

describe('NaN and Infinity', () => {
  const x = reluFeatures(5, 3, 6, 13); // 5 items: the bad one is item 3
  const xNaN = poisoned(x, 3, NaN);
  const xInf = poisoned(x, 1, Infinity);
  const a = spdBatch(4, 3);
  const aNaN = poisoned(a, 2, NaN, 4); // diagonal element of item 2
  const aInf = poisoned(a, 3, -Infinity, 0);
  const layerSvd = new CovPoolLayer('svd');
  const layerMpa = new CovPoolLayer('mpa-lya');
  // A fresh state per case: a backward frees its state even when its computation then fails.
  const fwd = () => layerNs.forwardSync(x); // output [5, 6]
  const dyNaN = poisoned(filled([5, 6], 1), 2, NaN);
  const dyInf = poisoned(filled([5, 6], 1), 4, Infinity);
  const sq = () => sqrtmSync(a, 'svd-pade');
  const dSNaN = poisoned(filled([4, 3, 3], 1), 1, NaN, 4);
  const dANaN = poisoned(filled([5, 3, 3], 1), 1, NaN, 0);

  checkCases('non-finite inputs are reported with their batch item', [
    { name: 'NaN in features (covpool)', sync: () => covpoolSync(xNaN), async: () => covpool(xNaN), cls: 'Error', re: /batch item 3: the features contain NaN or Infinity/ },
    { name: 'Infinity in features (covpool)', sync: () => covpoolSync(xInf), async: () => covpool(xInf), cls: 'Error', re: /batch item 1: the features contain NaN or Infinity/ },
    { name: 'NaN in features (layer ns)', sync: () => layerNs.forwardSync(xNaN), async: () => layerNs.forward(xNaN), cls: 'Error', re: /batch item 3: the features contain NaN or Infinity/ },
    { name: 'Infinity in features (layer svd)', sync: () => layerSvd.forwardSync(xInf), async: () => layerSvd.forward(xInf), cls: 'Error', re: /batch item 1: the features contain NaN or Infinity/ },
    { name: 'NaN in features (layer mpa-lya)', sync: () => layerMpa.forwardSync(xNaN), async: () => layerMpa.forward(xNaN), cls: 'Error', re: /batch item 3: the features contain NaN or Infinity/ },
    { name: 'NaN in a matrix (sqrtm ns)', sync: () => sqrtmSync(aNaN, 'ns'), async: () => sqrtm(aNaN, 'ns'), cls: 'Error', re: /batch item 2: the matrix contains NaN or Infinity/ },
    { name: 'NaN in a matrix (sqrtm svd-topn)', sync: () => sqrtmSync(aNaN, 'svd-topn'), async: () => sqrtm(aNaN, 'svd-topn'), cls: 'Error', re: /batch item 2: the matrix contains NaN or Infinity/ },
    { name: '-Infinity in a matrix (sqrtm mpa-lya)', sync: () => sqrtmSync(aInf, 'mpa-lya'), async: () => sqrtm(aInf, 'mpa-lya'), cls: 'Error', re: /batch item 3: the matrix contains NaN or Infinity/ },
    { name: 'NaN in a matrix (eigh)', sync: () => eighSync(aNaN), async: () => eigh(aNaN), cls: 'Error', re: /batch item 2: the matrix contains NaN or Infinity/ },
    { name: 'NaN in dy (layer backward)', sync: () => layerNs.backwardSync(fwd().state, dyNaN), async: () => layerNs.backward(fwd().state, dyNaN), cls: 'Error', re: /batch item 2: the output gradient contains NaN or Infinity/ },
    { name: 'Infinity in dy (layer backward)', sync: () => layerNs.backwardSync(fwd().state, dyInf), async: () => layerNs.backward(fwd().state, dyInf), cls: 'Error', re: /batch item 4: the output gradient contains NaN or Infinity/ },
    { name: 'NaN in dS (sqrtmBackward)', sync: () => sqrtmBackwardSync(sq().state, dSNaN), async: () => sqrtmBackward(sq().state, dSNaN), cls: 'Error', re: /batch item 1: the output gradient contains NaN or Infinity/ },
    { name: 'NaN in dA (covpoolBackward)', sync: () => covpoolBackwardSync(x, dANaN), async: () => covpoolBackward(x, dANaN), cls: 'Error', re: /batch item 1: the covariance gradient contains NaN or Infinity/ },
  ]);

  test('native errors carry code ERR_COVPOOL', () => {
    const e = expectThrow(() => covpoolSync(xNaN), 'Error', /NaN/);
    expect((e as Error & { code?: string }).code).toBe('ERR_COVPOOL');
  });

  // Regression test, fixed bug (missing checks): covpoolBackward validates dA but not the features, and
  // triuvec/triuvecBackward validate nothing, so NaN/Infinity pass through silently as NaN
  // gradients instead of the clear "batch item k: ... contains NaN or Infinity" every other op gives.
  test('NaN in the features of covpoolBackward is reported (not a silent NaN gradient)', () => {
    expectThrow(() => covpoolBackwardSync(xNaN, filled([5, 3, 3], 1)), 'Error', /batch item 3: .*NaN or Infinity/);
  });
  test('NaN in the matrices of triuvec is reported', () => {
    expectThrow(() => triuvecSync(aNaN), 'Error', /batch item 2: .*NaN or Infinity/);
  });
  test('Infinity in the gradient of triuvecBackward is reported', () => {
    expectThrow(() => triuvecBackwardSync(dyInf, 3), 'Error', /batch item 4: .*NaN or Infinity/);
  });
});

// ---- zero matrices, non-symmetric matrices ----------------------------------------------------

describe('zero and non-symmetric matrices', () => {
  const zero = filled([3, 4, 4], 0);
  const constantFeatures = filled([2, 4, 5], 0.5); // centered features are 0: covariance 0

  checkCases('normalization of a zero matrix', [
    { name: "ns on a zero matrix (trace 0)", sync: () => sqrtmSync(zero, 'ns'), async: () => sqrtm(zero, 'ns'), cls: 'Error', re: /batch item \d: cannot normalize by the trace.*zero/ },
    { name: "mpa-lya on a zero matrix (Frobenius norm 0)", sync: () => sqrtmSync(zero, 'mpa-lya'), async: () => sqrtm(zero, 'mpa-lya'), cls: 'Error', re: /batch item \d: cannot normalize by the frobenius.*zero/ },
    { name: "layer ns on constant features", sync: () => new CovPoolLayer('ns').forwardSync(constantFeatures), async: () => new CovPoolLayer('ns').forward(constantFeatures), cls: 'Error', re: /cannot normalize.*zero/ },
    { name: "svd with explicit trace normalization on a zero matrix", sync: () => sqrtmSync(zero, { method: 'svd', normalization: 'trace' }), async: () => sqrtm(zero, { method: 'svd', normalization: 'trace' }), cls: 'Error', re: /cannot normalize by the trace/ },
  ]);

  test('the batch item named is the zero one', () => {
    const a = spdBatch(3, 4);
    const data = a.data.slice();
    data.fill(0, 2 * 16, 3 * 16);
    expectThrow(() => sqrtmSync(new Tensor(data, [3, 4, 4]), 'ns'), 'Error', /^covpool: batch item 2: cannot normalize/);
  });

  // Items run in parallel; when several fail, the lowest one is reported, whatever the timing.
  test('with several failing items the lowest one is named, every time', async () => {
    const a = spdBatch(8, 4);
    const data = a.data.slice();
    for (const item of [2, 5, 7]) data.fill(0, item * 16, (item + 1) * 16);
    const bad = new Tensor(data, [8, 4, 4]);
    for (let k = 0; k < 20; k++) {
      expectThrow(() => sqrtmSync(bad, 'ns'), 'Error', /^covpool: batch item 2: cannot normalize/);
      await expectReject(() => sqrtm(bad, 'ns'), 'Error', /^covpool: batch item 2: cannot normalize/);
    }
  });

  test.each(['float32', 'float64'] as const)("svd on a zero %s matrix is allowed: sqrt(eps) I", (dtype) => {
    const { output, state } = sqrtmSync(filled([2, 4, 4], 0, dtype), 'svd');
    // Eigenvalues are floored at eps (float64 precision by default), so S = sqrt(eps) I.
    const expected = Math.sqrt(2 ** -52);
    expect(state.options.eps).toBe(2 ** -52);
    for (let b = 0; b < 2; b++)
      for (let i = 0; i < 4; i++)
        for (let j = 0; j < 4; j++) {
          const v = output.get(b, i, j);
          if (i === j) expect(v).toBeCloseTo(expected, 20);
          else expect(Math.abs(v)).toBeLessThan(1e-20);
        }
    // Its backward is finite (equal eigenvalues: the non-finite K entries are replaced).
    const g = sqrtmBackwardSync(state, filled([2, 4, 4], 1, dtype));
    expect(g.data.every(Number.isFinite)).toBe(true);
  });

  test('svd-newton on a zero matrix: forward allowed, backward a clear error (no crash)', () => {
    const { state } = sqrtmSync(zero, 'svd-newton');
    expectThrow(() => sqrtmBackwardSync(state, filled([3, 4, 4], 1)), 'Error', /svd-newton: the trace of the matrix is not positive/);
  });

  // Regression test, fixed bug: newtonSchulzGradientAt (cpu_backend.cpp) fails without sampleMsg, so this error,
  // raised inside the per-item native computation, does not say which batch item it is about.
  test('svd-newton backward on a zero batch item names the batch item', async () => {
    const data = spdBatch(3, 4).data.slice();
    data.fill(0, 2 * 16, 3 * 16);
    const { state } = sqrtmSync(new Tensor(data, [3, 4, 4]), 'svd-newton');
    expectThrow(() => sqrtmBackwardSync(state, filled([3, 4, 4], 1), { retainState: true }), 'Error', /batch item 2/);
    await expectReject(() => sqrtmBackward(state, filled([3, 4, 4], 1)), 'Error', /batch item 2/);
  });

  const nonSym = (() => {
    const t = spdBatch(3, 3);
    const d = t.data.slice();
    d[9 + 1] += 0.5; // item 1: A[0][1] != A[1][0]
    return new Tensor(d, [3, 3, 3]);
  })();
  checkCases('non-symmetric matrices', [
    { name: 'sqrtm svd', sync: () => sqrtmSync(nonSym, 'svd'), async: () => sqrtm(nonSym, 'svd'), cls: 'Error', re: /batch item 1: the matrix is not symmetric: A\[0\]\[1\] = .* but A\[1\]\[0\] = / },
    { name: 'sqrtm ns', sync: () => sqrtmSync(nonSym, 'ns'), async: () => sqrtm(nonSym, 'ns'), cls: 'Error', re: /batch item 1: the matrix is not symmetric/ },
    { name: 'sqrtm mpa-lya', sync: () => sqrtmSync(nonSym, 'mpa-lya'), async: () => sqrtm(nonSym, 'mpa-lya'), cls: 'Error', re: /batch item 1: the matrix is not symmetric/ },
    { name: 'eigh', sync: () => eighSync(nonSym), async: () => eigh(nonSym), cls: 'Error', re: /batch item 1: the matrix is not symmetric/ },
  ]);

  test('rounding-level asymmetry (a few ulps) is tolerated', () => {
    const t = spdBatch(1, 3);
    const d = t.data.slice() as Float64Array;
    d[1] = d[1] * (1 + 4 * Number.EPSILON);
    expect(() => sqrtmSync(new Tensor(d, [1, 3, 3]), 'svd')).not.toThrow();
    expect(() => eighSync(new Tensor(d, [1, 3, 3]))).not.toThrow();
  });
});

// ---- methods and options --------------------------------------------------------------------

describe('methods and options', () => {
  const a = spdBatch(2, 3);
  const x = reluFeatures(2, 3, 6, 14);
  const bad = (name: string, spec: unknown, cls: ErrName, re: RegExp): Case => ({
    name,
    sync: () => sqrtmSync(a, spec as MethodSpec),
    async: () => sqrtm(a, spec as MethodSpec),
    cls,
    re,
  });

  checkCases('sqrtm with a bad method spec', [
    bad('unknown method name', 'svd-magic', 'RangeError', /unknown method 'svd-magic'; expected one of ns, svd, .*mpa-lya/),
    bad('unknown method in an object', { method: 'eig' }, 'RangeError', /unknown method 'eig'/),
    bad('missing method', { iterations: 3 }, 'RangeError', /unknown method undefined;/),
    bad('null spec', null, 'TypeError', /a method must be a name or an options object/),
    bad('degree for ns', { method: 'ns', degree: 3 }, 'RangeError', /option 'degree' does not apply to method 'ns' \(its options: precision, normalization, eps, device, iterations, checkPsd\)/),
    bad('kappa for svd', { method: 'svd', kappa: 1 }, 'RangeError', /option 'kappa' does not apply to method 'svd'/),
    bad('iterations for svd-pade', { method: 'svd-pade', iterations: 3 }, 'RangeError', /option 'iterations' does not apply to method 'svd-pade'/),
    bad('misspelt option', { method: 'ns', iteration: 5 }, 'RangeError', /option 'iteration' does not apply to method 'ns'/),
    bad('iterations 0 for ns', { method: 'ns', iterations: 0 }, 'RangeError', /ns: option 'iterations' must be an integer in \[1, 100\], got 0/),
    bad('iterations 0 for svd-pi', { method: 'svd-pi', iterations: 0 }, 'RangeError', /svd-pi: option 'iterations' must be an integer in \[1, \d+\], got 0/),
    bad('negative iterations', { method: 'ns', iterations: -1 }, 'RangeError', /ns: option 'iterations' must be an integer in \[1, 100\], got -1$/),
    bad('fractional iterations', { method: 'svd-newton', iterations: 2.5 }, 'RangeError', /svd-newton: option 'iterations' must be an integer in \[1, 100\], got 2.5$/),
    bad("iterations given as the string '5'", { method: 'ns', iterations: '5' } as never, 'RangeError', /ns: option 'iterations' must be an integer in \[1, 100\], got '5'$/),
    bad('svd-pi iterations 1001', { method: 'svd-pi', iterations: 1001 }, 'RangeError', /svd-pi: option 'iterations' must be an integer in \[1, 1000\], got 1001$/),
    bad("svd-taylor degree '100'", { method: 'svd-taylor', degree: '100' } as never, 'RangeError', /svd-taylor: option 'degree' must be an integer in \[0, 1000\], got '100'$/),
    bad('svd-topn n 2.5', { method: 'svd-topn', n: 2.5 }, 'RangeError', /svd-topn: option 'n' must be an integer in \[1, C\] \(C: the number of channels\), got 2.5$/),
    bad('n > C for svd-topn', { method: 'svd-topn', n: 4 }, 'RangeError', /svd-topn: option 'n' must be an integer in \[1, 3\], got 4/),
    bad('negative kappa', { method: 'svd-trunc', kappa: -1 }, 'RangeError', /svd-trunc: option 'kappa' must be a finite number > 0, got -1/),
    bad('infinite kappa', { method: 'svd-trunc', kappa: Infinity }, 'RangeError', /option 'kappa' must be a finite number > 0, got Infinity/),
    bad('eps 0', { method: 'svd', eps: 0 }, 'RangeError', /svd: option 'eps' must be a finite number > 0, got 0/),
    bad('eps NaN', { method: 'svd-lyap', eps: NaN }, 'RangeError', /option 'eps' must be a finite number > 0, got NaN/),
    bad("normalization 'none' for ns", { method: 'ns', normalization: 'none' }, 'RangeError', /ns: normalization 'none' is not allowed/),
    bad("normalization 'none' for mpa-lya", { method: 'mpa-lya', normalization: 'none' }, 'RangeError', /mpa-lya: normalization 'none' is not allowed/),
    bad('unknown normalization', { method: 'svd', normalization: 'l2' }, 'RangeError', /option 'normalization' must be 'none', 'trace' or 'frobenius', got 'l2'/),
    bad("precision 'float16'", { method: 'svd', precision: 'float16' }, 'RangeError', /option 'precision' must be 'float32' or 'float64', got 'float16'/),
    bad('p/q of the wrong length', { method: 'svd-pade', degree: 2, p: [1, 2], q: [1, 2, 3] }, 'RangeError', /svd-pade: options 'p' and 'q' must both hold degree\+1 = 3 coefficients, got 2 and 3/),
    bad('p without q', { method: 'svd-pade', degree: 1, p: [1, 0] }, 'RangeError', /must both hold degree\+1 = 2 coefficients, got 2 and 0/),
    bad('non-finite p', { method: 'svd-pade', degree: 1, p: [1, NaN], q: [1, 0] }, 'TypeError', /option 'p' must be an array of finite numbers/),
    bad('q not an array', { method: 'svd-pade', degree: 1, p: [1, 0], q: 3 }, 'TypeError', /option 'q' must be an array of finite numbers/),
    bad('mpa-lya degree 13', { method: 'mpa-lya', degree: 13 }, 'RangeError', /mpa-lya: option 'degree' must be an integer in \[1, 12\], got 13/),
    bad('svd-pade degree 0', { method: 'svd-pade', degree: 0 }, 'RangeError', /svd-pade: option 'degree' must be an integer in \[1, 1000\], got 0/),
  ]);

  test('the layer rejects a bad method at construction and in setMethod, keeping its method', () => {
    expectThrow(() => new CovPoolLayer('nope' as never), 'RangeError', /unknown method 'nope'/);
    expectThrow(() => new CovPoolLayer({ method: 'ns', degree: 2 } as never), 'RangeError', /'degree' does not apply to method 'ns'/);
    // Range checks happen at construction, not at the first step.
    expectThrow(() => new CovPoolLayer({ method: 'ns', iterations: 0 }), 'RangeError', /iterations.*got 0/);
    expectThrow(() => new CovPoolLayer({ method: 'mpa-lya', degree: 13 }), 'RangeError', /degree.*got 13/);
    expectThrow(() => new CovPoolLayer({ method: 'ns', vectorize: 'yes' } as never), 'TypeError', /vectorize must be a boolean/);
    expectThrow(() => new CovPoolLayer(null as never), 'TypeError', /layer config must be a method name or an options object/);
    expectThrow(() => new CovPoolLayer(42 as never), 'TypeError', /layer config/);
    const layer = new CovPoolLayer('svd-pade');
    expectThrow(() => layer.setMethod({ method: 'svd-trunc', kappa: 0 }), 'RangeError', /kappa/);
    expectThrow(() => layer.setMethod({ method: 'ns', normalization: 'none' }), 'RangeError', /normalization 'none' is not allowed/);
    expect(layer.method).toBe('svd-pade');
  });

  test('svd-topn n larger than the C of the input fails at forward time (C unknown before), async rejects', async () => {
    const layer = new CovPoolLayer({ method: 'svd-topn', n: 5 }); // fine for large C
    expectThrow(() => layer.forwardSync(x), 'RangeError', /option 'n' must be an integer in \[1, 3\], got 5/);
    await expectReject(() => layer.forward(x), 'RangeError', /option 'n' must be an integer in \[1, 3\], got 5/);
  });

  // Regression: an explicit n = 0 for svd-topn passes the JS check (an integer; its range needs C); the
  // native registry once clamped it to 1 (a clamp meant only for the default on tiny C).
  test('an explicit n = 0 for svd-topn is rejected, not silently changed to 1', () => {
    expectThrow(() => resolveOptions({ method: 'svd-topn', n: 0 }, 'float64', 3), 'RangeError', /option 'n' must be an integer in \[1, 3\], got 0/);
    expectThrow(() => sqrtmSync(a, { method: 'svd-topn', n: 0 }), 'RangeError', /option 'n' must be an integer in \[1, 3\], got 0/);
  });

  test('padeCoefficients rejects an unknown kind and a non-positive degree', () => {
    expectThrow(() => padeCoefficients('taylor' as never, 3), 'TypeError', /kind must be 'geometric' or 'sqrt'/);
    expectThrow(() => padeCoefficients('geometric', 0), 'RangeError', /geometric Pade degree must be an integer in \[1, 1000\], got 0/);
    expectThrow(() => padeCoefficients('sqrt', 1.5), 'RangeError', /sqrt Pade degree must be an integer in \[1, 12\], got 1.5/);
  });

  test('resolveOptions rejects bad dtypes and sizes', () => {
    expectThrow(() => resolveOptions('ns', 'float16' as never, 8), 'TypeError', /dtype must be 'float32' or 'float64'/);
    expectThrow(() => resolveOptions('ns', 'float32', 0), 'RangeError', /C must be a positive integer, got 0/);
  });

  // Regression test, fixed bug (inconsistent class): range errors found by the JS checks are RangeErrors
  // (iterations -1, kappa -1, eps 0, precision 'float16'), but the same kind of error found by the
  // native registry (methods.cpp `fail`, no "RangeError: " prefix) is a plain Error: iterations 0,
  // n > C, degree out of range, normalization 'none' for ns/mpa-lya, p/q of the wrong length.
  test.each([
    [{ method: 'ns', iterations: 0 }],
    [{ method: 'svd-topn', n: 4 }],
    [{ method: 'mpa-lya', degree: 13 }],
    [{ method: 'ns', normalization: 'none' }],
    [{ method: 'svd-pade', degree: 2, p: [1, 2], q: [1, 2, 3] }],
  ])('out-of-range option %p is a RangeError like the JS-side range checks', (spec) => {
    expectThrow(() => sqrtmSync(a, spec as MethodSpec), 'RangeError', /option|normalization/);
  });
});

// ---- the analysis op ------------------------------------------------------------------------

test('backwardCoefficientsSync rejects bad eigenvalue tensors and methods without coefficients', () => {
  const l = new Tensor(new Float64Array([0.5, 1, 2, 0.1, 0.2, 0.3]), [2, 3]);
  expect(backwardCoefficientsSync(l, 'svd').shape).toEqual([2, 3, 3]);
  expectThrow(() => backwardCoefficientsSync(new Tensor(new Float64Array(6), [1, 2, 3]), 'svd'), 'RangeError', /eigenvalues must have shape \[B, C\], got \[1, 2, 3\]/);
  expectThrow(() => backwardCoefficientsSync(new Tensor(new Float32Array(6), [2, 3]), 'svd'), 'TypeError', /expected a float64 tensor, got float32/);
  expectThrow(() => backwardCoefficientsSync(l, 'ns'), 'Error', /ns has no eigenbasis coefficient matrix/);
  expectThrow(() => backwardCoefficientsSync(l, 'svd-newton'), 'Error', /svd-newton has no eigenbasis coefficient matrix/);
  expectThrow(() => backwardCoefficientsSync(l, { method: 'svd', degree: 3 } as never), 'RangeError', /'degree' does not apply/);
  expectThrow(() => backwardCoefficientsSync(poisoned(l, 1, NaN, 2), 'svd-taylor'), 'Error', /batch item 1: the eigenvalues contain NaN or Infinity/);
});

// ---- states ---------------------------------------------------------------------------------

describe('backward states', () => {
  const x = reluFeatures(2, 3, 6, 15);
  const dy = filled([2, 6], 1);
  const dS = filled([2, 3, 3], 1);
  const layerA = new CovPoolLayer('svd');
  const layerB = new CovPoolLayer('svd');
  const fwdA = lazy(() => layerA.forwardSync(x));
  const sq = lazy(() => sqrtmSync(spdBatch(2, 3), 'svd'));
  const forged = Object.create(BackwardState.prototype) as BackwardState;

  checkCases('a state from another call', [
    { name: 'sqrtm state passed to layer.backward', sync: () => layerA.backwardSync(sq().state, dy), async: () => layerA.backward(sq().state, dy), cls: 'TypeError', re: /this state comes from a sqrtm call, not from a layer forward/ },
    { name: 'layer state passed to sqrtmBackward', sync: () => sqrtmBackwardSync(fwdA().state, dS), async: () => sqrtmBackward(fwdA().state, dS), cls: 'TypeError', re: /this state comes from a layer forward call, not from sqrtm/ },
    { name: "layer A's state passed to layer B", sync: () => layerB.backwardSync(fwdA().state, dy), async: () => layerB.backward(fwdA().state, dy), cls: 'TypeError', re: /produced by another CovPoolLayer/ },
    { name: 'a plain object', sync: () => layerA.backwardSync({} as never, dy), async: () => layerA.backward({} as never, dy), cls: 'TypeError', re: /state must be the `state` returned by the matching forward call/ },
    { name: 'a look-alike object holding a real handle', sync: () => layerA.backwardSync({ ...fwdA().state, handle: fwdA().state.handle, kind: 'layer' } as never, dy), async: () => layerA.backward({ ...fwdA().state, handle: fwdA().state.handle, kind: 'layer' } as never, dy), cls: 'TypeError', re: /state must be the `state`/ },
    { name: 'null', sync: () => sqrtmBackwardSync(null as never, dS), async: () => sqrtmBackward(null as never, dS), cls: 'TypeError', re: /state must be the `state`/ },
    { name: 'a number', sync: () => layerA.backwardSync(42 as never, dy), async: () => layerA.backward(42 as never, dy), cls: 'TypeError', re: /state must be the `state`/ },
    { name: 'a tensor', sync: () => sqrtmBackwardSync(dS as never, dS), async: () => sqrtmBackward(dS as never, dS), cls: 'TypeError', re: /state must be the `state`/ },
    { name: 'the forward result instead of its state', sync: () => layerA.backwardSync(fwdA() as never, dy), async: () => layerA.backward(fwdA() as never, dy), cls: 'TypeError', re: /state must be the `state`/ },
    { name: 'an empty object with the BackwardState prototype', sync: () => sqrtmBackwardSync(forged, dS), async: () => sqrtmBackward(forged, dS), cls: 'TypeError', re: /state must be the `state` returned by the matching forward call \(layer.forward or sqrtm\), got a BackwardState that no forward call made/ },
  ]);

  // `const { output, state } = layer.forward(x)` without `await` destructures a promise: state is
  // undefined. Passing the promise on is the other form of the same slip.
  const missingAwait = /got (undefined|a Promise) — is an `await` missing\? layer\.forward and sqrtm return promises: `const \{ output, state \} = await layer\.forward\(x\)` \(or call forwardSync \/ sqrtmSync\)$/;
  checkCases('a forward whose await is missing', [
    { name: 'the state of an un-awaited layer.forward (undefined)', sync: () => layerA.backwardSync((layerA.forward(x) as unknown as { state: BackwardState }).state, dy), async: () => layerA.backward((layerA.forward(x) as unknown as { state: BackwardState }).state, dy), cls: 'TypeError', re: missingAwait },
    { name: 'undefined to sqrtmBackward', sync: () => sqrtmBackwardSync(undefined as never, dS), async: () => sqrtmBackward(undefined as never, dS), cls: 'TypeError', re: missingAwait },
    { name: 'the promise of a forward', sync: () => layerA.backwardSync(layerA.forward(x) as never, dy), async: () => layerA.backward(layerA.forward(x) as never, dy), cls: 'TypeError', re: /got a Promise — is an `await` missing\?/ },
  ]);

  test('a BackwardState cannot be built around something that is not a native state', () => {
    const Ctor = BackwardState as unknown as new (...args: unknown[]) => BackwardState;
    expectThrow(() => new Ctor({}, 'layer', [1, 3, 3], [1, 6]), 'TypeError', /state/);
    expectThrow(() => new Ctor(new Float64Array(4), 'sqrtm', [1, 2, 2], [1, 2, 2]), 'TypeError', /state/);
  });

  test('a disposed state is refused by backward (sync throws, async rejects); dispose is idempotent', async () => {
    const layer = new CovPoolLayer('ns');
    const { state } = layer.forwardSync(x);
    const sqs = sqrtmSync(spdBatch(2, 3), 'mpa-lya').state;
    expect(state.disposed).toBe(false);
    expect(state.bytes).toBeGreaterThan(0);
    state.dispose();
    sqs.dispose();
    expect(state.disposed).toBe(true);
    expect(state.bytes).toBe(0);
    expectThrow(() => layer.backwardSync(state, dy), 'Error', /the state was disposed; run the forward pass again/);
    await expectReject(() => layer.backward(state, dy), 'Error', /disposed/);
    expectThrow(() => sqrtmBackwardSync(sqs, dS), 'Error', /disposed/);
    await expectReject(() => sqrtmBackward(sqs, dS), 'Error', /disposed/);
    expect(() => state.dispose()).not.toThrow();
    // Options remain readable after dispose (they were captured at forward time).
    expect(state.options.method).toBe('ns');
  });
});

// ---- the process survives all of the above -----------------------------------------------------

test('after many failed calls (sync and async) the library still computes the same results', async () => {
  const x = reluFeatures(3, 4, 7, 16);
  const layer = new CovPoolLayer('svd-pade');
  const before = layer.forwardSync(x);
  const gBefore = layer.backwardSync(before.state, filled([3, 10], 1));
  const failures: Promise<unknown>[] = [];
  for (let i = 0; i < 20; i++) {
    expect(() => covpoolSync(poisoned(x, i % 3, NaN))).toThrow();
    failures.push(layer.forward(poisoned(x, i % 3, Infinity)).then(() => 'resolved', () => 'rejected'));
    failures.push(sqrtm(filled([2, 3, 3], 0), 'ns').then(() => 'resolved', () => 'rejected'));
  }
  expect(new Set(await Promise.all(failures))).toEqual(new Set(['rejected']));
  const after = await layer.forward(x);
  const gAfter = await layer.backward(after.state, filled([3, 10], 1));
  expect(sameBits(after.output.data, before.output.data)).toBe(true);
  expect(sameBits(gAfter.data, gBefore.data)).toBe(true);
});
