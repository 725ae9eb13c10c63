// Reliability under abuse (issue 11): no call aborts or crashes the process, sync loops stay
// bounded in memory, no non-finite value is returned silently, sizes are priced before anything
// is allocated, and odd inputs get messages that say exactly what was received. Reproductions that
// crashed the process run in a child process, so a regression fails the test instead of jest.
import { spawnSync } from 'child_process';
import * as path from 'path';
import {
  BackwardState,
  CovPoolLayer,
  MethodSchedule,
  backwardCoefficientsSync,
  triangleSize,
  Tensor,
  covpoolBackwardSync,
  covpoolSync,
  eighSync,
  maxBytes,
  padeCoefficients,
  setMaxBytes,
  sqrtm,
  sqrtmBackwardSync,
  sqrtmSync,
} from '../lib';
import { native } from '../lib/native';
import { expectReject, expectThrow, reluFeatures, withSpectrum } from './helpers';

const root = path.join(__dirname, '..');

/** Runs a script in a child node process with the raw addon as `addon`; returns its outcome. */
function child(script: string, opts: { args?: string[]; env?: Record<string, string> } = {}) {
  const src = `const addon = process.env.COVPOOL_ADDON ? require(process.env.COVPOOL_ADDON) : require('node-gyp-build')(process.cwd());\n${script}`;
  const r = spawnSync(process.execPath, [...(opts.args ?? []), '-e', src], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60000,
    env: { ...process.env, ...opts.env },
  });
  return { signal: r.signal, status: r.status, stdout: r.stdout.trim(), stderr: r.stderr };
}
/** States alive in the process (read through a probe state, disposed again). */
function liveStates(): number {
  const probe = sqrtmSync(new Tensor(Float64Array.of(1), [1, 1, 1]), 'svd').state;
  const n = native().stateInfo(probe.handle).liveStates;
  probe.dispose();
  return n - 1;
}

describe('1. no public call aborts the process', () => {
  test('padeCoefficients with a huge degree is a RangeError (it allocated ~16 GB and V8 aborted)', () => {
    const r = child(`try { addon.padeCoefficients('geometric', 1e9); console.log('returned'); } catch (e) { console.log(e.name + ': ' + e.message); }`);
    expect(r).toMatchObject({ signal: null, status: 0 });
    expect(r.stdout).toMatch(/^RangeError: covpool: Pade degree for 1\/\(1-r\) must be an integer in \[1, 1000\], got 1000000000$/);
    expectThrow(() => padeCoefficients('geometric', 1e9), 'RangeError', /geometric Pade degree must be an integer in \[1, 1000\], got 1000000000/);
    expectThrow(() => padeCoefficients('geometric', 2e7), 'RangeError', /\[1, 1000\]/);
    expect(padeCoefficients('geometric', 1000).p).toHaveLength(1001); // the bound itself is allowed
  });
});

