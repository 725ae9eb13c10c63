// CovPoolLayer and MethodSchedule: output shapes, equality of the fused layer with the composition
// of the individual ops (forward and backward), switching methods between steps, the defaults the
// layer reports, the hybrid and custom schedules, and float32 inputs with every method.
import {
  CovPoolLayer,
  METHODS,
  Method,
  MethodSchedule,
  Tensor,
  backendInfo,
  covpoolBackwardSync,
  covpoolSync,
  sqrtmBackwardSync,
  sqrtmSync,
  triuvecBackwardSync,
  triuvecSync,
} from '../lib';
import { expectThrow, gaussian, maxAbs, relErr, reluFeatures, rng, sameBits } from './helpers';

function randomLike(like: Tensor, seed: number): Tensor {
  const g = gaussian(rng(seed));
  const data = like.dtype === 'float32' ? new Float32Array(like.size) : new Float64Array(like.size);
  for (let i = 0; i < data.length; i++) data[i] = g();
  return new Tensor(data, like.shape);
}

/** max |a - b| relative to max |b|. */
function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m / Math.max(maxAbs(b), 1e-300);
}

describe('output shapes', () => {
  test.each([
    [[2, 5, 7], true, [2, 15]],
    [[2, 5, 7], false, [2, 5, 5]],
    [[3, 4, 2, 3], true, [3, 10]],
    [[3, 4, 2, 3], false, [3, 4, 4]],
  ])('input %p, vectorize %p -> output %p; gradient has the input shape', (inShape, vectorize, outShape) => {
    const n = inShape.reduce((a, b) => a * b, 1);
    const g = gaussian(rng(n));
    const x = new Tensor(Float64Array.from({ length: n }, () => Math.max(0, g())), inShape);
    const layer = new CovPoolLayer({ method: 'svd', vectorize });
    expect(layer.vectorize).toBe(vectorize);
    expect(layer.outputShape(inShape)).toEqual(outShape);
    const { output, state } = layer.forwardSync(x);
    expect(output.shape).toEqual(outShape);
    expect(state.outputShape).toEqual(outShape);
    expect(state.inputShape).toEqual(inShape);
    const dx = layer.backwardSync(state, randomLike(output, 1));
    expect(dx.shape).toEqual(inShape);
    expect(dx.dtype).toBe('float64');
  });

  test('vectorize defaults to true (C(C+1)/2 outputs); a method name works as config', () => {
    const layer = new CovPoolLayer('mpa-lya');
    expect(layer.vectorize).toBe(true);
    expect(layer.forwardSync(reluFeatures(2, 6, 10, 2)).output.shape).toEqual([2, 21]);
    expect(new CovPoolLayer().method).toBe('ns'); // default method
  });

  test('[B, C, H, W] gives the same numbers as the [B, C, H*W] reshape', () => {
    const x = reluFeatures(2, 4, 6, 3);
    const layer = new CovPoolLayer('ns');
    const a = layer.forwardSync(x);
    const b = layer.forwardSync(x.reshape([2, 4, 2, 3]));
    expect(sameBits(a.output.data, b.output.data)).toBe(true);
    const dy = randomLike(a.output, 4);
    const ga = layer.backwardSync(a.state, dy);
    const gb = layer.backwardSync(b.state, dy);
    expect(gb.shape).toEqual([2, 4, 2, 3]);
    expect(sameBits(ga.data, gb.data)).toBe(true);
  });
});

