// Results of 64 KiB and more are views of covpool's own memory, handed to JS without a copy; the
// block goes back to covpool's host cache when the array is collected (Node runs that finalizer on
// the event loop's next turn). What must hold: a result never changes after it is returned (its
// block is not reused while JS holds it), the blocks JS holds are counted and bounded
// (COVPOOL_RESULT_ARRAYS_MB, beyond which results are copied), and collected ones come back.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { CovPoolLayer, covpoolSync, memoryStats, sqrtmSync } from '../lib';
import { reluFeatures } from './helpers';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('a large result keeps its values while later calls run (its memory is not handed out again)', async () => {
  const layer = new CovPoolLayer('ns');
  const x1 = reluFeatures(16, 64, 49, 1, 'float32'); // output 16 x 2080 float32: 133 KB
  const { output, state } = layer.forwardSync(x1);
  expect(output.data.byteLength).toBeGreaterThanOrEqual(64 << 10);
  const before = Float32Array.from(output.data as Float32Array);
  expect(memoryStats().host.resultArrayBytes).toBeGreaterThanOrEqual(output.data.byteLength);
  // Other inputs, same shapes: every later result asks the cache for a block of the same size.
  for (let i = 0; i < 20; i++) {
    const other = layer.forwardSync(reluFeatures(16, 64, 49, 100 + i, 'float32'));
    other.state.dispose();
    const async = await layer.forward(reluFeatures(16, 64, 49, 200 + i, 'float32'));
    async.state.dispose();
    expect(layer.backwardSync(state, async.output, { retainState: true }).data.length).toBe(16 * 64 * 49);
    await turn();
  }
  expect(Array.from(output.data)).toEqual(Array.from(before));
  // The same result again, bit for bit: nothing wrote into the held block.
  expect(Array.from(layer.forwardSync(x1).output.data)).toEqual(Array.from(before));
  state.dispose();
});

test('results of every size come back whole: small ones are copied, large ones handed over', () => {
  for (const C of [8, 40, 96]) {
    const x = reluFeatures(3, C, 30, C, 'float64');
    const a = covpoolSync(x); // 3 x C x C float64: 1.5 KB to 221 KB
    const s = sqrtmSync(a, 'svd');
    expect(a.data.length).toBe(3 * C * C);
    expect(s.output.data.length).toBe(3 * C * C);
    // S S = A per item, whichever way the arrays were made.
    for (let b = 0; b < 3; b++) {
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < C; i++)
        for (let j = 0; j < C; j++) {
          let v = 0;
          for (let k = 0; k < C; k++) v += s.output.data[b * C * C + i * C + k] * s.output.data[b * C * C + k * C + j];
          worst = Math.max(worst, Math.abs(v - a.data[b * C * C + i * C + j]));
          scale = Math.max(scale, Math.abs(a.data[b * C * C + i * C + j]));
        }
      expect(worst / scale).toBeLessThan(1e-10);
    }
  }
});

// In a child process: the garbage collector exposed, and COVPOOL_RESULT_ARRAYS_MB read at start.
function child(limitMb: string | undefined, script: string): Record<string, number | boolean> {
  const env = { ...process.env };
  delete env.COVPOOL_RESULT_ARRAYS_MB;
  if (limitMb !== undefined) env.COVPOOL_RESULT_ARRAYS_MB = limitMb;
  const prelude = `
    const c = require('./dist/lib');
    const held = () => c.memoryStats().host.resultArrayBytes;
    const turn = () => new Promise((r) => setImmediate(r));
    const x = new Float32Array(32 * 64 * 49).map((_, i) => Math.max(0, Math.sin(i * 12.9898) * 4));
    const layer = new c.CovPoolLayer('ns');
    const out = {};`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', `${prelude}\n(async () => { ${script}; console.log(JSON.stringify(out)); })()`], {
    cwd: path.join(__dirname, '..'),
    env,
    encoding: 'utf8',
    timeout: 60000,
  });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string);
}

const loop = `
  const results = [];
  for (let i = 0; i < 40; i++) results.push(layer.forwardSync({ data: x, shape: [32, 64, 49] }).output.data); // 266 KB each
  out.heldWhileKept = held();
  out.allEqual = results.every((r) => r.length === results[0].length && r.every((v, k) => v === results[0][k]));
  results.length = 0;
  for (let i = 0; i < 4; i++) { global.gc(); await turn(); }
  out.heldAfterCollect = held();`;

test('result arrays JS holds are counted, and collected ones go back to the cache', () => {
  const r = child(undefined, loop);
  expect(r.allEqual).toBe(true);
  expect(r.heldWhileKept).toBe(40 * 32 * 2080 * 4); // every one handed over (10.6 MB < 64 MB)
  expect(r.heldAfterCollect).toBe(0);
});

test('beyond COVPOOL_RESULT_ARRAYS_MB results are copied; 0 copies every one', () => {
  const bounded = child('1', loop);
  expect(bounded.allEqual).toBe(true);
  expect(bounded.heldWhileKept).toBe(3 * 32 * 2080 * 4); // three of 266 KB fit under 1 MiB, the rest were copied
  expect(bounded.heldAfterCollect).toBe(0);
  const off = child('0', loop);
  expect(off.allEqual).toBe(true);
  expect(off.heldWhileKept).toBe(0);
});

test('a loop that yields to the event loop between steps gets blocks back while it runs', () => {
  const r = child(
    undefined,
    `let most = 0, drops = 0, last = 0;
     for (let i = 0; i < 600; i++) {
       const { state } = layer.forwardSync({ data: x, shape: [32, 64, 49] });
       state.dispose();
       const now = held();
       if (now < last) drops++;
       last = now;
       most = Math.max(most, now);
       await turn();
     }
     out.most = most;
     out.drops = drops;`,
  );
  // 600 results of 266 KB (160 MB): were none given back, the count would climb to the bound
  // (64 MiB) and stay there; it falls whenever collected arrays come back.
  expect(r.drops).toBeGreaterThan(0);
  expect(r.most).toBeGreaterThan(0);
  expect(r.most).toBeLessThan(64 << 20);
});
