// The singular-regime experiment (examples/singular-gcp): its hand-written backward pass against
// finite differences, and a seconds-long configuration of the whole pipeline (runs, summary,
// JSON, table, plots) checked for sane output.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Config, loadMnist, split, trainRun } from '../examples/singular-gcp/experiment';
import { Network } from '../examples/singular-gcp/model';
import { writeResults } from '../examples/singular-gcp/report';

const all = loadMnist();

describe('singular-GCP network: backward against finite differences', () => {
  // C = 64 > N = 49: singular covariances, as in the experiment. Newton-Schulz in float64: its
  // backward is the exact derivative of what it computes, so the whole loss is differentiable
  // and central differences must agree with the hand-written backward of every layer.
  const B = 4;
  const data = split(all, { train: B, test: 0 });
  const net = new Network(64, { method: 'ns' }, 3);
  net.gcpDtype = 'float64';
  // The biases start at 0, and MNIST's blank background feeds 0 into conv1 (and then conv2): those
  // pre-activations sit exactly on ReLU's kink, where a central difference of a bias averages the
  // two one-sided slopes. Biases off zero, as after the first training step, avoid that.
  for (const name of ['conv1.bias', 'conv2.bias']) net.params.find((q) => q.name === name)!.value.forEach((_, i, a) => (a[i] = 0.01 * (1 + (i % 3))));
  const loss = (): number => {
    const f = net.forward(data.train.images, data.train.labels, true);
    f.cache.state?.dispose();
    return f.loss;
  };
  const f = net.forward(data.train.images, data.train.labels, true);
  const stats = net.backward(f.cache, data.train.labels);

  it('reports a finite gradient', () => {
    expect(stats.nonFinite).toBe(0);
    expect(Number.isFinite(stats.paramGradNorm) && stats.paramGradNorm > 0).toBe(true);
    expect(stats.gcpGradNorm).toBeGreaterThan(0);
  });

  it.each(['conv1', 'conv1.bias', 'conv2', 'conv2.bias', 'conv3', 'bn.gamma', 'bn.beta', 'fc', 'fc.bias'])('%s: directional derivative', (name) => {
    const p = net.params.find((q) => q.name === name)!;
    // A fixed random direction over the whole tensor.
    let s = 12345 + name.length;
    const dir = Float64Array.from(p.value, () => {
      s = (s * 1103515245 + 12345) % 2147483648;
      return s / 2147483648 - 0.5;
    });
    const analytic = p.grad.reduce((a, g, i) => a + g * dir[i], 0);
    const h = 1e-6;
    const saved = Float64Array.from(p.value);
    p.value.forEach((v, i) => (p.value[i] = saved[i] + h * dir[i]));
    const up = loss();
    p.value.forEach((v, i) => (p.value[i] = saved[i] - h * dir[i]));
    const down = loss();
    p.value.set(saved);
    const numeric = (up - down) / (2 * h);
    expect(Math.abs(analytic)).toBeGreaterThan(1e-8);
    expect(Math.abs(numeric - analytic)).toBeLessThan(1e-5 * Math.abs(analytic) + 1e-9);
  });
});

describe('singular-GCP experiment: the CI configuration', () => {
  const cfg: Config = {
    train: 160,
    test: 200,
    epochs: 2,
    batch: 16,
    channels: 128,
    optimizer: 'adam',
    lr: 0.005,
    seeds: [1],
    runs: ['ns', 'svd', 'ns>svd-pade'],
    switchEpoch: 1,
    curvePoints: 4,
  };
  const data = split(all, cfg);
  const records = cfg.runs.map((run) => trainRun(cfg, run, 1, data));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-singular-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  writeResults(dir, cfg, records, { command: 'test', quick: true, complete: true, environment: {}, wallSeconds: 0 });

  it('trains every run to the end with finite losses and gradients', () => {
    for (const r of records) {
      expect(r.error).toBeUndefined();
      expect(r.epochs).toHaveLength(cfg.epochs);
      expect(r.steps).toBe(cfg.epochs * (cfg.train / cfg.batch));
      for (const e of r.epochs) {
        expect(Number.isFinite(e.trainLoss)).toBe(true);
        expect(Number.isFinite(e.testLoss)).toBe(true);
        expect(e.testAccuracy).toBeGreaterThanOrEqual(0);
        expect(e.testAccuracy).toBeLessThanOrEqual(1);
        expect(Number.isFinite(e.gcpGradNormMedian) && Number.isFinite(e.paramGradNormMax)).toBe(true);
      }
      expect(r.lossCurve.every(Number.isFinite)).toBe(true);
    }
    // Ten classes: at least one method must learn something in 20 steps.
    expect(Math.max(...records.map((r) => r.finalTestAccuracy ?? 0))).toBeGreaterThan(0.2);
  });

  it('gives every method the same start: the hybrid equals ns until it switches', () => {
    const ns = records[0].epochs[0];
    const hybrid = records[2].epochs[0];
    expect(hybrid.method).toBe('ns');
    expect(hybrid.trainLoss).toBe(ns.trainLoss);
    expect(hybrid.testAccuracy).toBe(ns.testAccuracy);
    expect(records[2].epochs[1].method).toBe('svd-pade');
    // svd starts from the same weights and batches, so its first loss differs only through the method.
    expect(Math.abs((records[1].lossCurve[0] - records[0].lossCurve[0]) / records[0].lossCurve[0])).toBeLessThan(0.05);
  });

  it('writes well-formed JSON, a table and readable plots', () => {
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'singular-gcp.json'), 'utf8'));
    expect(json.complete).toBe(true);
    expect(json.runs).toHaveLength(3);
    expect(json.summary.map((s: { run: string }) => s.run)).toEqual(cfg.runs);
    for (const s of json.summary) {
      expect(s.completed).toBe(1);
      expect(s.accuracyMean).toBeCloseTo(records[cfg.runs.indexOf(s.run)].finalTestAccuracy as number, 12);
    }
    // Paired with ns on the same seed.
    expect(json.summary[0].deltaVsNsMean).toBeNull();
    expect(json.summary[1].deltaVsNsMean).toBeCloseTo((records[1].finalTestAccuracy as number) - (records[0].finalTestAccuracy as number), 12);
    const md = fs.readFileSync(path.join(dir, 'singular-gcp.md'), 'utf8');
    expect(md.split('\n').filter((l) => l.startsWith('| ')).length).toBe(2 + cfg.runs.length);
    expect(md).toContain('hybrid: ns, then svd-pade from epoch 2');
    for (const name of ['accuracy', 'loss', 'gradnorm']) {
      const svg = fs.readFileSync(path.join(dir, `singular-gcp-${name}.svg`), 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
      expect((svg.match(/<path /g) ?? []).length).toBe(cfg.runs.length);
      expect(svg).not.toMatch(/NaN|Infinity/);
    }
  });
});
