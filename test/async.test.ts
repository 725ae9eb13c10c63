// The async API: promise-returning calls run on the libuv thread pool, give results bitwise equal
// to their sync twins (same kernels, deterministic per-item work), are safe to run many at once,
// keep the event loop free, tolerate a state being shared or disposed while a backward runs, and
// do not leak native memory over many forward/backward cycles.
import { spawnSync } from 'child_process';
import * as path from 'path';
import {
  CovPoolLayer,
  METHODS,
  Method,
  Tensor,
  covpool,
  covpoolBackward,
  covpoolBackwardSync,
  covpoolSync,
  eigh,
  eighSync,
  sqrtm,
  sqrtmBackward,
  sqrtmBackwardSync,
  sqrtmSync,
  triuvec,
  triuvecBackward,
  triuvecBackwardSync,
  triuvecSync,
} from '../lib';
import { detach, errorName, gaussian, reluFeatures, rng, sameBits, withSpectrum } from './helpers';

// Backward frees its state unless asked to keep it; these tests run several backwards per state.
const keep = { retainState: true };

type DType = 'float32' | 'float64';

/** A random output gradient shaped like `like` (seeded, same dtype). */
function randomLike(like: Tensor, seed: number): Tensor {
  const g = gaussian(rng(seed));
  const data = like.dtype === 'float32' ? new Float32Array(like.size) : new Float64Array(like.size);
  for (let i = 0; i < data.length; i++) data[i] = g();
  return new Tensor(data, like.shape);
}

function spdBatch(B: number, C: number, dtype: DType, seed: number): Tensor {
  const data = dtype === 'float32' ? new Float32Array(B * C * C) : new Float64Array(B * C * C);
  for (let b = 0; b < B; b++) data.set(withSpectrum(Array.from({ length: C }, (_, i) => 0.1 + i * (1 + b)), seed + b), b * C * C);
  return new Tensor(data, [B, C, C]);
}

function expectSameTensor(a: Tensor, b: Tensor): void {
  expect(a.shape).toEqual(b.shape);
  expect(a.dtype).toBe(b.dtype);
  expect(sameBits(a.data, b.data)).toBe(true);
}

describe('async results are bitwise equal to sync results', () => {
  const cases: [Method, DType][] = [];
  for (const m of METHODS) for (const d of ['float32', 'float64'] as const) cases.push([m, d]);

  test.each(cases)('layer forward and backward, %s, %s', async (method, dtype) => {
    const x = reluFeatures(4, 8, 20, 101, dtype);
    const layer = new CovPoolLayer(method);
    const s = layer.forwardSync(x);
    const a = await layer.forward(x);
    expectSameTensor(a.output, s.output);
    const dy = randomLike(s.output, 7);
    const gs = layer.backwardSync(s.state, dy, keep); // kept for the crossing check below
    const ga = await layer.backward(a.state, dy);
    expectSameTensor(ga, gs);
    // And crossing: the async gradient from the sync state equals the sync one.
    expectSameTensor(await layer.backward(s.state, dy), gs);
    expect(ga.shape).toEqual([4, 8, 20]);
  });

  test.each(['float32', 'float64'] as const)('the ops (covpool, triuvec, eigh, sqrtm and their backwards), %s', async (dtype) => {
    const x = reluFeatures(3, 6, 9, 102, dtype);
    const A = covpoolSync(x);
    expectSameTensor(await covpool(x), A);
    const dA = randomLike(A, 8);
    expectSameTensor(await covpoolBackward(x, dA), covpoolBackwardSync(x, dA));
    expectSameTensor(await triuvec(A), triuvecSync(A));
    const dy = randomLike(triuvecSync(A), 9);
    expectSameTensor(await triuvecBackward(dy, 6), triuvecBackwardSync(dy, 6));
    const es = eighSync(A);
    const ea = await eigh(A);
    expectSameTensor(ea.values, es.values);
    expectSameTensor(ea.vectors, es.vectors);
    for (const m of ['ns', 'svd-taylor', 'mpa-lya'] as const) {
      const s = sqrtmSync(A, m);
      const a = await sqrtm(A, m);
      expectSameTensor(a.output, s.output);
      const dS = randomLike(s.output, 10);
      expectSameTensor(await sqrtmBackward(a.state, dS), sqrtmBackwardSync(s.state, dS));
    }
  });
});

test('repeated calls give bitwise equal results (sync and async)', async () => {
  for (const method of ['ns', 'svd-pade', 'mpa-lya'] as const) {
    const x = reluFeatures(6, 10, 30, 103, 'float64');
    const layer = new CovPoolLayer(method);
    const first = layer.forwardSync(x);
    const dy = randomLike(first.output, 11);
    const g0 = layer.backwardSync(first.state, dy);
    for (let k = 0; k < 3; k++) {
      const s = layer.forwardSync(x);
      const a = await layer.forward(x);
      expectSameTensor(s.output, first.output);
      expectSameTensor(a.output, first.output);
      expectSameTensor(layer.backwardSync(s.state, dy), g0);
      expectSameTensor(await layer.backward(a.state, dy), g0);
    }
  }
});

