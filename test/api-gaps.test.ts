// Small API gaps a new user meets: empty batches, plain number arrays as gradients, legible
// messages for unknown dimensions, Frobenius normalization at extreme scales, schedules that keep
// a method's options, and CUDA-build advice that fits where covpool is installed.
import {
  CovPoolLayer,
  MethodSchedule,
  Tensor,
  backendInfo,
  covpool,
  covpoolBackwardSync,
  covpoolSync,
  eighSync,
  sqrtm,
  sqrtmBackwardSync,
  sqrtmSync,
  triuvecSync,
} from '../lib';
import { expectThrow, reluFeatures, relErr } from './helpers';

describe('empty batch (B = 0)', () => {
  test('the layer returns empty outputs and gradients of the right shapes, sync and async', async () => {
    const layer = new CovPoolLayer('svd-pade');
    const x = new Tensor(new Float32Array(0), [0, 4, 3, 3]);
    const { output, state } = layer.forwardSync(x);
    expect(output.shape).toEqual([0, 10]);
    expect(output.dtype).toBe('float32');
    expect(layer.backwardSync(state, new Tensor(new Float32Array(0), [0, 10])).shape).toEqual([0, 4, 3, 3]);
    const a = await layer.forward(x);
    expect(a.output.shape).toEqual([0, 10]);
    expect((await layer.backward(a.state, { data: [], shape: [0, 10] })).shape).toEqual([0, 4, 3, 3]);
  });

  test('the ops return empty results', async () => {
    const x = new Tensor(new Float64Array(0), [0, 3, 5]);
    expect(covpoolSync(x).shape).toEqual([0, 3, 3]);
    expect((await covpool(x)).shape).toEqual([0, 3, 3]);
    expect(covpoolBackwardSync(x, new Tensor(new Float64Array(0), [0, 3, 3])).shape).toEqual([0, 3, 5]);
    const a = new Tensor(new Float64Array(0), [0, 3, 3]);
    expect(triuvecSync(a).shape).toEqual([0, 6]);
    expect(eighSync(a).values.shape).toEqual([0, 3]);
    const r = await sqrtm(a, 'mpa-lya');
    expect(r.output.shape).toEqual([0, 3, 3]);
    expect(sqrtmBackwardSync(r.state, a).shape).toEqual([0, 3, 3]);
  });

  test('an empty channel or position axis is still an error naming the shape', () => {
    expectThrow(() => covpoolSync(new Tensor(new Float32Array(0), [2, 0, 5])), 'RangeError', /\[2, 0, 5\].*C = 0 channels and N = 5 positions/);
    expectThrow(() => sqrtmSync(new Tensor(new Float32Array(0), [2, 0, 0]), 'ns'), 'RangeError', /C >= 1.*got \[2, 0, 0\]/);
  });
});

describe('plain number arrays as gradients take the state dtype', () => {
  test('float64 layer state, number[] gradient', () => {
    const layer = new CovPoolLayer('svd');
    const x = reluFeatures(1, 3, 4, 2, 'float64');
    const { state } = layer.forwardSync(x);
    const g = layer.backwardSync(state, { data: [1, 0, 0, 1, 0, 1], shape: [1, 6] }, { retainState: true });
    expect(g.dtype).toBe('float64');
    const ref = layer.backwardSync(state, new Tensor(new Float64Array([1, 0, 0, 1, 0, 1]), [1, 6]));
    expect(Array.from(g.data)).toEqual(Array.from(ref.data));
  });

  test('float64 sqrtm state and float64 covpool features, number[] gradients', () => {
    const { state } = sqrtmSync(new Tensor(new Float64Array([2, 0, 0, 3]), [1, 2, 2]), 'svd');
    expect(sqrtmBackwardSync(state, { data: [1, 0, 0, 1], shape: [1, 2, 2] }).dtype).toBe('float64');
    const x = reluFeatures(1, 2, 3, 1, 'float64');
    expect(covpoolBackwardSync(x, { data: [1, 0, 0, 1], shape: [1, 2, 2] }).dtype).toBe('float64');
  });

  test('a declared dtype still wins, and a typed array of the other dtype is still an error', () => {
    const { state } = sqrtmSync(new Tensor(new Float64Array([2, 0, 0, 3]), [1, 2, 2]), 'svd');
    expectThrow(() => sqrtmBackwardSync(state, { data: [1, 0, 0, 1], shape: [1, 2, 2], dtype: 'float32' }), 'TypeError', /must be float64/);
    expectThrow(() => sqrtmBackwardSync(state, new Tensor(new Float32Array(4), [1, 2, 2])), 'TypeError', /must be float64/);
  });
});

describe('messages show unknown dimensions', () => {
  test('null and undefined dims are printed, not dropped', () => {
    expectThrow(() => new Tensor(new Float32Array(4), [null as never, 4]), 'RangeError', /shape \[null, 4\]/);
    expectThrow(() => new Tensor(new Float32Array(4), [undefined as never, 4]), 'RangeError', /shape \[undefined, 4\]/);
    expectThrow(() => new CovPoolLayer('ns').outputShape([null as never, 4]), 'RangeError', /got \[null, 4\]/);
  });
});