describe('the layer equals the composition of the ops', () => {
  const methods: Method[] = ['ns', 'svd', 'svd-topn', 'svd-pade', 'svd-pi', 'svd-newton', 'svd-lyap', 'mpa-lya'];

  test.each(methods)('%s, float64: forward = triuvec(sqrtm(covpool(x))), backward = covpoolBackward(sqrtmBackward(triuvecBackward(dy)))', (method) => {
    const B = 3, C = 7, N = 15;
    const x = reluFeatures(B, C, N, 10, 'float64');
    const layer = new CovPoolLayer(method);
    const { output, state } = layer.forwardSync(x);

    const A = covpoolSync(x);
    const sq = sqrtmSync(A, method);
    const y = triuvecSync(sq.output);
    expect(output.shape).toEqual(y.shape);
    expect(maxRel(output.data, y.data)).toBeLessThanOrEqual(1e-12);
    // Both ran with the same resolved options.
    expect(state.options).toEqual(sq.state.options);

    const dy = randomLike(output, 11);
    const dx = layer.backwardSync(state, dy);
    const dS = triuvecBackwardSync(dy, C);
    const dA = sqrtmBackwardSync(sq.state, dS);
    const dxRef = covpoolBackwardSync(x, dA);
    expect(dx.shape).toEqual(dxRef.shape);
    expect(relErr(dx.data, dxRef.data)).toBeLessThanOrEqual(1e-10);
    // The gradient is not trivially zero (the comparison above means something).
    expect(maxAbs(dx.data)).toBeGreaterThan(1e-6);
  });

  test('vectorize false: forward = sqrtm(covpool(x)), backward = covpoolBackward(sqrtmBackward(dS))', () => {
    const x = reluFeatures(2, 6, 12, 12, 'float64');
    const layer = new CovPoolLayer({ method: 'svd-pade', vectorize: false });
    const { output, state } = layer.forwardSync(x);
    const sq = sqrtmSync(covpoolSync(x), 'svd-pade');
    expect(maxRel(output.data, sq.output.data)).toBeLessThanOrEqual(1e-12);
    const dS = randomLike(output, 13);
    const dx = layer.backwardSync(state, dS);
    const dxRef = covpoolBackwardSync(x, sqrtmBackwardSync(sq.state, dS));
    expect(relErr(dx.data, dxRef.data)).toBeLessThanOrEqual(1e-10);
  });

  test.each(['ns', 'svd', 'mpa-lya'] as const)('%s, float32: the composition agrees to float32 rounding', (method) => {
    const C = 6;
    const x = reluFeatures(2, C, 14, 14, 'float32');
    const layer = new CovPoolLayer(method);
    const { output, state } = layer.forwardSync(x);
    expect(output.dtype).toBe('float32');
    const sq = sqrtmSync(covpoolSync(x), method);
    expect(maxRel(output.data, triuvecSync(sq.output).data)).toBeLessThanOrEqual(1e-6);
    const dy = randomLike(output, 15);
    const dx = layer.backwardSync(state, dy);
    const dxRef = covpoolBackwardSync(x, sqrtmBackwardSync(sq.state, triuvecBackwardSync(dy, C)));
    expect(dx.dtype).toBe('float32');
    expect(relErr(dx.data, dxRef.data)).toBeLessThanOrEqual(1e-5);
  });
});

describe('switching methods', () => {
  test('setMethod changes the method for later steps; earlier states keep their own method and gradient', () => {
    const x = reluFeatures(2, 6, 10, 20, 'float64');
    const layer = new CovPoolLayer('ns');
    const s1 = layer.forwardSync(x).state;
    expect(layer.setMethod({ method: 'svd-pade', degree: 20 })).toBe(layer); // chainable
    expect(layer.method).toBe('svd-pade');
    const r2 = layer.forwardSync(x);
    expect(s1.options.method).toBe('ns');
    expect(r2.state.options.method).toBe('svd-pade');
    expect(r2.state.options.degree).toBe(20);

    // The ns state still computes the ns gradient after the switch.
    const dy = randomLike(r2.output, 21);
    const nsRef = new CovPoolLayer('ns');
    const ref = nsRef.backwardSync(nsRef.forwardSync(x).state, dy);
    expect(sameBits(layer.backwardSync(s1, dy).data, ref.data)).toBe(true);
    // And the outputs really differ between the methods (ns with 5 iterations is not exact).
    const nsOut = nsRef.forwardSync(x).output;
    expect(sameBits(nsOut.data, r2.output.data)).toBe(false);
    const padeRef = new CovPoolLayer({ method: 'svd-pade', degree: 20 }).forwardSync(x).output;
    expect(sameBits(padeRef.data, r2.output.data)).toBe(true);
  });

  test('options returns a copy: editing it does not change the layer', () => {
    const layer = new CovPoolLayer({ method: 'ns', iterations: 3 });
    const o = layer.options as { method: string; iterations?: number };
    expect(o).toEqual({ method: 'ns', iterations: 3 });
    o.iterations = 9;
    expect(layer.options).toEqual({ method: 'ns', iterations: 3 });
    // `vectorize` is a layer setting, not a method option.
    expect(new CovPoolLayer({ method: 'svd', vectorize: false }).options).toEqual({ method: 'svd' });
  });
});