describe('2. memory stays bounded in synchronous loops without dispose()', () => {
  const x = reluFeatures(8, 32, 20, 5, 'float32');

  test('a backward frees its state: 300 sync forward/backward steps leave no state alive', () => {
    const layer = new CovPoolLayer('ns');
    const before = liveStates();
    let last: BackwardState | undefined;
    for (let i = 0; i < 300; i++) {
      const { output, state } = layer.forwardSync(x);
      layer.backwardSync(state, output);
      last = state;
    }
    // <=, not ==: states dropped by earlier tests may be swept (freed) during the loop, whenever the
    // garbage collector happens to find them; what must not happen is growth.
    expect(liveStates()).toBeLessThanOrEqual(before);
    expect(last!.disposed).toBe(true);
    expect(last!.bytes).toBe(0);
  });

  test('retainState keeps a state for further backwards; the last plain backward frees it; reuse then says why it failed', async () => {
    const layer = new CovPoolLayer('svd-pade');
    const { output, state } = layer.forwardSync(x);
    const g1 = layer.backwardSync(state, output, { retainState: true });
    expect(state.disposed).toBe(false);
    const g2 = await layer.backward(state, output, { retainState: true });
    expect(Array.from(g2.data)).toEqual(Array.from(g1.data));
    const g3 = await layer.backward(state, output); // frees it (the running call keeps its own hold)
    expect(Array.from(g3.data)).toEqual(Array.from(g1.data));
    expect(state.disposed).toBe(true);
    expectThrow(() => layer.backwardSync(state, output), 'Error', /freed by the backward that used it; pass \{ retainState: true \}/);
    await expectReject(() => layer.backward(state, output), 'Error', /freed by the backward that used it/);
    const s = sqrtmSync(covpoolSync(x), 'ns');
    sqrtmBackwardSync(s.state, s.output);
    expect(s.state.disposed).toBe(true);
  });

  test('backward options are checked', () => {
    const layer = new CovPoolLayer('ns');
    const { output, state } = layer.forwardSync(x);
    expectThrow(() => layer.backwardSync(state, output, { retainState: 1 } as never), 'TypeError', /option 'retainState' must be a boolean, got 1/);
    expectThrow(() => layer.backwardSync(state, output, { retain: true } as never), 'RangeError', /unknown backward option 'retain'/);
    expectThrow(() => layer.backwardSync(state, output, 'yes' as never), 'TypeError', /backward options must be an object, got 'yes'/);
    expect(state.disposed).toBe(false); // refused calls do not free the state
    state.dispose();
  });

  test('states the program dropped are freed during a synchronous loop, without the event loop turning', () => {
    // 600 forwards whose states are never used, in one synchronous run; the garbage collector runs
    // (forced every 50 steps so the test does not depend on heap heuristics), but Node runs
    // finalizers only once the event loop turns, so before the fix all 600 states stayed alive.
    const r = child(
      `const st = () => addon.stateInfo(addon.sqrtm(new Float64Array([1]), 1, 1, { method: 'svd' }, false).state).liveStates;
       const x = new Float32Array(8 * 32 * 20).map((_, i) => Math.sin(i));
       const base = st();
       let peak = 0;
       for (let i = 0; i < 600; i++) {
         addon.layer(x, 8, 32, 20, { method: 'ns' }, true, false);
         if (i % 50 === 49) { global.gc(); peak = Math.max(peak, st() - base); }
       }
       console.log(JSON.stringify({ peak }));`,
      { args: ['--expose-gc'] },
    );
    expect(r).toMatchObject({ signal: null, status: 0 });
    expect(JSON.parse(r.stdout).peak).toBeLessThan(120);
  });

  test('states dropped by a program that makes no further forward are freed once the event loop turns', () => {
    // Through the package (dist/, as the fuzzer): its FinalizationRegistry asks the addon to sweep.
    const r = child(
      `const c = require('./dist/lib');
       const live = () => { const s = c.sqrtmSync(new c.Tensor(Float64Array.of(1), [1, 1, 1]), 'svd').state; const n = addonOf(s).stateInfo(s.handle).liveStates; s.dispose(); return n - 1; };
       const addonOf = (s) => s.addon;
       (function make() { const L = new c.CovPoolLayer('ns'); const x = new c.Tensor(new Float32Array(4 * 8 * 6).map((_, i) => Math.sin(i)), [4, 8, 6]); for (let i = 0; i < 20; i++) L.forwardSync(x); })();
       const before = live();
       global.gc();
       setTimeout(() => setImmediate(() => console.log(JSON.stringify({ before, after: live() }))), 50);`,
      { args: ['--expose-gc'] },
    );
    expect(r).toMatchObject({ signal: null, status: 0 });
    const { before, after } = JSON.parse(r.stdout);
    expect(before).toBeGreaterThanOrEqual(20);
    expect(after).toBe(0);
  });

  test('one clear warning when live states hold a quarter of the memory budget', () => {
    const layer = new CovPoolLayer('ns');
    const first = layer.forwardSync(x);
    const previous = setMaxBytes(Math.max(first.state.bytes * 8, 16e6)); // forwards still fit
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const kept: BackwardState[] = [first.state];
    try {
      const need = Math.ceil(maxBytes() / 4 / first.state.bytes) + 2;
      for (let i = 0; i < need + 5; i++) kept.push(layer.forwardSync(x).state);
      const ours = warn.mock.calls.filter((c) => (c[1] as { code?: string })?.code === 'COVPOOL_LIVE_STATES');
      expect(ours).toHaveLength(1);
      expect(String(ours[0][0])).toMatch(/covpool: \d+ backward states are alive, holding \d+ MB .*retainState.*dispose\(\)/);
    } finally {
      warn.mockRestore();
      setMaxBytes(previous);
      for (const s of kept) s.dispose();
    }
  });

  test('states alive when a worker thread exits are freed with its environment', () => {
    const r = child(`
      const { Worker } = require('worker_threads');
      const st = () => addon.stateInfo(addon.sqrtm(new Float64Array([1]), 1, 1, { method: 'svd' }, false).state).liveStates;
      const src = "const a = process.env.COVPOOL_ADDON ? require(process.env.COVPOOL_ADDON) : require('node-gyp-build')(process.cwd()); globalThis.keep = [];" +
        "for (let i = 0; i < 20; i++) keep.push(a.layer(new Float64Array(4 * 16 * 8).fill(1).map((v, j) => Math.sin(j)), 4, 16, 8, { method: 'ns' }, true, false).state);" +
        "require('worker_threads').parentPort.postMessage(a.stateInfo(keep[0]).liveStates);";
      const w = new Worker(src, { eval: true });
      w.on('message', (n) => { console.log('in worker ' + n); });
      w.on('exit', () => { global.gc(); console.log('after exit ' + st()); });`, { args: ['--expose-gc'] });
    expect(r).toMatchObject({ signal: null, status: 0 });
    const inWorker = Number(/in worker (\d+)/.exec(r.stdout)![1]);
    const after = Number(/after exit (\d+)/.exec(r.stdout)![1]);
    expect(inWorker).toBeGreaterThanOrEqual(20);
    expect(after).toBeLessThanOrEqual(2); // at most the probes' own states
  });
});

