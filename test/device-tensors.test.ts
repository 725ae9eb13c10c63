// Tensors that live on a CUDA device: `t.to('cuda')`, ops and the layer on device tensors with
// results on the same device, disposal and the garbage collector's net, and the errors for data read
// in the wrong place or devices mixed in one call. The device parts run where a CUDA device can be
// used — the emulated one of `npm run test:cuda-emu` (native/cuda/test/emulator) on machines
// without a GPU — and are skipped elsewhere with the reason in their title; the CPU-only machine's
// behaviour (a clear error from `to('cuda')`) is checked everywhere else.
import { spawnSync } from 'child_process';
import * as path from 'path';

import {
  CovPoolLayer,
  METHODS,
  MethodSchedule,
  Tensor,
  backendInfo,
  covpoolBackwardSync,
  covpoolSync,
  eigh,
  eighSync,
  emptyCache,
  memoryStats,
  sqrtmBackwardSync,
  sqrtmSync,
  triuvecBackwardSync,
  triuvecSync,
} from '../lib';
import { expectThrow, reluFeatures, sameBits, withSpectrum } from './helpers';

const info = backendInfo();
const gpu = info.cuda && info.cudaDevices > 0;
const onDevice = gpu ? describe : describe.skip;
const where = info.cudaEmulated ? 'the emulated CUDA device' : 'a CUDA device';
const skipped = gpu ? '' : ` (skipped: no CUDA device here — ${info.cudaReason}; npm run test:cuda-emu runs it on the emulated one)`;

/** A host tensor with the same elements and shape (float32 or float64). */
function as(t: Tensor, dtype: 'float32' | 'float64'): Tensor {
  return new Tensor(dtype === 'float64' ? Float64Array.from(t.data) : Float32Array.from(t.data), t.shape);
}
/** The host copy of a device tensor, then frees the device one. */
function host(t: Tensor): Tensor {
  const h = t.toSync('cpu');
  t.dispose();
  return h;
}
function deviceBytes(): number {
  return memoryStats().devices.find((d) => d.device === 'cuda:0')?.allocatedBytes ?? 0;
}