test('16 concurrent async forward+backward calls over different inputs and methods each equal their sync result', async () => {
  const jobs = Array.from({ length: 16 }, (_, i) => {
    const method = METHODS[i % METHODS.length];
    const dtype: DType = i % 2 ? 'float32' : 'float64';
    const layer = new CovPoolLayer({ method, vectorize: i % 3 !== 0 } as never);
    const x = reluFeatures(3 + (i % 4), 6 + (i % 5), 12 + i, 200 + i, dtype);
    const s = layer.forwardSync(x);
    const dy = randomLike(s.output, 300 + i);
    const g = layer.backwardSync(s.state, dy, keep); // used again in the mixed batch below
    return { layer, x, dy, s, g };
  });
  // All forwards in flight at once, then all backwards at once (each from its async state).
  const fwd = await Promise.all(jobs.map((j) => j.layer.forward(j.x)));
  const bwd = await Promise.all(jobs.map((j, i) => j.layer.backward(fwd[i].state, j.dy)));
  jobs.forEach((j, i) => {
    expectSameTensor(fwd[i].output, j.s.output);
    expectSameTensor(bwd[i], j.g);
  });
  // Forward and backward calls interleaved in one batch of promises.
  const mixed = await Promise.all(jobs.flatMap((j) => [j.layer.forward(j.x).then((r) => r.output), j.layer.backward(j.s.state, j.dy)]));
  jobs.forEach((j, i) => {
    expectSameTensor(mixed[2 * i], j.s.output);
    expectSameTensor(mixed[2 * i + 1], j.g);
  });
});

describe('the event loop stays responsive', () => {
  // A forward that takes well over 100 ms of CPU. A blocking implementation would let no timer run
  // before its promise settles: the promise callback (a microtask) would see ticks === 0.
  const x = reluFeatures(96, 64, 128, 104, 'float64');

  async function ticksDuring<T>(run: () => Promise<T>): Promise<{ ticks: number; value: T }> {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      const value = await run().then((v) => v);
      return { ticks, value };
    } finally {
      clearInterval(timer);
    }
  }

  test('control: the same work done synchronously lets no timer fire (what the checks below detect)', async () => {
    const layer = new CovPoolLayer('ns');
    const { ticks } = await ticksDuring(() => Promise.resolve(layer.forwardSync(x)));
    expect(ticks).toBe(0);
  });

  test('timers fire while an async forward of a large batch runs', async () => {
    const layer = new CovPoolLayer('ns');
    const { ticks, value } = await ticksDuring(() => layer.forward(x));
    expect(value.output.shape).toEqual([96, (64 * 65) / 2]);
    expect(ticks).toBeGreaterThanOrEqual(1); // the loop ran during the call (the sync control gets 0)
  });

  test('timers fire while an async backward runs', async () => {
    const layer = new CovPoolLayer('svd');
    const { output, state } = layer.forwardSync(x);
    const dy = randomLike(output, 12);
    const { ticks, value } = await ticksDuring(() => layer.backward(state, dy));
    expect(value.shape).toEqual([96, 64, 128]);
    expect(ticks).toBeGreaterThanOrEqual(1); // the loop ran during the call (the sync control gets 0)
  });
});

describe('states shared between calls', () => {
  test('one state used by two concurrent backward calls gives the sync result twice', async () => {
    for (const method of ['ns', 'svd', 'mpa-lya', 'svd-newton'] as const) {
      const layer = new CovPoolLayer(method);
      const x = reluFeatures(8, 12, 40, 105, 'float64');
      const { output, state } = layer.forwardSync(x);
      const dy1 = randomLike(output, 13);
      const dy2 = randomLike(output, 14);
      const ref1 = layer.backwardSync(state, dy1, keep);
      const ref2 = layer.backwardSync(state, dy2, keep);
      const [g1, g2, g1b] = await Promise.all([layer.backward(state, dy1, keep), layer.backward(state, dy2, keep), layer.backward(state, dy1, keep)]);
      expectSameTensor(g1, ref1);
      expectSameTensor(g2, ref2);
      expectSameTensor(g1b, ref1);
    }
  });

  test('disposing a state while its async backward runs does not crash: the backward completes or rejects cleanly', async () => {
    const layer = new CovPoolLayer('ns');
    const x = reluFeatures(32, 32, 64, 106, 'float64');
    const { output, state } = layer.forwardSync(x);
    const dy = randomLike(output, 15);
    const ref = layer.backwardSync(state, dy, keep);
    const pending = [layer.backward(state, dy, keep), layer.backward(state, dy, keep)];
    state.dispose(); // while both run on the thread pool
    expect(state.disposed).toBe(true);
    expect(state.bytes).toBe(0);
    const settled = await Promise.allSettled(pending);
    for (const s of settled) {
      if (s.status === 'fulfilled') expectSameTensor(s.value, ref);
      else expect(errorName(s.reason)).toMatch(/Error$/);
    }
    // Later calls see the disposed state.
    await expect(layer.backward(state, dy)).rejects.toThrow(/disposed/);
  });

  test('the inputs are copied when an async call starts: mutating or detaching them afterwards does not change the result', async () => {
    const layer = new CovPoolLayer('svd-pade');
    const x = reluFeatures(16, 16, 48, 107, 'float64');
    const ref = layer.forwardSync(new Tensor(x.data.slice(), x.shape));
    const dy = randomLike(ref.output, 16);
    const gRef = layer.backwardSync(ref.state, new Tensor(dy.data.slice(), dy.shape), keep);

    const p = layer.forward(x);
    x.data.fill(NaN); // would poison the result (or be rejected) if read later
    const r = await p;
    expectSameTensor(r.output, ref.output);

    const q = layer.backward(ref.state, dy);
    detach(dy.data);
    expectSameTensor(await q, gRef);
  });
});

