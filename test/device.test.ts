// Device selection. On a machine without the CUDA backend (CI, this project's dev machines) it
// checks that 'cpu' and 'auto' run on the CPU and that asking for CUDA is a clear error. Where the
// binary has the CUDA backend and a GPU exists, it checks CUDA against the CPU on random and
// near-singular inputs (N < C, ties) for every method and both dtypes.
import { CovPoolLayer, METHODS, Tensor, backendInfo, sqrtmBackwardSync, sqrtmSync } from '../lib';
import { expectThrow, reluFeatures, relErr, withSpectrum } from './helpers';

const info = backendInfo();
const gpu = info.cuda && info.cudaDevices > 0;
if (!gpu)
  console.log(`test/device.test.ts: CUDA agreement tests skipped (CUDA backend built: ${info.cuda}, CUDA devices: ${info.cudaDevices})`);

describe('device option', () => {
  const x = reluFeatures(2, 8, 5, 3);

  test("'cpu' (the default) and 'auto' without a GPU run on the CPU; the state records it", () => {
    expect(new CovPoolLayer('svd').forwardSync(x).state.device).toBe('cpu');
    expect(new CovPoolLayer({ method: 'svd', device: 'cpu' }).forwardSync(x).state.device).toBe('cpu');
    const auto = new CovPoolLayer({ method: 'ns', device: 'auto' }).forwardSync(x);
    expect(auto.state.device).toEqual(gpu ? expect.stringMatching(/^cuda/) : 'cpu');
  });

  test('a malformed device is a RangeError naming the allowed values', () => {
    expectThrow(() => new CovPoolLayer({ method: 'svd', device: 'gpu' as never }), 'RangeError', /'cpu', 'cuda', 'cuda:N' or 'auto', got 'gpu'/);
  });

  (gpu ? test.skip : test)('asking for CUDA where it cannot be used says why (no CUDA binary, library, driver or GPU)', () => {
    for (const device of ['cuda', 'cuda:0', 'cuda:3'] as const) {
      const why = new RegExp(`device '${device}' was asked for, but .*(CUDA-enabled binary|CUDA library|NVIDIA driver|device)`);
      expectThrow(() => new CovPoolLayer({ method: 'svd', device }).forwardSync(x), 'Error', why);
      expectThrow(() => sqrtmSync(new Tensor(new Float64Array([2, 0, 0, 3]), [1, 2, 2]), { method: 'ns', device }), 'Error', why);
    }
  });
});

