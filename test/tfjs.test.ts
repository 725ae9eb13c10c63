// covpool/tfjs: the customGrad op and the tf.layers.Layer. The gradient tfjs computes through the
// op must be covpool's own backward (all ten methods); NHWC and NCHW must give the same numbers;
// a small model must train under model.fit; a saved and loaded layer must keep its config; the
// backward states must not outlive their use; and the wasm backend must give what cpu gives.
import * as tf from '@tensorflow/tfjs';
import { CovPoolLayer, METHODS, MethodSchedule, Tensor as CpTensor } from '../lib';
import { CovPool, CovPoolOp, covPoolLayer, covPoolOp, scheduleCallback } from '../lib/tfjs';
import { expectThrow, gaussian, maxAbs, reluFeatures, rng } from './helpers';

/** max |a - b| relative to max |b|. */
function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m / Math.max(maxAbs(b), 1e-30);
}

function randomF32(n: number, seed: number): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: n }, () => g());
}

/** The gradient tfjs computes through `f` for the loss sum(f(x) * dy), and the output. */
function tfGrad(f: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor, dy: tf.Tensor): { y: Float32Array; g: Float32Array } {
  return tf.tidy(() => {
    const { value, grad } = tf.valueAndGrad((v: tf.Tensor) => tf.sum(tf.mul(f(v), dy)))(x);
    value.dispose();
    const y = f(x).dataSync() as Float32Array;
    return { y: Float32Array.from(y), g: Float32Array.from(grad.dataSync()) };
  });
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

describe('the tfjs op against covpool', () => {
  const [B, C, N] = [3, 6, 10];

  test.each([...METHODS])('%s: output and gradient are covpool forwardSync / backwardSync (NCHW, float32)', (method) => {
    const x = reluFeatures(B, C, N, 11, 'float32');
    const ref = new CovPoolLayer(method);
    const { output, state } = ref.forwardSync(x);
    const dy = new CpTensor(randomF32(output.size, 12), output.shape);
    const gRef = ref.backwardSync(state, dy);
    state.dispose();

    const op = new CovPoolOp({ method, dataFormat: 'channelsFirst' });
    const xt = tf.tensor3d(x.data as Float32Array, [B, C, N]);
    const dyt = tf.tensor(dy.data as Float32Array, output.shape as number[]);
    const { y, g } = tfGrad((v) => op.apply(v), xt, dyt);
    // The same native computation on the same float32 inputs: d sum(y * dy) / dy is dy exactly.
    expect(maxRel(y, output.data)).toBeLessThanOrEqual(1e-7);
    expect(maxRel(g, gRef.data)).toBeLessThanOrEqual(1e-6);
    expect(op.stats).toMatchObject({ backward: 1, pendingStates: 0 });
    tf.dispose([xt, dyt]);
  });

  test('rank 4 NCHW input [B, C, H, W] is covpool layout: same result as [B, C, H*W]', () => {
    const x = reluFeatures(2, 5, 12, 3, 'float32');
    const x3 = tf.tensor3d(x.data as Float32Array, [2, 5, 12]);
    const x4 = x3.reshape([2, 5, 3, 4]);
    const dy = tf.tensor2d(randomF32(2 * 15, 4), [2, 15]);
    const op = new CovPoolOp({ method: 'svd-lyap', dataFormat: 'NCHW' });
    const a = tfGrad((v) => op.apply(v), x3, dy);
    const b = tfGrad((v) => op.apply(v), x4, dy);
    expect(maxRel(b.y, a.y)).toBe(0);
    expect(maxRel(b.g, a.g)).toBe(0);
    tf.dispose([x3, x4, dy]);
  });

  test('NHWC (the tfjs default) equals NCHW on the transposed input, gradients transposed back', () => {
    const [b, c, h, w] = [2, 5, 3, 4];
    const x = reluFeatures(b, c, h * w, 5, 'float32');
    const nchw = tf.tensor4d(x.data as Float32Array, [b, c, h, w]);
    const nhwc = nchw.transpose([0, 2, 3, 1]);
    const dy = tf.tensor2d(randomF32(b * 15, 6), [b, 15]);
    for (const method of ['ns', 'svd-pade', 'mpa-lya'] as const) {
      const first = tfGrad((v) => covPoolOp(v, { method, dataFormat: 'channelsFirst' }), nchw, dy);
      const last = tfGrad((v) => covPoolOp(v, method), nhwc, dy); // channelsLast is the default
      expect(maxRel(last.y, first.y)).toBe(0);
      const back = tf.tensor4d(last.g, [b, h, w, c]).transpose([0, 3, 1, 2]);
      expect(maxRel(back.dataSync(), first.g)).toBe(0);
      back.dispose();
    }
    // rank 3: [B, N, C] channels-last against [B, C, N]
    const x3 = tf.tensor3d(x.data as Float32Array, [b, c, h * w]);
    const x3t = x3.transpose([0, 2, 1]);
    const f = tfGrad((v) => covPoolOp(v, { method: 'svd', dataFormat: 'nchw' }), x3, dy);
    const l = tfGrad((v) => covPoolOp(v, { method: 'svd', dataFormat: 'NHWC' }), x3t, dy);
    expect(maxRel(l.y, f.y)).toBe(0);
    const back3 = tf.tensor3d(l.g, [b, h * w, c]).transpose([0, 2, 1]);
    expect(maxRel(back3.dataSync(), f.g)).toBe(0);
    tf.dispose([nchw, nhwc, dy, x3, x3t, back3]);
  });

  test('vectorize: false gives the [B, C, C] square root and its gradient', () => {
    const x = reluFeatures(2, 4, 9, 8, 'float32');
    const ref = new CovPoolLayer({ method: 'svd-taylor', vectorize: false });
    const { output, state } = ref.forwardSync(x);
    const dy = new CpTensor(randomF32(output.size, 9), output.shape);
    const gRef = ref.backwardSync(state, dy);
    const op = new CovPoolOp({ method: 'svd-taylor', vectorize: false, dataFormat: 'channelsFirst' });
    expect(op.outputShape([null, 4, 9])).toEqual([null, 4, 4]);
    const xt = tf.tensor3d(x.data as Float32Array, [2, 4, 9]);
    const dyt = tf.tensor3d(dy.data as Float32Array, [2, 4, 4]);
    const r = tfGrad((v) => op.apply(v), xt, dyt);
    expect(maxRel(r.y, output.data)).toBeLessThanOrEqual(1e-7);
    expect(maxRel(r.g, gRef.data)).toBeLessThanOrEqual(1e-6);
    tf.dispose([xt, dyt]);
  });

  test('argument errors name the layout and the option', () => {
    const op = new CovPoolOp('ns');
    const x2 = tf.zeros([3, 4]);
    expectThrow(() => op.apply(x2), 'RangeError', /rank 4 \(\[B, H, W, C\]\) or 3 \(\[B, N, C\]\), got \[3, 4\]/);
    expectThrow(() => new CovPoolOp({ method: 'ns', dataFormat: 'NWHC' as never }), 'RangeError', /dataFormat must be 'channelsFirst' \(NCHW\) or 'channelsLast' \(NHWC\)/);
    expectThrow(() => new CovPoolOp({ method: 'ns', kappa: 3 } as never), 'RangeError', /option 'kappa' does not apply to method 'ns'/);
    expectThrow(() => covPoolLayer({ method: 'svd-pade', degree: -1 }), 'RangeError', /degree/);
    // The layer passes tfjs' own arguments to tf.layers.Layer and everything else to covpool.
    expectThrow(() => covPoolLayer({ method: 'ns', iteration: 3, name: 'x' } as never), 'RangeError', /option 'iteration' does not apply to method 'ns' \(its options: .*iterations/);
    expectThrow(() => op.apply([1, 2] as never), 'TypeError', /expected a tf.Tensor/);
    x2.dispose();
  });
});

describe('backward states: kept only while a gradient can still ask for them', () => {
  const x = () => tf.tensor4d(reluFeatures(2, 4, 9, 21, 'float32').data as Float32Array, [2, 3, 3, 4]);

  test('inference (no tape): freed right after the forward', () => {
    const op = new CovPoolOp('svd-pade');
    const xt = x();
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      op.apply(xt);
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(op.stats).toMatchObject({ forward: 1, backward: 0, pendingStates: 0 });
    xt.dispose();
  });

  test('gradient: freed by the backward; no tensors leak', () => {
    const op = new CovPoolOp('ns');
    const xt = x();
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      tf.grad((v: tf.Tensor) => tf.sum(op.apply(v)))(xt);
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(op.stats).toMatchObject({ forward: 1, backward: 1, pendingStates: 0 });
    xt.dispose();
  });

  test('recorded on a tape but not differentiated: freed at the next call, or by dispose()', () => {
    const op = new CovPoolOp('svd');
    const xt = x();
    const a = tf.scalar(2);
    // The op runs under the tape, but the loss does not depend on it: tfjs never calls its gradient.
    tf.tidy(() => tf.grad((s: tf.Tensor) => {
      op.apply(xt);
      return tf.mul(s, s);
    })(a));
    expect(op.stats.pendingStates).toBe(1);
    tf.tidy(() => op.apply(xt)); // the engine has dropped that tape: the state goes
    expect(op.stats.pendingStates).toBe(0);
    tf.tidy(() => tf.grad((s: tf.Tensor) => {
      op.apply(xt);
      return tf.mul(s, s);
    })(a));
    expect(op.stats.pendingStates).toBe(1);
    op.dispose();
    expect(op.stats.pendingStates).toBe(0);
    tf.dispose([xt, a]);
  });

  test('inside a nested gradient the state outlives the inner backward, and is freed once the outer tape is gone', () => {
    const op = new CovPoolOp('svd-pade');
    const xt = x();
    const a = tf.scalar(3);
    // The inner tf.grad runs its backward while the outer tape is still recording: an outer
    // gradient could come back through this node, so the state stays until that tape is gone.
    const ga = tf.tidy(() =>
      tf.grad((s: tf.Tensor) => {
        const g = tf.grad((v: tf.Tensor) => tf.sum(op.apply(v)))(xt);
        return tf.mul(s, tf.sum(g));
      })(a),
    );
    expect(op.stats).toMatchObject({ forward: 1, backward: 1, pendingStates: 1 });
    // d/ds (s * sum(g)) = sum(g): the inner gradient is a plain (first-order) value.
    const g = tf.tidy(() => tf.sum(tf.grad((v: tf.Tensor) => tf.sum(op.apply(v)))(xt)));
    expect(op.stats.pendingStates).toBe(0);
    expect(ga.dataSync()[0]).toBeCloseTo(g.dataSync()[0], 5);
    tf.dispose([xt, a, ga, g]);
  });

  test('a layer used twice under one tape keeps both states until the gradient', () => {
    const op = new CovPoolOp('svd-lyap');
    const x1 = x();
    const x2 = tf.mul(x1, 2);
    const [g1, g2] = tf.tidy(() => tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.add(tf.sum(op.apply(p)), tf.sum(op.apply(q))))([x1, x2]));
    expect(op.stats).toMatchObject({ forward: 2, backward: 2, pendingStates: 0 });
    // The square root is homogeneous of degree 1 in x (A scales by 4, sqrt(A) by 2): grad at 2x = grad at x.
    expect(maxRel(g2.dataSync(), g1.dataSync())).toBeLessThan(1e-5);
    tf.dispose([x1, x2, g1, g2]);
  });
});

describe('the CovPool layer in tfjs models', () => {
  /** Two classes with the same mean that differ only in how channels co-vary: second-order only. */
  function covarianceTask(n: number, seed: number): { xs: tf.Tensor4D; ys: tf.Tensor2D } {
    const g = gaussian(rng(seed));
    const [h, w, c] = [4, 4, 3];
    const data = new Float32Array(n * h * w * c);
    const labels = new Float32Array(n * 2);
    for (let i = 0; i < n; i++) {
      const cls = i % 2;
      labels[i * 2 + cls] = 1;
      for (let p = 0; p < h * w; p++) {
        const z = g();
        const o = (i * h * w + p) * c;
        data[o] = z + 0.3 * g();
        data[o + 1] = (cls === 0 ? z : -z) + 0.3 * g();
        data[o + 2] = g();
      }
    }
    return { xs: tf.tensor4d(data, [n, h, w, c]), ys: tf.tensor2d(labels, [n, 2]) };
  }

  function model(method: 'svd-pade' | 'ns'): { m: tf.Sequential; gcp: ReturnType<typeof covPoolLayer> } {
    const m = tf.sequential();
    m.add(tf.layers.conv2d({ inputShape: [4, 4, 3], filters: 4, kernelSize: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }));
    const gcp = covPoolLayer({ method });
    m.add(gcp);
    m.add(tf.layers.dense({ units: 2, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }));
    m.compile({ optimizer: tf.train.adam(0.05), loss: 'categoricalCrossentropy' });
    return { m, gcp };
  }

  test('three lines: output shape [B, C(C+1)/2] in a sequential model', () => {
    const { m, gcp } = model('ns');
    expect(gcp).toBeInstanceOf(CovPool);
    expect(gcp.outputShape).toEqual([null, 10]); // C = 4 -> 4 * 5 / 2
    const y = m.predict(tf.zeros([2, 4, 4, 3]).add(tf.randomNormal([2, 4, 4, 3], 0, 1, 'float32', 3))) as tf.Tensor;
    expect(y.shape).toEqual([2, 2]);
    expect(gcp.op.stats.pendingStates).toBe(0);
    m.dispose();
  });

  test('model.fit trains through the layer (loss goes down), with the hybrid schedule as a callback', async () => {
    const { xs, ys } = covarianceTask(64, 31);
    const { m, gcp } = model('ns');
    const switched: number[] = [];
    const h = await m.fit(xs, ys, {
      epochs: 12,
      batchSize: 16,
      shuffle: false,
      verbose: 0,
      callbacks: [scheduleCallback(gcp, MethodSchedule.hybrid(6, 'ns', 'svd-pade'), (e) => switched.push(e))],
    });
    const loss = h.history.loss as number[];
    expect(loss.every(Number.isFinite)).toBe(true);
    expect(loss[loss.length - 1]).toBeLessThan(0.6 * loss[0]);
    expect(switched).toEqual([6]);
    expect(gcp.covpool.method).toBe('svd-pade');
    expect(gcp.getConfig().method).toBe('svd-pade');
    const s = gcp.op.stats;
    expect(s.backward).toBe(12 * 4); // one backward per step: the gradient reached the conv below
    expect(s.pendingStates).toBe(0);
    expect(s.nonFiniteBackward).toBe(0);
    expect(s.maxAbsGradient).toBeGreaterThan(0);
    expect(Number.isFinite(s.maxAbsGradient)).toBe(true);
    tf.dispose([xs, ys]);
    m.dispose();
  });

  test('saved and loaded (tf.io handlers), the layer keeps its config and its outputs', async () => {
    const m = tf.sequential();
    m.add(tf.layers.conv2d({ inputShape: [3, 4, 4], filters: 5, kernelSize: 1, dataFormat: 'channelsFirst', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }));
    m.add(covPoolLayer({ method: 'svd-pade', degree: 20, eps: 1e-9, dataFormat: 'channelsFirst', name: 'gcp' }));
    m.add(tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotUniform({ seed: 5 }) }));
    const x = tf.randomNormal([2, 3, 4, 4], 0, 1, 'float32', 6);
    const y0 = (m.predict(x) as tf.Tensor).dataSync();

    let saved: tf.io.ModelArtifacts | undefined;
    await m.save(tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
    const json = JSON.stringify(saved!.modelTopology);
    expect(json).toContain('"class_name":"CovPool"');

    const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
    const layer = loaded.getLayer('gcp');
    expect(layer).toBeInstanceOf(CovPool);
    expect(layer.getConfig()).toMatchObject({ method: 'svd-pade', degree: 20, eps: 1e-9, dataFormat: 'channelsFirst', vectorize: true });
    expect(maxRel((loaded.predict(x) as tf.Tensor).dataSync(), y0)).toBe(0);

    // toJSON / modelFromJSON too, after switching the method: the config is the current one.
    (m.getLayer('gcp') as ReturnType<typeof covPoolLayer>).setMethod({ method: 'mpa-lya', degree: 4 });
    const again = await tf.models.modelFromJSON({ modelTopology: m.toJSON(null, false) as tf.io.ModelJSON['modelTopology'] });
    expect(again.getLayer('gcp').getConfig()).toMatchObject({ method: 'mpa-lya', degree: 4, dataFormat: 'channelsFirst' });
    expect(again.getLayer('gcp').getConfig()).not.toHaveProperty('eps');
    tf.dispose([x]);
    m.dispose();
    loaded.dispose();
    again.dispose();
  });

  // Plain @tensorflow/tfjs in Node has no file:// handler (tfjs-node brings it); docs/tfjs.md shows
  // a handler of a few fs calls. The same here: to files, back, and the same predictions.
  test('saved to files and loaded with plain @tensorflow/tfjs (no tfjs-node), the model predicts the same', async () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const fs = require('fs') as typeof import('fs');
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const path = require('path') as typeof import('path');
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const os = require('os') as typeof import('os');
    await expect(tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 1 })] }).save('file:///nonexistent')).rejects.toThrow(/Cannot find any save handlers/);
    const fileIO = (dir: string): tf.io.IOHandler => ({
      save: async (a) => {
        const parts = Array.isArray(a.weightData) ? a.weightData : [a.weightData as ArrayBuffer];
        fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.concat(parts.map((b) => Buffer.from(b))));
        const { weightSpecs, weightData, ...rest } = a;
        fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({ ...rest, weightsManifest: [{ paths: ['weights.bin'], weights: weightSpecs }] }));
        return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(a) };
      },
      load: async () => {
        const { weightsManifest, ...rest } = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
        const bin = fs.readFileSync(path.join(dir, 'weights.bin'));
        return { ...rest, weightSpecs: weightsManifest[0].weights, weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length) };
      },
    });
    const m = tf.sequential();
    m.add(tf.layers.conv2d({ inputShape: [6, 6, 3], filters: 7, kernelSize: 3, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 8 }) }));
    m.add(covPoolLayer({ method: 'svd-lyap', eps: 1e-10, name: 'gcp' }));
    m.add(tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotUniform({ seed: 9 }) }));
    const x = tf.randomNormal([3, 6, 6, 3], 0, 1, 'float32', 10);
    const y0 = Float32Array.from((m.predict(x) as tf.Tensor).dataSync());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-tfjs-save-'));
    try {
      await m.save(fileIO(dir));
      expect(fs.readdirSync(dir).sort()).toEqual(['model.json', 'weights.bin']);
      expect(fs.readFileSync(path.join(dir, 'model.json'), 'utf8')).toContain('"class_name":"CovPool"');
      const loaded = await tf.loadLayersModel(fileIO(dir));
      expect(loaded.getLayer('gcp')).toBeInstanceOf(CovPool);
      expect(loaded.getLayer('gcp').getConfig()).toMatchObject({ method: 'svd-lyap', eps: 1e-10, dataFormat: 'channelsLast', vectorize: true });
      expect(Array.from((loaded.predict(x) as tf.Tensor).dataSync())).toEqual(Array.from(y0));
      loaded.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      x.dispose();
      m.dispose();
    }
  });

  test('in a functional tf.model, with NHWC input', () => {
    const input = tf.input({ shape: [5, 5, 6] });
    const gcp = new CovPool({ method: 'svd-trunc', kappa: 1e6 });
    const out = tf.layers.dense({ units: 2 }).apply(gcp.apply(input)) as tf.SymbolicTensor;
    expect(gcp.apply(input) as tf.SymbolicTensor).toHaveProperty('shape', [null, 21]);
    const m = tf.model({ inputs: input, outputs: out });
    const y = m.predict(tf.randomNormal([3, 5, 5, 6], 0, 1, 'float32', 8)) as tf.Tensor;
    expect(y.shape).toEqual([3, 2]);
    m.dispose();
  });
});