test('memory: 300 forward/backward cycles with dispose() do not grow rss beyond a generous bound', async () => {
  const layer = new CovPoolLayer('ns');
  const x = reluFeatures(4, 48, 128, 108, 'float64');
  const warm = layer.forwardSync(x);
  const dy = randomLike(warm.output, 17);
  layer.backwardSync(warm.state, dy, keep);
  const perState = warm.state.bytes;
  warm.state.dispose();
  // Sensitivity: leaking every state would add far more than the bound below.
  const bound = 200 * 1024 * 1024;
  expect(perState * 300).toBeGreaterThan(bound);

  const rss0 = process.memoryUsage().rss;
  let sawBytes = 0;
  for (let i = 0; i < 300; i++) {
    const { output, state } = i % 2 ? await layer.forward(x) : layer.forwardSync(x);
    const g = i % 2 ? await layer.backward(state, dy, keep) : layer.backwardSync(state, dy, keep); // dispose() below frees it
    expect(g.size).toBe(x.size);
    expect(output.size).toBe(4 * (48 * 49) / 2);
    const bytes = state.bytes;
    if (bytes !== perState) expect(bytes).toBe(perState); // (guarded: keep the loop fast)
    sawBytes += bytes > 0 ? 1 : 0;
    state.dispose();
    if (state.bytes !== 0) expect(state.bytes).toBe(0);
  }
  expect(sawBytes).toBe(300);
  const growth = process.memoryUsage().rss - rss0;
  expect(growth).toBeLessThan(bound);
});

// Regression test, fixed bug (process abort): when a worker thread that has async covpool calls in flight is
// terminated (worker.terminate(), or process.exit() inside the worker), the calls complete after
// the worker's environment began shutting down; TaskWorker::OnOK/OnError (native/addon/addon.cpp)
// then create JS values (result arrays, error objects), N-API refuses, node-addon-api throws a
// Napi::Error out of the completion callback and the WHOLE process dies with
// "terminate called after throwing an instance of 'Napi::Error'" (SIGABRT), main thread included.
// Checked in a child process (so jest survives) with the raw addon, independent of the TS layer.
/** Runs, in a child node process, 3 workers that each start 8 async covpool calls, post a message
 * (after the calls finished when `awaitCalls`, at once otherwise) and are then terminated. */
function workerTerminationChild(awaitCalls: boolean) {
  const script = `
    const { Worker } = require('worker_threads');
    const src = \`
      const addon = require('node-gyp-build')(process.cwd());
      const x = new Float64Array(16 * 64 * 128).map((_, i) => i % 7);
      const calls = [];
      for (let i = 0; i < 8; i++) calls.push(addon.covpool(x, 16, 64, 128, true));
      const post = () => require('worker_threads').parentPort.postMessage('go');
      if (${awaitCalls}) Promise.all(calls).then(post); else post();
    \`;
    (async () => {
      for (let k = 0; k < 3; k++) {
        const w = new Worker(src, { eval: true });
        await new Promise((resolve, reject) => { w.on('message', () => w.terminate()); w.on('error', reject); w.on('exit', resolve); });
      }
      console.log('main thread survived');
    })();
  `;
  const r = spawnSync(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..'), encoding: 'utf8', timeout: 60000 });
  return { signal: r.signal, status: r.status, stderr: r.stderr, stdout: r.stdout };
}

test('control: workers whose async calls have finished can be terminated (the harness below works)', () => {
  expect(workerTerminationChild(true)).toEqual({ signal: null, status: 0, stderr: '', stdout: 'main thread survived\n' });
});

test('terminating a worker thread while its async calls are in flight does not abort the process', () => {
  expect(workerTerminationChild(false)).toEqual({ signal: null, status: 0, stderr: '', stdout: 'main thread survived\n' });
});