(gpu ? describe : describe.skip)('CUDA agrees with the CPU', () => {
  const cases: Array<[string, Tensor, boolean]> = [
    ['ReLU features, N < C', reluFeatures(4, 32, 12, 11), true],
    ['ReLU features, N > C', reluFeatures(4, 16, 49, 12), false],
  ];
  const eigenForward = (m: string) => m !== 'ns' && m !== 'mpa-lya';
  for (const method of METHODS)
    for (const dtype of ['float32', 'float64'] as const)
      test.each(cases)(`${method} ${dtype}: layer forward and backward, %s`, (_name, x64, singular) => {
        const x = dtype === 'float64' ? x64 : new Tensor(Float32Array.from(x64.data), x64.shape);
        const cpu = new CovPoolLayer({ method, device: 'cpu' });
        const cuda = new CovPoolLayer({ method, device: 'cuda' });
        const a = cpu.forwardSync(x), b = cuda.forwardSync(x);
        expect(b.state.device).toMatch(/^cuda/);
        const tol = dtype === 'float64' && eigenForward(method) ? 1e-9 : 1e-4;
        // A singular covariance's C - N + 1 zero eigenvalues come out of any eigensolver as rounding
        // noise of order eps * lambda_max; their square roots (~sqrt(eps)) enter S, so two correct
        // eigensolvers agree to a small multiple of sqrt(eps) there (1.2e-7 in float64).
        const forwardTol = singular && eigenForward(method) ? Math.max(tol, 8 * Math.sqrt(dtype === 'float64' ? 2.2e-16 : 1.2e-7)) : tol;
        expect(relErr(b.output.data, a.output.data)).toBeLessThan(forwardTol);
        const dy = new Tensor(x.dtype === 'float32' ? new Float32Array(a.output.size).fill(0.01) : new Float64Array(a.output.size).fill(0.01), a.output.shape);
        const ga = cpu.backwardSync(a.state, dy), gb = cuda.backwardSync(b.state, dy);
        expect(gb.data.every(Number.isFinite)).toBe(true);
        // The K methods' backward on a singular covariance depends on how each eigensolver resolves
        // the tied noise eigenvalues (bounded by each method's own F, not by rounding); svd-lyap and
        // svd-newton's only on the forward's sqrt(eps) spread.
        const kMethod = eigenForward(method) && method !== 'svd-lyap' && method !== 'svd-newton';
        const backwardTol = singular && eigenForward(method) ? (kMethod ? 1e-2 : 1e-4) : method === 'svd' || method === 'svd-topn' || method === 'svd-pade' ? 1e-2 : tol * 10;
        expect(relErr(gb.data, ga.data)).toBeLessThan(backwardTol);
      });

  test('a nearly symmetric input (within the check): both backends decompose its lower triangle', () => {
    for (const n of [12, 40]) {
      const a = withSpectrum(Array.from({ length: n }, (_, i) => 0.1 + i / n), n);
      const amax = Math.max(...a.map(Math.abs));
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) a[i * n + j] += 20 * 2.2e-16 * amax * Math.sin(i * n + j);
      const A = new Tensor(a, [1, n, n]);
      for (const method of ['svd', 'svd-lyap'] as const) {
        const cpu = sqrtmSync(A, method).output.data, gpu = sqrtmSync(A, { method, device: 'cuda' }).output.data;
        expect(relErr(gpu, cpu)).toBeLessThan(1e-12);
      }
    }
  });

  test('channels-last features: the layer on CUDA equals the CPU (layout handled on the device)', () => {
    const x = reluFeatures(3, 20, 30, 13);
    const nhwc = new Tensor(new Float64Array(x.size), [3, 30, 20]);
    for (let b = 0; b < 3; b++) for (let c = 0; c < 20; c++) for (let k = 0; k < 30; k++) nhwc.data[(b * 30 + k) * 20 + c] = x.data[(b * 20 + c) * 30 + k];
    for (const method of ['ns', 'svd-pade'] as const) {
      const cpu = new CovPoolLayer({ method, dataFormat: 'channelsLast' });
      const gpu = new CovPoolLayer({ method, dataFormat: 'channelsLast', device: 'cuda' });
      const a = cpu.forwardSync(nhwc), b = gpu.forwardSync(nhwc);
      expect(relErr(b.output.data, a.output.data)).toBeLessThan(1e-9);
      const dy = new Tensor(new Float64Array(a.output.size).fill(0.01), a.output.shape);
      const ga = cpu.backwardSync(a.state, dy), gb = gpu.backwardSync(b.state, dy);
      expect(gb.shape).toEqual([3, 30, 20]);
      expect(relErr(gb.data, ga.data)).toBeLessThan(1e-8);
    }
  });

  test('sqrtm with tied eigenvalues: forward equal, gradients finite', () => {
    const a = new Tensor(withSpectrum([1, 1, 1, 0.5, 0.5, 0.1], 5), [1, 6, 6]);
    for (const method of METHODS) {
      const r = sqrtmSync(a, { method, device: 'cuda' } as never);
      const ref = sqrtmSync(a, method);
      expect(relErr(r.output.data, ref.output.data)).toBeLessThan(1e-6);
      expect(sqrtmBackwardSync(r.state, new Tensor(new Float64Array(36).fill(1), [1, 6, 6])).data.every(Number.isFinite)).toBe(true);
    }
  });
});
