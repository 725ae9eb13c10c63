// Channels-last features (NHWC, what TensorFlow.js convolutions give): the layer and the covpool op
// take dataFormat 'channelsLast' and read [B, H, W, C] / [B, N, C] natively. Checked against the
// channels-first path on the transposed data and against finite differences; and the trap the
// option removes: NHWC data read as NCHW silently pooled the wrong axis.
import { CovPoolLayer, METHODS, Tensor, covpoolBackwardSync, covpoolSync } from '../lib';
import { centralDiff, dot, expectThrow, gaussian, reluFeatures, relErr, rng } from './helpers';

/** [B, C, N] -> [B, N, C] (copy). */
function toChannelsLast(x: Tensor): Tensor {
  const [B, C, N] = x.shape;
  const out = x.dtype === 'float32' ? new Float32Array(x.size) : new Float64Array(x.size);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++) for (let k = 0; k < N; k++) out[b * C * N + k * C + c] = x.data[b * C * N + c * N + k];
  return new Tensor(out, [B, N, C]);
}

describe('dataFormat channelsLast', () => {
  test.each(['float32', 'float64'] as const)('covpool / covpoolBackward (%s) equal the channels-first results on the transposed features', (dtype) => {
    const x = reluFeatures(3, 6, 5, 11, dtype); // N < C
    const xl = toChannelsLast(x);
    const a = covpoolSync(x);
    const al = covpoolSync(xl, { dataFormat: 'channelsLast' });
    expect(al.shape).toEqual([3, 6, 6]);
    expect(relErr(al.data, a.data)).toBeLessThan(dtype === 'float32' ? 1e-6 : 1e-14);
    const g = gaussian(rng(3));
    const dA = new Tensor(Array.from({ length: 3 * 36 }, () => g()), [3, 6, 6], dtype);
    const dx = covpoolBackwardSync(x, dA);
    const dxl = covpoolBackwardSync(xl, dA, { dataFormat: 'channelsLast' });
    expect(dxl.shape).toEqual([3, 5, 6]);
    expect(relErr(dxl.data, toChannelsLast(dx).data)).toBeLessThan(dtype === 'float32' ? 1e-6 : 1e-14);
  });

  test.each(METHODS.map((m) => [m]))('layer %s: NHWC forward and backward equal NCHW on the transposed data', (method) => {
    const x = reluFeatures(2, 8, 6, 5, 'float64'); // [B, C, N] = [2, 8, 2*3]
    const nchw = x.reshape([2, 8, 2, 3]);
    const xl = toChannelsLast(x); // [B, N, C]
    const nhwc = xl.reshape([2, 2, 3, 8]);
    const first = new CovPoolLayer({ method, eps: 1e-10 });
    const last = new CovPoolLayer({ method, eps: 1e-10, dataFormat: 'channelsLast' });
    const f = first.forwardSync(nchw);
    const l = last.forwardSync(nhwc);
    expect(l.output.shape).toEqual([2, 36]);
    expect(relErr(l.output.data, f.output.data)).toBeLessThan(1e-10);
    const g = gaussian(rng(8));
    const dy = new Tensor(Array.from({ length: 72 }, () => g()), [2, 36], 'float64');
    const dxf = first.backwardSync(f.state, dy);
    const dxl = last.backwardSync(l.state, dy);
    expect(dxl.shape).toEqual([2, 2, 3, 8]);
    expect(relErr(dxl.data, toChannelsLast(dxf.reshape([2, 8, 6])).data)).toBeLessThan(1e-8);
  });

  test('the channels-last layer gradient matches finite differences (svd-lyap, N < C)', () => {
    const xl = toChannelsLast(reluFeatures(1, 6, 4, 21, 'float64')); // [1, 4, 6]
    const layer = new CovPoolLayer({ method: 'svd-lyap', dataFormat: 'channelsLast' });
    const g = gaussian(rng(5));
    const w = Float64Array.from({ length: 21 }, () => g());
    const loss = (t: Tensor): number => dot(layer.forwardSync(t).output.data, w);
    const { state } = layer.forwardSync(xl);
    const grad = layer.backwardSync(state, new Tensor(w, [1, 21]));
    const dir = Float64Array.from({ length: xl.size }, () => g());
    const fd = centralDiff((h) => loss(new Tensor(xl.data.map((v, i) => v + h * dir[i]), xl.shape)), 1e-6);
    expect(Math.abs(dot(grad.data, dir) - fd)).toBeLessThan(1e-6 * Math.max(1, Math.abs(fd)));
  });

  test('the NHWC trap: [2, 7, 7, 16] features give C = 16 (136 outputs), not C = 7', () => {
    const x = new Tensor(new Float32Array(2 * 7 * 7 * 16).map((_, i) => Math.sin(i)), [2, 7, 7, 16]);
    const layer = new CovPoolLayer({ method: 'ns', dataFormat: 'channelsLast' });
    expect(layer.forwardSync(x).output.shape).toEqual([2, 136]);
    expect(layer.outputShape([2, 7, 7, 16])).toEqual([2, 136]);
    // Without the option the same tensor is read channels first (C = 7): what the docs warn about.
    expect(new CovPoolLayer('ns').outputShape([2, 7, 7, 16])).toEqual([2, 28]);
  });

  test('async forward and backward take the layout too', async () => {
    const xl = toChannelsLast(reluFeatures(3, 5, 4, 2, 'float32'));
    const layer = new CovPoolLayer({ method: 'svd', dataFormat: 'NHWC' });
    expect(layer.dataFormat).toBe('channelsLast');
    const a = await layer.forward(xl);
    const s = layer.forwardSync(xl);
    expect(Array.from(a.output.data)).toEqual(Array.from(s.output.data));
    const dy = new Tensor(new Float32Array(3 * 15).fill(0.5), [3, 15]);
    expect(Array.from((await layer.backward(a.state, dy)).data)).toEqual(Array.from(layer.backwardSync(s.state, dy).data));
  });

  test('an unknown layout, or a shape that has no channels in that layout, is a RangeError naming it', () => {
    expectThrow(() => new CovPoolLayer({ method: 'ns', dataFormat: 'NWHC' as never }), 'RangeError', /dataFormat must be 'channelsFirst' \(NCHW\) or 'channelsLast' \(NHWC\), got 'NWHC'/);
    const layer = new CovPoolLayer({ method: 'ns', dataFormat: 'channelsLast' });
    expectThrow(() => layer.forwardSync(new Tensor(new Float32Array(4), [2, 2])), 'RangeError', /\[B, N, C\] or \[B, H, W, C\], got \[2, 2\] \(rank 2; dataFormat 'channelsLast'\)/);
  });

  test('a TensorFlow.js tensor passed to the core API says to use covpool/tfjs or dataSync()', () => {
    // Duck-typed like a tf.Tensor (data() and dataSync() methods), so this test needs no tfjs.
    const fake = { shape: [2, 3, 4], dtype: 'float32', dataId: {}, data: async () => new Float32Array(24), dataSync: () => new Float32Array(24) };
    expectThrow(() => covpoolSync(fake as never), 'TypeError', /TensorFlow\.js tensor.*covpool\/tfjs.*dataSync\(\).*channelsLast/);
    expectThrow(() => new CovPoolLayer('ns').forwardSync(fake as never), 'TypeError', /covpool\/tfjs/);
    // The constructor too: new Tensor(t, t.shape) is the other natural first try.
    expectThrow(() => new Tensor(fake as never, [2, 3, 4]), 'TypeError', /new Tensor\(data, shape\) got, as its data, a TensorFlow\.js tensor.*covpool\/tfjs.*Tensor\.from\(\{ data: t\.dataSync\(\), shape: t\.shape \}\).*channelsLast/);
  });

  test('a real tf.Tensor gets the same advice, and its dataSync() with dataFormat channelsLast is the fix', () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const tf = require('@tensorflow/tfjs') as typeof import('@tensorflow/tfjs');
    const t = tf.tidy(() => tf.randomNormal([2, 7, 7, 16], 0, 1, 'float32', 3));
    expectThrow(() => new CovPoolLayer('ns').forwardSync(t as never), 'TypeError', /TensorFlow\.js tensor.*covpool\/tfjs.*dataSync\(\)/);
    expectThrow(() => new Tensor(t as never, t.shape), 'TypeError', /new Tensor\(data, shape\) got, as its data, a TensorFlow\.js tensor.*covpool\/tfjs.*dataSync\(\)/);
    const layer = new CovPoolLayer({ method: 'ns', dataFormat: 'channelsLast' });
    expect(layer.forwardSync(Tensor.from({ data: t.dataSync(), shape: t.shape })).output.shape).toEqual([2, 136]);
    t.dispose();
  });
});