describe('wasm backend', () => {
  test('gives the cpu backend\'s output and gradient', async () => {
    let reason = '';
    try {
      require('@tensorflow/tfjs-backend-wasm');
      if (!(await tf.setBackend('wasm'))) reason = 'tf.setBackend("wasm") returned false';
    } catch (e) {
      reason = (e as Error).message;
    }
    if (reason) {
      console.warn(`wasm backend test skipped: the backend did not initialize here: ${reason}`);
      await tf.setBackend('cpu');
      return;
    }
    const data = reluFeatures(2, 5, 12, 41, 'float32').data as Float32Array;
    const dyData = randomF32(2 * 15, 42);
    const run = () => {
      const x = tf.tensor4d(data, [2, 3, 4, 5]);
      const dy = tf.tensor2d(dyData, [2, 15]);
      const r = tfGrad((v) => covPoolOp(v, 'svd-pade'), x, dy);
      tf.dispose([x, dy]);
      return r;
    };
    try {
      expect(tf.getBackend()).toBe('wasm');
      const w = run();
      await tf.setBackend('cpu');
      const c = run();
      expect(maxRel(w.y, c.y)).toBe(0);
      expect(maxRel(w.g, c.g)).toBe(0);
    } finally {
      await tf.setBackend('cpu');
    }
  });
});