describe('3. no non-finite value is returned silently (checked after rounding to the output dtype)', () => {
  const f32 = (v: number[], shape: number[]) => new Tensor(Float32Array.from(v), shape);

  test('layer forward: svd with eps 1e100 on float32 features', () => {
    const layer = new CovPoolLayer({ method: 'svd', eps: 1e100 });
    expectThrow(() => layer.forwardSync(f32([0, 1, 2, 0, 1, 2], [1, 2, 3])), 'Error', /batch item 0: the layer output \(svd\) is not finite in float32/);
  });
  test('covpool and covpoolBackward with float32 features of 1e30', () => {
    const x = f32([0, 1e30, 0, -1e30, 2, 1e30, 0, 3], [2, 2, 2]);
    expectThrow(() => covpoolSync(x), 'Error', /batch item 0: the covariance is not finite in float32/);
    const dA = f32(Array(8).fill(3e38), [2, 2, 2]);
    expectThrow(() => covpoolBackwardSync(f32([0, 1, 2, 3, 4, 5, 6, 7], [2, 2, 2]), dA), 'Error', /batch item 0: the gradient w.r.t. the features is not finite in float32/);
  });
  test('sqrtmBackward: a float32 gradient that overflows only when rounded from float64', async () => {
    const a = new Tensor(Float32Array.from(withSpectrum([1e-6, 2e-6, 1], 3)), [1, 3, 3]);
    const dS = f32(Array(9).fill(3e38), [1, 3, 3]);
    expectThrow(() => sqrtmBackwardSync(sqrtmSync(a, 'svd').state, dS), 'Error', /batch item 0: the gradient \(svd\) is not finite in float32/);
    await expectReject(async () => sqrtmBackwardSync((await sqrtm(a, 'svd')).state, dS), 'Error', /not finite in float32/);
  });
  test('eigh of float32 matrices near the top of the range', () => {
    const a = f32([3e38, 3e38, 3e38, 3e38], [1, 2, 2]);
    expectThrow(() => eighSync(a), 'Error', /batch item 0: the eigen(values|vectors) is not finite in float32/);
  });
  test('helpers: triangleSize of a non-integer and svd-lyap coefficients of a negative eigenvalue (found by the fuzzer)', () => {
    expectThrow(() => triangleSize(NaN), 'RangeError', /C must be a non-negative integer, got NaN/);
    expectThrow(() => triangleSize('3' as never), 'RangeError', /got '3'/);
    const l = new Tensor(Float64Array.of(-1, 2), [1, 2], 'float64');
    expectThrow(() => backwardCoefficientsSync(l, 'svd-lyap'), 'Error', /batch item 0: the coefficient matrix is not finite in float64/);
    expect(backwardCoefficientsSync(l, 'svd-lyap', false).data.some((v) => Number.isNaN(v))).toBe(true); // before replacement: shown as is
  });
  test('the batch item named is the first bad one', () => {
    const x = f32([0, 1, 2, 3, 0, 1e30, 0, -1e30], [2, 2, 2]);
    expectThrow(() => covpoolSync(x), 'Error', /^covpool: batch item 1: the covariance is not finite/);
  });
});

// The refusals below must not depend on the machine: with its default (half the physical memory) a
// 64 GB machine would accept, and allocate, the 17 GB these inputs ask for.
function withBudget(bytes: number): void {
  let previous = 0;
  beforeAll(() => {
    previous = setMaxBytes(bytes);
  });
  afterAll(() => {
    setMaxBytes(previous);
  });
}