describe('tensor devices on any machine', () => {
  test("a host tensor is on 'cpu'; to('cpu') is the tensor itself; dispose is a no-op; a bad device name is a RangeError", () => {
    const t = new Tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
    expect(t.device).toBe('cpu');
    expect(t.toSync('cpu')).toBe(t);
    t.dispose();
    expect(t.disposed).toBe(false);
    expect(Array.from(t.data)).toEqual([1, 2, 3, 4]);
    expectThrow(() => t.toSync('gpu'), 'RangeError', /device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'/);
  });

  (gpu ? test.skip : test)("without a usable CUDA device, to('cuda') fails with the reason device: 'cuda' gives", async () => {
    const t = new Tensor(new Float64Array([2, 0, 0, 3]), [1, 2, 2]);
    let layerError = '';
    try {
      new CovPoolLayer({ method: 'svd', device: 'cuda' }).forwardSync(reluFeatures(1, 4, 3, 1));
    } catch (e) {
      layerError = (e as Error).message;
    }
    expect(layerError).toMatch(/device 'cuda' was asked for, but /);
    expectThrow(() => t.toSync('cuda'), 'Error', new RegExp(layerError.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    await expect(t.to('cuda:0')).rejects.toThrow(/device 'cuda:0' was asked for, but /);
  });
});

onDevice(`device-resident tensors on ${where}${skipped}`, () => {
  test.each(['float32', 'float64'] as const)('%s round trips, sync and async, keep every bit, shape and dtype', async (dtype) => {
    const x = as(reluFeatures(3, 8, 5, 2), dtype);
    const d = x.toSync('cuda');
    expect([d.device, d.dtype, d.shape]).toEqual(['cuda:0', dtype, [3, 8, 5]]);
    expect(d.toSync('cuda:0')).toBe(d);
    expect(sameBits(d.toSync('cpu').data, x.data)).toBe(true);
    const a = await x.to('cuda');
    const back = await a.to('cpu');
    expect(sameBits(back.data, x.data)).toBe(true);
    // Larger than one pinned staging chunk when COVPOOL_CUDA_STAGING_KB is small (the emulated run):
    const big = as(reluFeatures(4, 64, 70, 3), dtype);
    expect(sameBits(host(big.toSync('cuda')).data, big.data)).toBe(true);
    // An empty batch moves too.
    const empty = new Tensor(dtype === 'float32' ? new Float32Array(0) : new Float64Array(0), [0, 8, 5]);
    expect(host(empty.toSync('cuda')).shape).toEqual([0, 8, 5]);
    for (const t of [d, a]) t.dispose();
  });

  test("a device tensor's data is not readable until it is moved; after dispose nothing works", async () => {
    const d = new Tensor(new Float64Array([1, 2, 3, 4]), [1, 2, 2]).toSync('cuda');
    expectThrow(() => d.data, 'Error', /this tensor lives on cuda:0; its data cannot be read as a Float64Array there\. Copy it to the host first/);
    expectThrow(() => d.get(0, 0, 0), 'Error', /lives on cuda:0/);
    d.dispose();
    expect(d.disposed).toBe(true);
    d.dispose(); // twice is fine
    expectThrow(() => d.toSync('cpu'), 'Error', /the tensor on cuda:0 was disposed/);
    await expect(d.to('cpu')).rejects.toThrow(/was disposed/);
    expectThrow(() => triuvecSync(d), 'Error', /the matrices on cuda:0 was disposed|matrices.*disposed/);
    expectThrow(() => sqrtmSync(d, 'svd'), 'Error', /disposed/);
  });

  // Every op on device tensors equals the same op run on the device with host arrays (device:
  // 'cuda'), bit for bit on the emulated device: the same kernels and library calls on the same
  // bytes, only the copies in and out differ.
  test.each(['float32', 'float64'] as const)('%s: covpool, its backward, triuvec, its backward, eigh on device tensors', (dtype) => {
    const x = as(reluFeatures(3, 12, 20, 4), dtype);
    const xd = x.toSync('cuda');
    const A = covpoolSync(x, { device: 'cuda' });
    const Ad = covpoolSync(xd);
    expect(Ad.device).toBe('cuda:0');
    expect(sameBits(host(Ad).data, A.data)).toBe(true);
    const nhwc = new Tensor(x.data.slice(), [3, 20, 12]); // any data in the channels-last shape
    expect(sameBits(host(covpoolSync(nhwc.toSync('cuda'), { dataFormat: 'channelsLast' })).data, covpoolSync(nhwc, { dataFormat: 'channelsLast', device: 'cuda' }).data)).toBe(true);
    const dA = as(new Tensor(withSpectrum(Array.from({ length: 12 }, (_, i) => i - 5), 3).subarray(0, 144), [1, 12, 12]), dtype);
    const dA3 = new Tensor(dtype === 'float32' ? new Float32Array(3 * 144) : new Float64Array(3 * 144), [3, 12, 12]);
    for (let b = 0; b < 3; b++) dA3.data.set(dA.data, b * 144);
    const g = covpoolBackwardSync(x, dA3, { device: 'cuda' });
    const gd = covpoolBackwardSync(xd, dA3.toSync('cuda'));
    expect(gd.device).toBe('cuda:0');
    expect(sameBits(host(gd).data, g.data)).toBe(true);
    const y = triuvecSync(A, { device: 'cuda' });
    const yd = triuvecSync(A.toSync('cuda'));
    expect(sameBits(host(yd).data, y.data)).toBe(true);
    expect(sameBits(host(triuvecBackwardSync(y.toSync('cuda'), 12)).data, triuvecBackwardSync(y, 12, { device: 'cuda' }).data)).toBe(true);
    // eigh: the same eigenvalues; each eigenvector equal up to its sign (the emulated solver flips
    // signs at random, so no caller may depend on them).
    const e = eighSync(A, { device: 'cuda' });
    const ed = eighSync(A.toSync('cuda'));
    expect(ed.values.device).toBe('cuda:0');
    expect(sameBits(host(ed.values).data, e.values.data)).toBe(true);
    const v = host(ed.vectors).data;
    for (let k = 0; k < v.length; k++) expect(Math.abs(v[k])).toBe(Math.abs(e.vectors.data[k]));
    xd.dispose();
  });

  test.each(['float32', 'float64'] as const)('%s: sqrtm and its backward, every method, on device tensors', (dtype) => {
    const a = as(covpoolSync(reluFeatures(2, 10, 30, 5)), dtype);
    const ad = a.toSync('cuda');
    const dS = as(covpoolSync(reluFeatures(2, 10, 30, 6)), dtype);
    const dSd = dS.toSync('cuda');
    for (const method of METHODS) {
      const r = sqrtmSync(a, { method, device: 'cuda' });
      const rd = sqrtmSync(ad, method);
      expect([rd.output.device, rd.state.device]).toEqual(['cuda:0', 'cuda:0']);
      expect(sameBits(host(rd.output).data, r.output.data)).toBe(true);
      const g = sqrtmBackwardSync(r.state, dS);
      const gd = sqrtmBackwardSync(rd.state, dSd);
      expect(gd.device).toBe('cuda:0');
      expect(sameBits(host(gd).data, g.data)).toBe(true);
    }
    ad.dispose();
    dSd.dispose();
  });

  test.each(['float32', 'float64'] as const)('%s: the layer forward and backward, every method, channels first and last, on device tensors', (dtype) => {
    const x = as(reluFeatures(3, 16, 12, 7), dtype); // N < C: singular covariances, the usual case
    const xd = x.toSync('cuda');
    for (const method of METHODS)
      for (const vectorize of [true, false]) {
        const layer = new CovPoolLayer({ method, device: 'cuda', vectorize });
        const r = layer.forwardSync(x);
        const rd = layer.forwardSync(xd);
        expect(rd.output.device).toBe('cuda:0');
        expect(sameBits(host(rd.output).data, r.output.data)).toBe(true);
        const dy = new Tensor(dtype === 'float32' ? new Float32Array(r.output.size) : new Float64Array(r.output.size), r.output.shape);
        for (let i = 0; i < dy.size; i++) dy.data[i] = Math.cos(i);
        const g = layer.backwardSync(r.state, dy);
        const gd = layer.backwardSync(rd.state, dy.toSync('cuda'));
        expect(gd.device).toBe('cuda:0');
        expect(sameBits(host(gd).data, g.data)).toBe(true);
      }
    const nhwc = new Tensor(x.data.slice(), [3, 12, 16]);
    const last = new CovPoolLayer({ method: 'svd-pade', device: 'cuda', dataFormat: 'channelsLast' });
    const r = last.forwardSync(nhwc);
    const rd = last.forwardSync(nhwc.toSync('cuda'));
    expect(sameBits(host(rd.output).data, r.output.data)).toBe(true);
    const gd = last.backwardSync(rd.state, r.output.toSync('cuda'));
    expect(gd.shape).toEqual([3, 12, 16]);
    expect(sameBits(host(gd).data, last.backwardSync(r.state, r.output).data)).toBe(true);
    xd.dispose();
  });

  test("a host gradient to a device state gives a host gradient; 'auto' layers and the schedule take device tensors", async () => {
    const x = reluFeatures(2, 8, 10, 8);
    const xd = await x.to('cuda');
    const auto = new CovPoolLayer({ method: 'ns', device: 'auto' });
    expect(auto.device).toBe('cuda:0');
    const r = await auto.forward(xd);
    expect(r.state.device).toBe('cuda:0');
    const g = await auto.backward(r.state, host(r.output)); // host gradient -> host result
    expect(g.device).toBe('cpu');
    const layer = new CovPoolLayer({ method: 'ns', device: 'cuda' });
    const schedule = new MethodSchedule([
      { from: 0, method: 'svd-pade' },
      { from: 1, method: 'ns' },
    ]);
    for (const epoch of [0, 1]) {
      schedule.apply(layer, epoch);
      const s = layer.forwardSync(xd);
      expect(s.output.device).toBe('cuda:0');
      expect(layer.method).toBe(epoch === 0 ? 'svd-pade' : 'ns');
      const gd = layer.backwardSync(s.state, s.output);
      expect(gd.device).toBe('cuda:0');
      gd.dispose();
      s.output.dispose();
    }
    const { values } = await eigh(await covpoolSync(xd));
    expect(values.device).toBe('cuda:0');
    xd.dispose();
  });

  // Host arrays run pipelined in chunks of items when a batch fills more than a pinned block; the
  // emulated build can force small chunks (COVPOOL_CUDA_PIPELINE_ITEMS, set natively).
  (info.cudaEmulated ? test : test.skip)('host arrays pipelined in chunks of 1-3 items: the device-tensor results, bit for bit; errors name the batch item', () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const addon = (require('../lib/native') as typeof import('../lib/native')).native();
    const x = reluFeatures(5, 12, 9, 12);
    const xd = x.toSync('cuda');
    for (const method of ['ns', 'svd-pade', 'svd-lyap'] as const) {
      const layer = new CovPoolLayer({ method, device: 'cuda' });
      const whole = layer.forwardSync(xd);
      const wholeOut = whole.output.toSync('cpu');
      const dy = wholeOut; // the output doubles as a host gradient
      for (const items of ['1', '2', '3']) {
        addon.emulatorSetEnv!('COVPOOL_CUDA_PIPELINE_ITEMS', items);
        try {
          const r = layer.forwardSync(x);
          expect(sameBits(r.output.data, wholeOut.data)).toBe(true);
          const g = layer.backwardSync(r.state, dy, { retainState: true });
          const gd = layer.backwardSync(r.state, dy.toSync('cuda'));
          expect(sameBits(g.data, host(gd).data)).toBe(true);
        } finally {
          addon.emulatorSetEnv!('COVPOOL_CUDA_PIPELINE_ITEMS');
        }
      }
      expect(sameBits(layer.backwardSync(whole.state, dy).data, layer.backwardSync(layer.forwardSync(x).state, dy).data)).toBe(true);
    }
    const bad = new Tensor(Float64Array.from(x.data), x.shape);
    bad.data[3 * 12 * 9 + 4] = Infinity;
    addon.emulatorSetEnv!('COVPOOL_CUDA_PIPELINE_ITEMS', '2');
    try {
      expectThrow(() => new CovPoolLayer({ method: 'svd', device: 'cuda' }).forwardSync(bad), 'Error', /batch item 3: the features contain NaN or Infinity/);
    } finally {
      addon.emulatorSetEnv!('COVPOOL_CUDA_PIPELINE_ITEMS');
    }
    xd.dispose();
  });

  test('devices mixed in one call are an error naming both; so is a layer or an option elsewhere', () => {
    const x = reluFeatures(2, 6, 8, 9);
    const xd = x.toSync('cuda');
    const A = covpoolSync(x);
    expectThrow(() => covpoolBackwardSync(xd, A), 'TypeError', /the features are on cuda:0 but the covariance gradient is on cpu/);
    expectThrow(() => new CovPoolLayer({ method: 'svd' }).forwardSync(xd), 'TypeError', /the features are on cuda:0 but this layer runs on cpu/);
    expectThrow(() => sqrtmSync(A.toSync('cuda'), { method: 'svd', device: 'cpu' }), 'TypeError', /the matrices are on cuda:0 but the call asks for device 'cpu'/);
    const cpuLayer = new CovPoolLayer({ method: 'svd' });
    const { output, state } = cpuLayer.forwardSync(x);
    expectThrow(() => cpuLayer.backwardSync(state, output.toSync('cuda')), 'TypeError', /the output gradient is on cuda:0 but the state was made on cpu/);
    expect(state.disposed).toBe(false); // a refused call keeps the state
    state.dispose();
    xd.dispose();
  });

  test('1000 calls on device tensors, half disposed and half left to the garbage collector: device memory back at its baseline', () => {
    // In a child process with --expose-gc (jest's sandbox has no gc), through the built package.
    const script = `
      const c = require(${JSON.stringify(path.resolve(__dirname, '..', 'dist', 'lib'))});
      const bytes = () => (c.memoryStats().devices.find((d) => d.device === 'cuda:0') || { allocatedBytes: 0 }).allocatedBytes;
      const x = new c.Tensor(new Float32Array(2 * 8 * 6).map((_, i) => Math.max(0, Math.sin(i))), [2, 8, 6]);
      const layer = new c.CovPoolLayer({ method: 'ns', device: 'cuda' });
      c.emptyCache();
      const base = bytes();
      let peak = 0;
      (function run() {
        for (let i = 0; i < 1000; i++) {
          const xd = x.toSync('cuda');
          const { output, state } = layer.forwardSync(xd);
          const g = layer.backwardSync(state, output);
          if (i % 2 === 0) { xd.dispose(); output.dispose(); g.dispose(); }
          if (i % 100 === 99) { global.gc(); peak = Math.max(peak, bytes() - base); }
        }
      })();
      setTimeout(() => setImmediate(() => {
        global.gc();
        console.log(JSON.stringify({ base, peak, end: bytes() }));  // bytes() sweeps what the collector freed
      }), 50);`;
    const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', env: process.env, timeout: 600000 });
    expect(r.status).toBe(0);
    const { base, peak, end } = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    expect(end).toBe(base);
    expect(peak).toBeLessThan(1 << 20); // dropped tensors are freed as the loop goes, not at its end
  });

  // The GPU bundle carries no TensorFlow.js (scripts/gpu-bundle.sh): this one runs where it is installed.
  const tfjs = (() => {
    try {
      require.resolve('@tensorflow/tfjs');
      return true;
    } catch {
      return false;
    }
  })();
  (tfjs ? test : test.skip)(`the tfjs layer with device: cuda takes and gives host tensors, equal to the CPU layer${tfjs ? '' : ' (skipped: @tensorflow/tfjs is not installed)'}`, async () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const tf = require('@tensorflow/tfjs') as typeof import('@tensorflow/tfjs');
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { covPoolLayer } = require('../lib/tfjs') as typeof import('../lib/tfjs');
    await tf.setBackend('cpu');
    const x = tf.tensor(Array.from(reluFeatures(2, 4, 3, 10).data), [2, 3, 4]); // NHWC-flattened [B, N, C]
    const onCuda = covPoolLayer({ method: 'svd-pade', device: 'cuda', dataFormat: 'channelsLast' } as never).apply(x) as import('@tensorflow/tfjs').Tensor;
    const onCpu = covPoolLayer({ method: 'svd-pade', dataFormat: 'channelsLast' } as never).apply(x) as import('@tensorflow/tfjs').Tensor;
    const a = onCuda.dataSync(), b = onCpu.dataSync();
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-5 * (1 + Math.abs(b[i])));
  });

  afterAll(() => {
    emptyCache();
    expect(deviceBytes()).toBeLessThan(1 << 20);
  });
});
