// The CUDA backend's error paths and memory accounting, on the emulated CUDA device (the test build
// of native/cuda/test/emulator that `npm run test:cuda-emu` loads through COVPOOL_ADDON). Faults
// are injected through the emulator's environment variables: a failed cudaMalloc, an eigensolver
// that does not converge for one item, a singular LU factorization, a failed kernel launch. Each
// must come out as a clear JavaScript error naming the item, leave covpool's device memory at its
// baseline, and leave the device working for the next call. Elsewhere the suite is skipped (its
// title says why): there is no CUDA device to inject faults into.
import { CovPoolLayer, Tensor, backendInfo, emptyCache, memoryStats, sqrtmBackwardSync, sqrtmSync } from '../lib';
import { native } from '../lib/native';
import { expectThrow, reluFeatures, relErr, withSpectrum } from './helpers';

const emulated = backendInfo().cudaEmulated;
const suite = emulated ? describe : describe.skip;
const title = emulated
  ? 'CUDA backend on the emulated device: injected faults'
  : 'CUDA backend on the emulated device (skipped: this binary is not the emulated test build; npm run test:cuda-emu runs it)';

/** covpool's device memory in use on cuda:0 (states and running calls), in bytes. */
function inUse(): number {
  return memoryStats().devices.find((d) => d.device === 'cuda:0')?.allocatedBytes ?? 0;
}

/**
 * Runs f with the emulator's fault variables set natively (jest's process.env is a copy that
 * native code never sees), clearing them afterwards. The device memory covpool holds must be the
 * same after f as before it: a failed call keeps nothing. (Measured around f alone: states that
 * other tests left to the garbage collector may be freed at any sweep.)
 */
function withFault<T>(vars: Record<string, string>, f: () => T): T {
  const addon = native();
  for (const [k, v] of Object.entries(vars)) addon.emulatorSetEnv!(k, v);
  const before = inUse();
  try {
    return f();
  } finally {
    for (const k of Object.keys(vars)) addon.emulatorSetEnv!(k);
    expect(inUse()).toBe(before);
  }
}

/** The layer on CUDA equals the CPU's (the device works after a fault). */
function expectWorks(method: string, x: Tensor): void {
  const cpu = new CovPoolLayer({ method, device: 'cpu' }).forwardSync(x);
  const gpu = new CovPoolLayer({ method, device: 'cuda' });
  const r = gpu.forwardSync(x);
  expect(relErr(r.output.data, cpu.output.data)).toBeLessThan(1e-9);
  r.state.dispose();
}