describe('defaults the layer reports', () => {
  test('layer.method and layer.options show what was given', () => {
    const layer = new CovPoolLayer('svd-topn');
    expect(layer.method).toBe('svd-topn');
    expect(layer.options).toEqual({ method: 'svd-topn' });
  });

  test('resolvedOptions fills in the documented defaults', () => {
    const r = (spec: ConstructorParameters<typeof CovPoolLayer>[0], dtype: 'float32' | 'float64', C: number) =>
      new CovPoolLayer(spec).resolvedOptions(dtype, C);
    // svd-topn keeps C - round(50 C / 256): 206 of 256 (the paper drops 50).
    expect(r('svd-topn', 'float32', 256)).toMatchObject({ method: 'svd-topn', n: 206, precision: 'float64', normalization: 'none' });
    expect(r('svd-topn', 'float32', 64).n).toBe(64 - 13);
    expect(r('svd-pade', 'float32', 256)).toMatchObject({ degree: 50, precision: 'float64', normalization: 'none' });
    expect(r('svd-taylor', 'float32', 16)).toMatchObject({ degree: 100 });
    expect(r('svd-pi', 'float32', 16)).toMatchObject({ iterations: 19 });
    expect(r('svd-newton', 'float32', 16)).toMatchObject({ iterations: 5, precision: 'float64' });
    expect(r('svd-trunc', 'float32', 16)).toMatchObject({ kappa: 1e10 });
    expect(r('ns', 'float32', 256)).toEqual({ method: 'ns', iterations: 5, normalization: 'trace', precision: 'float32', eps: 2 ** -23 });
    expect(r('ns', 'float64', 256)).toEqual({ method: 'ns', iterations: 5, normalization: 'trace', precision: 'float64', eps: 2 ** -52 });
    expect(r('mpa-lya', 'float32', 32)).toMatchObject({ degree: 5, iterations: 8, normalization: 'frobenius', precision: 'float32' });
    // Every eigen-based method computes its spectrum in float64 even for float32 input.
    for (const m of METHODS.filter((m) => m.startsWith('svd')))
      expect(r(m, 'float32', 8)).toMatchObject({ precision: 'float64', eps: 2 ** -52 });
    // Explicit values win.
    expect(r({ method: 'svd', precision: 'float32' }, 'float64', 8)).toMatchObject({ precision: 'float32', eps: 2 ** -23 });
    expect(r({ method: 'ns', iterations: 7, normalization: 'frobenius' }, 'float32', 8)).toMatchObject({ iterations: 7, normalization: 'frobenius' });
  });

  test('a state records exactly the resolved options of its forward pass', () => {
    const layer = new CovPoolLayer('svd-topn');
    const x = reluFeatures(2, 12, 30, 22, 'float32');
    const { state } = layer.forwardSync(x);
    expect(state.options).toEqual(layer.resolvedOptions('float32', 12));
    expect(state.options.n).toBe(12 - 2);
    expect(state.dtype).toBe('float32');
    expect(state.kind).toBe('layer');
  });

  test("layer.device names the device the layer runs on: 'auto' resolved, as its forwards' states say", () => {
    const x = reluFeatures(2, 6, 9, 23, 'float32');
    const gpu = backendInfo().cudaDevices > 0;
    expect(new CovPoolLayer('svd').device).toBe('cpu'); // the default
    const cpu = new CovPoolLayer({ method: 'svd', device: 'cpu' });
    expect(cpu.device).toBe('cpu');
    expect(cpu.forwardSync(x).state.device).toBe('cpu');
    const auto = new CovPoolLayer({ method: 'svd-pade', device: 'auto' });
    expect(auto.device).toBe(gpu ? 'cuda:0' : 'cpu');
    expect(auto.options.device).toBe('auto'); // what was asked for
    const { state } = auto.forwardSync(x);
    expect(state.device).toBe(auto.device);
    // A schedule keeps the layer's device; setMethod may change it.
    MethodSchedule.hybrid(1, 'ns', 'svd').apply(auto, 2);
    expect([auto.method, auto.options.device, auto.device]).toEqual(['svd', 'auto', gpu ? 'cuda:0' : 'cpu']);
    auto.setMethod({ method: 'svd', device: 'cpu' });
    expect(auto.device).toBe('cpu');
    if (gpu) expect(new CovPoolLayer({ method: 'ns', device: 'cuda' }).device).toBe('cuda:0');
  });
});