describe('Frobenius normalization at extreme scales', () => {
  // diag(2e-170, 1e-170): its sum of squares underflows to 0 even in double; entries near 1e160
  // overflow it. The square root of a diagonal matrix is exact, so the reference is too.
  test.each([
    ['tiny', 1e-170],
    ['huge', 1e160],
  ])('%s entries: mpa-lya and svd with Frobenius normalization give the square root and a finite gradient', (_, scale) => {
    const a = new Tensor(new Float64Array([2 * scale, 0, 0, scale]), [1, 2, 2]);
    for (const spec of [{ method: 'mpa-lya' as const }, { method: 'svd' as const, normalization: 'frobenius' as const }]) {
      const { output, state } = sqrtmSync(a, spec);
      const expected = [Math.sqrt(2 * scale), 0, 0, Math.sqrt(scale)];
      expect(relErr(output.data, expected)).toBeLessThan(1e-6);
      const g = sqrtmBackwardSync(state, new Tensor(new Float64Array([1, 0, 0, 1]), [1, 2, 2]));
      // d tr(sqrt A) / dA = A^(-1/2) / 2 for diagonal A.
      expect(relErr(g.data, [0.5 / Math.sqrt(2 * scale), 0, 0, 0.5 / Math.sqrt(scale)])).toBeLessThan(1e-5);
    }
  });

  test('a general PSD matrix scaled by 1e160 gives 1e80 times the unscaled square root', () => {
    const base = [4, 1, 0, 1, 3, 1, 0, 1, 2];
    const s1 = sqrtmSync(new Tensor(Float64Array.from(base), [1, 3, 3]), 'mpa-lya').output.data;
    const sBig = sqrtmSync(new Tensor(Float64Array.from(base, (v) => v * 1e160), [1, 3, 3]), 'mpa-lya').output.data;
    expect(relErr(Array.from(sBig, (v) => v / 1e80), s1)).toBeLessThan(1e-12);
  });

  test('the zero matrix is still rejected', () => {
    expectThrow(() => sqrtmSync(new Tensor(new Float64Array(4), [1, 2, 2]), 'mpa-lya'), 'Error', /zero or not positive semi-definite/);
  });
});

describe('MethodSchedule.apply keeps the options given for a method', () => {
  test('{ method: ns, iterations: 3 } keeps 3 iterations through a hybrid schedule', () => {
    const layer = new CovPoolLayer({ method: 'ns', iterations: 3 });
    const s = MethodSchedule.hybrid(2, 'ns', 'svd-pade');
    expect(s.apply(layer, 0)).toBe(false);
    expect(layer.options).toEqual({ method: 'ns', iterations: 3 });
    expect(s.apply(layer, 2)).toBe(true);
    expect(layer.options).toEqual({ method: 'svd-pade' });
    // Back to the first phase (a restarted run): ns with the 3 iterations it was given.
    expect(s.apply(layer, 0)).toBe(true);
    expect(layer.options).toEqual({ method: 'ns', iterations: 3 });
    expect(layer.forwardSync(reluFeatures(1, 4, 5, 1, 'float32')).state.options.iterations).toBe(3);
  });

  test('options a phase sets win over the remembered ones; setMethod options are remembered too', () => {
    const layer = new CovPoolLayer('ns');
    layer.setMethod({ method: 'svd-pade', degree: 20 });
    layer.setMethod('ns');
    const s = new MethodSchedule([
      { from: 0, method: { method: 'ns', iterations: 7 } },
      { from: 1, method: 'svd-pade' },
    ]);
    s.apply(layer, 0);
    expect(layer.options).toEqual({ method: 'ns', iterations: 7 });
    s.apply(layer, 1);
    expect(layer.options).toEqual({ method: 'svd-pade', degree: 20 });
  });

  test('the layer device is kept when the phase names none', () => {
    const layer = new CovPoolLayer({ method: 'ns', device: 'cpu' });
    MethodSchedule.hybrid(1).apply(layer, 1);
    expect(layer.options).toEqual({ method: 'svd-pade', device: 'cpu' });
  });
});

describe('CUDA build advice', () => {
  test('from an installed package (no sources, no dev tools) it names a command that works there', () => {
    const { cudaBuildAdvice } = require('../lib/native') as typeof import('../lib/native');
    const installed = require('fs').mkdtempSync(require('path').join(require('os').tmpdir(), 'covpool-installed-'));
    try {
      const advice = cudaBuildAdvice(installed);
      expect(advice).toContain(`cd ${installed} && npx cmake-js rebuild`);
      expect(advice).not.toMatch(/npm run build:cmake/);
      expect(cudaBuildAdvice(require('path').resolve(__dirname, '..'))).toMatch(/npm run build:cmake/);
    } finally {
      require('fs').rmSync(installed, { recursive: true, force: true });
    }
  });

  const info = backendInfo();
  // Only where no CUDA-enabled binary exists at all (test/cuda-loader.test.ts covers a binary whose libraries are missing).
  (info.cudaBinary ? test.skip : test)('a CUDA request from a CPU-only build says how to rebuild from here (a source checkout: npm run build:cmake)', () => {
    const e = expectThrow(() => new CovPoolLayer({ method: 'ns', device: 'cuda' }).forwardSync(reluFeatures(1, 3, 4, 1, 'float32')), 'Error', /built without the CUDA backend/);
    expect(e.message).toMatch(/npm run build:cmake/);
    expect(e.message).toMatch(/cuSOLVER/);
    expectThrow(() => sqrtmSync(new Tensor(new Float32Array([1, 0, 0, 1]), [1, 2, 2]), { method: 'svd', device: 'cuda:0' }), 'Error', /npm run build:cmake/);
  });
});