suite(title, () => {
  const x16 = reluFeatures(3, 16, 40, 21); // full rank, syevjBatched (n <= 32)
  const x40 = reluFeatures(3, 40, 90, 22); // full rank, XsyevBatched

  beforeEach(() => {
    emptyCache(); // every allocation then reaches cudaMalloc, so the counted faults are deterministic
  });

  test('a cudaMalloc that keeps failing: "out of GPU memory on cuda:0", nothing held, the next call works', () => {
    withFault({ COVPOOL_EMU_FAIL_MALLOC: '1+' }, () =>
      expectThrow(() => new CovPoolLayer({ method: 'svd', device: 'cuda' }).forwardSync(x16), 'Error', /out of GPU memory on cuda:0/),
    );
    expectWorks('svd', x16);
  });

  test('a cudaMalloc that fails once: the cache is emptied and the allocation retried; the result is unchanged', () => {
    const ref = new CovPoolLayer({ method: 'ns', device: 'cpu' }).forwardSync(x16).output;
    for (const k of ['1', '3', '6']) {
      emptyCache();
      const out = withFault({ COVPOOL_EMU_FAIL_MALLOC: k }, () => {
        const r = new CovPoolLayer({ method: 'ns', device: 'cuda' }).forwardSync(x16);
        r.state.dispose();
        return r.output;
      });
      expect(relErr(out.data, ref.data)).toBeLessThan(1e-5);
    }
  });

  test.each([
    ['syevjBatched', x16, 'info=17'],
    ['XsyevBatched', x40, 'info=1'],
  ])('the eigensolver (%s) does not converge for item 1: the error names item 1 and the solver', (solver, x, info) => {
    for (const method of ['svd', 'svd-pade', 'svd-newton']) {
      const msg = new RegExp(`batch item 1: eigendecomposition did not converge \\(cuSOLVER ${solver} ${info}\\)`);
      withFault({ COVPOOL_EMU_EIG_NO_CONVERGE: '1' }, () =>
        expectThrow(() => new CovPoolLayer({ method, device: 'cuda' }).forwardSync(x), 'Error', msg),
      );
      expectWorks(method, x);
    }
  });

  test('getrfBatched reports item 2 singular: MPA-Lya names item 2', () => {
    withFault({ COVPOOL_EMU_GETRF_SINGULAR: '2' }, () =>
      expectThrow(
        () => new CovPoolLayer({ method: 'mpa-lya', device: 'cuda' }).forwardSync(x16),
        'Error',
        /batch item 2: MPA-Lya: the Pade denominator Q\(Z\) is singular \(cuBLAS getrfBatched info=1\)/,
      ),
    );
    expectWorks('mpa-lya', x16);
  });

  test('a kernel launch fails: the error names the kernel; the state survives and its backward works afterwards', () => {
    const layer = new CovPoolLayer({ method: 'svd', device: 'cuda' });
    const cpu = new CovPoolLayer({ method: 'svd', device: 'cpu' });
    const { output, state } = layer.forwardSync(x16);
    const dy = new Tensor(new Float64Array(output.size).fill(0.01), output.shape);
    withFault({ COVPOOL_EMU_FAIL_LAUNCH: 'fStatsKernel' }, () =>
      expectThrow(
        () => layer.backwardSync(state, dy, { retainState: true }),
        'Error',
        /CUDA kernel fStatsKernel failed to launch: too many resources requested for launch/,
      ),
    );
    const g = layer.backwardSync(state, dy);
    const c = cpu.forwardSync(x16);
    expect(relErr(g.data, cpu.backwardSync(c.state, dy).data)).toBeLessThan(1e-8);
  });

  test('the k-th launch fails, for every k of a forward: each is a clean error and nothing leaks', () => {
    for (let k = 1; k <= 12; k++) {
      withFault({ COVPOOL_EMU_FAIL_LAUNCH: String(k) }, () =>
        expectThrow(() => new CovPoolLayer({ method: 'ns', device: 'cuda' }).forwardSync(x16), 'Error', /CUDA kernel \w+.* failed to launch/),
      );
    }
    expectWorks('ns', x16);
  });

  test('the lowest failing item is reported, as on the CPU: non-convergence of item 1 before bad input in item 2', () => {
    const bad = new Tensor(Float64Array.from(x16.data), x16.shape);
    bad.data[2 * 16 * 40 + 7] = NaN;
    // Without the fault, item 2's input is the error, on both backends.
    const nanMsg = /batch item 2: the features contain NaN or Infinity/;
    expectThrow(() => new CovPoolLayer({ method: 'svd', device: 'cpu' }).forwardSync(bad), 'Error', nanMsg);
    expectThrow(() => new CovPoolLayer({ method: 'svd', device: 'cuda' }).forwardSync(bad), 'Error', nanMsg);
    // With item 1 failing in the eigensolver, item 1 comes first.
    withFault({ COVPOOL_EMU_EIG_NO_CONVERGE: '1' }, () =>
      expectThrow(() => new CovPoolLayer({ method: 'svd', device: 'cuda' }).forwardSync(bad), 'Error', /batch item 1: eigendecomposition did not converge/),
    );
    withFault({ COVPOOL_EMU_GETRF_SINGULAR: '1' }, () =>
      expectThrow(() => new CovPoolLayer({ method: 'mpa-lya', device: 'cuda' }).forwardSync(bad), 'Error', /batch item 1: MPA-Lya: the Pade denominator/),
    );
    // A fault after the bad item does not hide it.
    withFault({ COVPOOL_EMU_EIG_NO_CONVERGE: '2' }, () =>
      expectThrow(() => new CovPoolLayer({ method: 'svd', device: 'cuda' }).forwardSync(bad), 'Error', nanMsg),
    );
  });

  test('sqrtm and its backward on CUDA after faults, with ties in the spectrum: equal to the CPU', () => {
    const a = new Tensor(withSpectrum([1, 1, 1, 0.5, 0.5, 0.1], 5), [1, 6, 6]);
    for (const method of ['ns', 'svd', 'svd-lyap', 'mpa-lya']) {
      const r = sqrtmSync(a, { method, device: 'cuda' } as never);
      const ref = sqrtmSync(a, method as never);
      expect(relErr(r.output.data, ref.output.data)).toBeLessThan(1e-6);
      expect(sqrtmBackwardSync(r.state, new Tensor(new Float64Array(36).fill(1), [1, 6, 6])).data.every(Number.isFinite)).toBe(true);
      ref.state.dispose();
    }
  });

  test('async calls on one device run one at a time and equal the sync results', async () => {
    const layer = new CovPoolLayer({ method: 'svd-pade', device: 'cuda' });
    const ref = layer.forwardSync(x40);
    const runs = await Promise.all([0, 1, 2, 3].map(() => layer.forward(x40)));
    for (const r of runs) {
      expect(relErr(r.output.data, ref.output.data)).toBeLessThan(1e-12);
      r.state.dispose();
    }
    ref.state.dispose();
  });

  test('the emulator saw no misuse, and once the cache is emptied every device block is one covpool accounts for', () => {
    emptyCache();
    const inUseNow = inUse(); // what live states and device tensors (of any test in this process) hold
    const report = native().info().cudaEmulator!;
    expect(report.messages).toEqual([]);
    expect(report.violations).toBe(0);
    // A block the emulator sees allocated that covpool neither uses nor caches would be a leak.
    expect(report.liveDeviceBytes).toBe(inUseNow);
    expect(report.kernelLaunches).toBeGreaterThan(100);
  });
});