describe('MethodSchedule', () => {
  test('hybrid(E): ns before epoch E, svd-pade from E on', () => {
    const s = MethodSchedule.hybrid(3);
    expect([0, 1, 2, 3, 4, 100].map((e) => s.at(e).method)).toEqual(['ns', 'ns', 'ns', 'svd-pade', 'svd-pade', 'svd-pade']);
    expect(s.phases.map((p) => p.from)).toEqual([0, 3]);
  });

  test('apply returns true only when the method changes', () => {
    const s = MethodSchedule.hybrid(3);
    const layer = new CovPoolLayer('ns');
    const changed = [0, 1, 2, 3, 4, 5].map((e) => s.apply(layer, e));
    expect(changed).toEqual([false, false, false, true, false, false]);
    expect(layer.method).toBe('svd-pade');
    // Going back (e.g. a restart from epoch 0) switches back and reports it once.
    expect(s.apply(layer, 0)).toBe(true);
    expect(layer.method).toBe('ns');
    expect(s.apply(layer, 1)).toBe(false);
    // A layer that starts with another method changes at the first apply.
    const other = new CovPoolLayer('svd');
    expect(s.apply(other, 0)).toBe(true);
    expect(other.method).toBe('ns');
  });

  test('the layer computes with the scheduled method after apply', () => {
    const x = reluFeatures(2, 5, 9, 23, 'float64');
    const s = MethodSchedule.hybrid(1, 'ns', { method: 'svd-pade', degree: 10 });
    const layer = new CovPoolLayer('ns');
    s.apply(layer, 1);
    const { output, state } = layer.forwardSync(x);
    expect(state.options).toMatchObject({ method: 'svd-pade', degree: 10 });
    const ref = new CovPoolLayer({ method: 'svd-pade', degree: 10 }).forwardSync(x).output;
    expect(sameBits(output.data, ref.data)).toBe(true);
  });

  test('custom multi-phase schedules (given in any order) with options', () => {
    const s = new MethodSchedule([
      { from: 6, method: 'mpa-lya' },
      { from: 0, method: { method: 'ns', iterations: 3 } },
      { from: 3, method: { method: 'ns', iterations: 7 } },
      { from: 10, method: { method: 'svd-topn', n: 4 } },
    ]);
    expect(s.phases.map((p) => p.from)).toEqual([0, 3, 6, 10]);
    expect(s.at(0)).toEqual({ method: 'ns', iterations: 3 });
    expect(s.at(2)).toEqual({ method: 'ns', iterations: 3 });
    expect(s.at(3)).toEqual({ method: 'ns', iterations: 7 });
    expect(s.at(9)).toEqual({ method: 'mpa-lya' });
    expect(s.at(11)).toEqual({ method: 'svd-topn', n: 4 });
    const layer = new CovPoolLayer({ method: 'ns', iterations: 3 });
    // A change of options within the same method counts as a change.
    expect(Array.from({ length: 12 }, (_, e) => s.apply(layer, e))).toEqual([
      false, false, false, true, false, false, true, false, false, false, true, false,
    ]);
    expect(layer.options).toEqual({ method: 'svd-topn', n: 4 });
    expect(Object.isFrozen(s.phases)).toBe(true);
  });

  test('invalid schedules are rejected', () => {
    expectThrow(() => new MethodSchedule([]), 'RangeError', /at least one phase/);
    expectThrow(() => new MethodSchedule(undefined as never), 'RangeError', /at least one phase/);
    expectThrow(() => new MethodSchedule([{ from: 1, method: 'ns' }]), 'RangeError', /first phase of a schedule must start at 0/);
    expectThrow(() => new MethodSchedule([{ from: 0, method: 'ns' }, { from: 2.5, method: 'svd' }]), 'RangeError', /non-negative integer, got 2.5/);
    expectThrow(() => new MethodSchedule([{ from: 0, method: 'ns' }, { from: NaN, method: 'svd' }]), 'RangeError', /non-negative integer, got NaN/);
    expectThrow(() => new MethodSchedule([{ from: 0, method: 'ns' }, { from: 4, method: 'svd-fast' as never }]), 'RangeError', /unknown method 'svd-fast'/);
    expectThrow(() => new MethodSchedule([{ from: 0, method: { method: 'ns', degree: 4 } as never }]), 'RangeError', /'degree' does not apply to method 'ns'/);
    expectThrow(() => MethodSchedule.hybrid(2.5), 'RangeError', /non-negative integer, got 2.5/);
    expectThrow(() => MethodSchedule.hybrid(-1), 'RangeError', /start at 0|non-negative/);
  });

  // Regression test, fixed bug: MethodSchedule validates phases with toMethodOptions only, not with the native
  // range checks that CovPoolLayer runs at construction ("range checks now, not at the first
  // step"), so an out-of-range option is accepted and only fails at apply() epochs later.
  test('a phase with an out-of-range option is rejected when the schedule is built', () => {
    expectThrow(() => MethodSchedule.hybrid(5, 'ns', { method: 'svd-pade', degree: 0 }), 'RangeError', /degree/);
  });

  // Regression test, fixed bug: apply() compares JSON.stringify of the option objects, so the same options given
  // with the keys in another order count as a change (apply returns true and resets the method).
  test('apply does not report a change for the same options written in another key order', () => {
    const layer = new CovPoolLayer({ iterations: 3, method: 'ns' } as never);
    const s = new MethodSchedule([{ from: 0, method: { method: 'ns', iterations: 3 } }]);
    expect(s.apply(layer, 0)).toBe(false);
  });
});

describe('float32 input with every method', () => {
  // ReLU features with N < C: the covariance is rank-deficient (rank <= N - 1), the regime where
  // eigen-gradients meet equal (floored) eigenvalues and normalizations meet tiny traces.
  const C = 32, N = 16;
  const x = reluFeatures(3, C, N, 30, 'float32');

  test.each(METHODS.map((m) => [m]))('%s: finite float32 output and gradient', (method) => {
    const layer = new CovPoolLayer(method);
    const { output, state } = layer.forwardSync(x);
    expect(output.dtype).toBe('float32');
    expect(output.shape).toEqual([3, (C * (C + 1)) / 2]);
    expect(output.data.every(Number.isFinite)).toBe(true);
    expect(maxAbs(output.data)).toBeGreaterThan(0);
    const dx = layer.backwardSync(state, randomLike(output, 31));
    expect(dx.dtype).toBe('float32');
    expect(dx.shape).toEqual([3, C, N]);
    expect(dx.data.every(Number.isFinite)).toBe(true);
  });
});