describe('4. sizes are priced before anything is allocated', () => {
  withBudget(8e9);
  test('covpool of [1, 65536, 3] (a 786 kB input asking for a 17 GB covariance) is refused at once', () => {
    const x = new Tensor(new Float32Array(65536 * 3), [1, 65536, 3]);
    const t0 = Date.now();
    expectThrow(() => covpoolSync(x), 'RangeError', /covpool of features \[1, 65536, 3\] would need 17\.\d GB of memory, over the budget of 8 GB/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
  test('an ns layer on [1, 65536, 1] is refused with the amount it asked for', () => {
    const x = new Tensor(new Float32Array(65536), [1, 65536, 1]);
    expectThrow(() => new CovPoolLayer('ns').forwardSync(x), 'RangeError', /the layer on features \[1, 65536, 1\] by ns would need \d+(\.\d+)? GB/);
  });
  test('iterations are bounded: ns with 1000 iterations is an option error, not 12 GB', () => {
    expectThrow(() => new CovPoolLayer({ method: 'ns', iterations: 1000 }), 'RangeError', /ns: option 'iterations' must be an integer in \[1, 100\], got 1000/);
    expectThrow(() => new CovPoolLayer({ method: 'svd-taylor', degree: 100000 }), 'RangeError', /\[0, 1000\]/);
  });
  test('setMaxBytes lowers the budget; an ordinary call over it is refused, and fits again after', () => {
    const x = reluFeatures(4, 16, 10, 3);
    const previous = setMaxBytes(1000);
    try {
      expectThrow(() => new CovPoolLayer('svd').forwardSync(x), 'RangeError', /would need \d+(\.\d+)? kB of memory, over the budget of 1 kB/);
      expectThrow(() => setMaxBytes(-1), 'RangeError', /positive integer number of bytes, got -1/);
    } finally {
      setMaxBytes(previous);
    }
    expect(new CovPoolLayer('svd').forwardSync(x).output.shape).toEqual([4, 136]);
  });
  test('COVPOOL_MAX_BYTES sets the default budget; by default it is half the physical memory', () => {
    expect(child(`console.log(addon.maxBytes())`, { env: { COVPOOL_MAX_BYTES: '123456789' } }).stdout).toBe('123456789');
    const total = require('os').totalmem();
    const dflt = Number(child(`console.log(addon.maxBytes())`, { env: { COVPOOL_MAX_BYTES: '' } }).stdout);
    expect(Math.abs(dflt - total / 2)).toBeLessThan(total * 0.01);
    expect(maxBytes()).toBe(8e9); // this block's setting
  });
});

describe('5. the native entry points re-check sizes (the caller is not trusted)', () => {
  test('element counts that wrap around (2^30 x 2^30 x 16 = 2^64) are a RangeError, not a SIGSEGV', () => {
    const r = child(`
      const tries = [
        () => addon.covpool(new Float32Array(0), 2 ** 30, 2 ** 30, 16, false),
        () => addon.layer(new Float32Array(0), 2 ** 30, 2 ** 30, 16, { method: 'ns' }, true, false),
        () => addon.sqrtm(new Float32Array(0), 2 ** 30, 2 ** 17, { method: 'svd' }, false),
        () => addon.eigh(new Float32Array(0), 2 ** 30, 2 ** 17, false),
        () => addon.triuvec(new Float32Array(0), 2 ** 30, 2 ** 17, false),
        () => addon.covpoolBackward(new Float32Array(0), new Float32Array(0), 2 ** 30, 2 ** 30, 16, false),
      ];
      for (const t of tries) { try { t(); console.log('returned'); } catch (e) { console.log(e.name + ': ' + e.message); } }`);
    expect(r).toMatchObject({ signal: null, status: 0 });
    const lines = r.stdout.split('\n');
    expect(lines).toHaveLength(6);
    for (const l of lines) expect(l).toMatch(/^RangeError: covpool: (.* is too large \(its size overflows\)|C must be at most 46340|.* would need .* over the budget)/);
  });
});

describe('6. smaller items', () => {
  withBudget(8e9);
  test('a Tensor from an array-like of huge length is refused before copying', () => {
    const t0 = Date.now();
    expectThrow(() => new Tensor({ length: 2 ** 32 } as never, [2 ** 32]), 'RangeError', /4294967296 elements would need 17179869184 bytes, over the memory budget of 8000000000 bytes/);
    expectThrow(() => new Tensor({ length: 5 } as never, [4]), 'RangeError', /shape \[4\] needs 4 elements but the data holds 5/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
  test('non-numeric arrays are rejected, naming the element', () => {
    expectThrow(() => new Tensor(['a', 'b'] as never, [2]), 'TypeError', /element 0 is 'a' \(a string\)/);
    expectThrow(() => new Tensor([1, null] as never, [2]), 'TypeError', /element 1 is null/);
    expect(Array.from(new Tensor([1, 2.5], [2], 'float64').data)).toEqual([1, 2.5]);
  });
  test('messages print the offending value unambiguously', () => {
    expectThrow(() => new CovPoolLayer({ method: 'ns', iterations: '5' } as never), 'RangeError', /option 'iterations' must be an integer in \[1, 100\], got '5'$/);
    expectThrow(() => new Tensor(new Float32Array(2), ['2'] as never), 'RangeError', /shape \['2'\] must hold non-negative integers \(got '2', a string\)/);
    expectThrow(() => new CovPoolLayer({ method: 'svd-trunc', kappa: '1' } as never), 'RangeError', /got '1'$/);
    expectThrow(() => new CovPoolLayer({ method: 5 } as never), 'RangeError', /unknown method 5;/);
    expectThrow(() => new CovPoolLayer({ method: 'svd', precision: ['float32'] } as never), 'RangeError', /got \['float32'\]$/);
  });
  test('schedule phases are checked before they are sorted (a symbol start threw a V8 TypeError; found by the fuzzer)', () => {
    expectThrow(() => new MethodSchedule([{ from: 0, method: 'ns' }, { from: Symbol('x') as never, method: 'svd' }]), 'RangeError', /phase start must be a non-negative integer, got Symbol\(x\)/);
    expectThrow(() => new MethodSchedule([{ from: 0, method: 'ns' }, null as never]), 'TypeError', /a schedule phase must be an object \{ from, method \}, got null/);
  });
  test('a forged state gets a message that says what it is', () => {
    const forged = Object.create(BackwardState.prototype) as BackwardState;
    expectThrow(() => new CovPoolLayer('ns').backwardSync(forged, new Tensor(new Float32Array(1), [1, 1])), 'TypeError', /got a BackwardState that no forward call made \(a copy, or Object.create/);
    expectThrow(() => forged.dispose(), 'TypeError', /no forward call made/);
  });

  describe('checkPsd: the opt-in check for indefinite inputs of ns and mpa-lya', () => {
    const indefinite = new Tensor(withSpectrum([-0.5, 1, 2, 3], 7), [1, 4, 4]);
    test('without it, ns silently returns a matrix whose square is not the input', () => {
      const s = sqrtmSync(indefinite, 'ns').output.data;
      const sq = Array.from({ length: 16 }, (_, k) => [0, 1, 2, 3].reduce((acc, j) => acc + s[Math.floor(k / 4) * 4 + j] * s[j * 4 + (k % 4)], 0));
      const err = Math.max(...sq.map((v, k) => Math.abs(v - indefinite.data[k])));
      expect(err).toBeGreaterThan(0.1);
    });
    test('with it, ns and mpa-lya reject the matrix, naming the batch item', async () => {
      const two = new Tensor(Float64Array.from([...withSpectrum([1, 2, 3, 4], 3), ...indefinite.data]), [2, 4, 4]);
      expectThrow(() => sqrtmSync(two, { method: 'ns', checkPsd: true }), 'Error', /batch item 1: the matrix is not positive semi-definite/);
      await expectReject(() => sqrtm(two, { method: 'mpa-lya', checkPsd: true }), 'Error', /batch item 1: .*not positive semi-definite/);
    });
    test('singular covariances (N < C, float32) pass the check', () => {
      const A = covpoolSync(reluFeatures(4, 24, 10, 9, 'float32'));
      expect(sqrtmSync(A, { method: 'ns', checkPsd: true }).state.options).toMatchObject({ checkPsd: true });
      expect(sqrtmSync(A, { method: 'mpa-lya', checkPsd: true }).output.shape).toEqual([4, 24, 24]);
    });
    test('it applies to ns and mpa-lya only', () => {
      expectThrow(() => sqrtmSync(indefinite, { method: 'svd', checkPsd: true } as never), 'RangeError', /option 'checkPsd' does not apply to method 'svd'/);
      expectThrow(() => sqrtmSync(indefinite, { method: 'ns', checkPsd: 'yes' } as never), 'TypeError', /option 'checkPsd' must be a boolean, got 'yes'/);
    });
  });
});
