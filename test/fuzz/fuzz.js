#!/usr/bin/env node
// Fuzzer: random and adversarial calls at every exported function of covpool (sync and async) and
// at the raw native entry points, each case in its own child process. A case passes when the call
// either returns finite results or fails with covpool's own error; it fails on a crash (signal,
// abort, non-zero exit), a hang (timeout), a silent non-finite output, or any other exception
// (a V8 RangeError from a typed-array constructor, a TypeError from reading a property of
// undefined, ...). Cases are derived from (seed, index) alone, so every failure can be replayed.
//
//   node test/fuzz/fuzz.js [--seed S] [--cases N] [--jobs J] [--timeout MS]   # a run (needs `npm run build`)
//   node test/fuzz/fuzz.js --seed S --case K                                   # replay one case, verbosely
// COVPOOL_FUZZ_INJECT=crash|hang|nonfinite|foreign-error makes every case fail that way (self-test).
//
// Plain JavaScript over the compiled package (dist/), so that children start without a compiler.
// Children get COVPOOL_MAX_BYTES=2e9 (unless set): accepted work stays small on any CI machine.
'use strict';
const { spawn } = require('child_process');
const path = require('path');

const ROOT = path.join(__dirname, '..', '..');

// ---- deterministic randomness ---------------------------------------------------------------

function mulberry32(a) {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function caseRandom(seed, index) {
  const r = mulberry32((Math.imul(seed, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca77)) >>> 0);
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const chance = (p) => r() < p;
  const int = (lo, hi) => lo + Math.floor(r() * (hi - lo + 1));
  return { r, pick, chance, int };
}

// ---- the value pools --------------------------------------------------------------------------

const METHODS = ['ns', 'svd', 'svd-trunc', 'svd-topn', 'svd-taylor', 'svd-pade', 'svd-pi', 'svd-newton', 'svd-lyap', 'mpa-lya'];
const WEIRD_NUMBERS = [0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 30, 2 ** 31, 2 ** 32, 2 ** 53, 1e300, -0, 46341, 65536];
const WEIRD_VALUES = ['3', '', 'float16', null, undefined, true, {}, [], [3], () => 1, Symbol('s'), 10n];
const FILLS = ['normal', 'normal', 'normal', 'relu', 'zeros', 'nan', 'inf', 'huge', 'tiny', 'negative', 'constant'];
const OPTION_KEYS = ['iterations', 'degree', 'n', 'kappa', 'eps', 'precision', 'normalization', 'device', 'p', 'q', 'checkPsd', 'vectorize', 'bogus'];

const OWN_KEYS = {
  ns: ['iterations', 'checkPsd', 'precision', 'normalization'], svd: ['eps', 'precision'], 'svd-trunc': ['kappa', 'eps'],
  'svd-topn': ['n', 'eps'], 'svd-taylor': ['degree', 'eps'], 'svd-pade': ['degree', 'p', 'q', 'eps'], 'svd-pi': ['iterations', 'eps'],
  'svd-newton': ['iterations', 'precision'], 'svd-lyap': ['eps', 'precision'], 'mpa-lya': ['degree', 'iterations', 'checkPsd', 'normalization'],
};

function dim(g) {
  if (g.chance(0.93)) return g.pick([1, 1, 2, 3, 4, 5, 8, 12, 16, 33]);
  return g.pick(WEIRD_NUMBERS.concat(WEIRD_VALUES));
}
function shapeFor(g, rank) {
  return Array.from({ length: rank }, () => dim(g));
}
function optionValue(g, key) {
  if (g.chance(0.5))
    switch (key) {
      case 'iterations': return g.pick([1, 3, 5, 8, 19, 100, 101, 1000]);
      case 'degree': return g.pick([0, 1, 5, 12, 13, 50, 100, 1000, 1001]);
      case 'n': return g.pick([1, 2, 3, 4, 100]);
      case 'kappa': return g.pick([1e-3, 1, 1e10]);
      case 'eps': return g.pick([1e-300, 1e-12, 1, 1e100, 1e300]);
      case 'precision': return g.pick(['float32', 'float64']);
      case 'normalization': return g.pick(['none', 'trace', 'frobenius']);
      case 'device': return g.pick(['cpu', 'auto', 'cuda', 'cuda:1']);
      case 'p': case 'q': return Array.from({ length: g.int(0, 6) }, () => g.r() * 2 - 1);
      case 'checkPsd': case 'vectorize': return g.chance(0.5);
    }
  return g.pick(WEIRD_NUMBERS.concat(WEIRD_VALUES));
}
function methodSpec(g) {
  if (g.chance(0.3)) return g.chance(0.9) ? g.pick(METHODS) : g.pick(['NS', 'sv', '', 5, null]);
  const o = { method: g.chance(0.95) ? g.pick(METHODS) : g.pick(WEIRD_VALUES) };
  const k = g.chance(0.4) ? 0 : g.int(1, 3);
  for (let i = 0; i < k; i++) {
    const key = g.chance(0.7) ? g.pick(OWN_KEYS[o.method] || OPTION_KEYS) : g.pick(OPTION_KEYS);
    o[key] = optionValue(g, key);
  }
  return o;
}

// A data array: usually a float array of the right length, sometimes anything else.
function dataFor(g, count, dtype) {
  const len = Number.isSafeInteger(count) && count >= 0 && count <= 2e6 ? count : g.int(0, 64);
  const roll = g.r();
  let length = len;
  if (roll < 0.08) length = Math.max(0, len + g.pick([-1, 1, 7]));
  if (roll >= 0.08 && roll < 0.12) return g.pick([new Int32Array(len), new Uint8Array(len), Array.from({ length: len }, (_, i) => (i % 2 ? 'a' : 1)), { length: g.pick([len, 2 ** 32, -1, NaN]) }, null, 'data']);
  const a = dtype === 'float64' ? new Float64Array(length) : new Float32Array(length);
  const fill = g.pick(FILLS);
  for (let i = 0; i < length; i++) {
    let v = g.r() * 2 - 1;
    if (fill === 'relu') v = Math.max(0, v);
    else if (fill === 'zeros') v = 0;
    else if (fill === 'constant') v = 0.5;
    else if (fill === 'huge') v *= g.pick([1e19, 1e30, 3e38, 1e200]);
    else if (fill === 'tiny') v *= 1e-40;
    else if (fill === 'negative') v = -Math.abs(v);
    a[i] = v;
  }
  if (length && (fill === 'nan' || fill === 'inf')) a[g.int(0, length - 1)] = fill === 'nan' ? NaN : -Infinity;
  if (length && g.chance(0.03)) structuredClone(a.buffer, { transfer: [a.buffer] }); // detached
  return a;
}
function product(shape) {
  return shape.reduce((p, d) => (typeof d === 'number' ? p * d : NaN), 1);
}
function tensorFor(g, cp, shape, dtype) {
  dtype = dtype || (g.chance(0.5) ? 'float32' : 'float64');
  const data = dataFor(g, product(shape), dtype);
  if (g.chance(0.05)) return g.pick(WEIRD_VALUES);
  if (g.chance(0.3)) return { data, shape, dtype: g.chance(0.9) ? dtype : 'int8' };
  try {
    return new cp.Tensor(data, shape);
  } catch {
    return { data, shape }; // let the op under test see (and reject) it
  }
}
function features(g, cp, dtype) {
  return tensorFor(g, cp, shapeFor(g, g.chance(0.9) ? g.pick([3, 4]) : g.pick([0, 2, 5])), dtype);
}
function covariances(g, cp, dtype) {
  const x = features(g, cp, dtype);
  if (g.chance(0.7)) {
    try {
      return cp.covpoolSync(x);
    } catch {
      /* fall through: square but arbitrary */
    }
  }
  const B = dim(g), C = dim(g);
  return tensorFor(g, cp, [B, C, g.chance(0.9) ? C : dim(g)], dtype);
}
// A state: usually genuine, sometimes disposed, released, forged or something else entirely.
function stateFor(g, cp, kind) {
  const roll = g.r();
  if (roll < 0.1) return g.pick(WEIRD_VALUES.concat([Object.create(cp.BackwardState.prototype), { handle: {} }]));
  try {
    const r = kind === 'layer' || roll < 0.2 ? new cp.CovPoolLayer(methodSpec(g)).forwardSync(features(g, cp)) : cp.sqrtmSync(covariances(g, cp), methodSpec(g));
    if (roll < 0.3) r.state.dispose();
    return r;
  } catch {
    return g.pick(WEIRD_VALUES);
  }
}
function gradFor(g, cp, fwd) {
  if (fwd && fwd.output && g.chance(0.85)) {
    const o = fwd.output;
    return tensorFor(g, cp, g.chance(0.9) ? o.shape.slice() : shapeFor(g, o.shape.length), g.chance(0.9) ? o.dtype : undefined);
  }
  return tensorFor(g, cp, shapeFor(g, g.int(2, 3)));
}

// Options of an async call: none, or an AbortSignal (aborted before, soon after, or never) and a
// progress callback (sometimes junk), merged into `extra` (an op's own options).
function callOptions(g, extra) {
  if (g.chance(0.6)) return extra;
  const o = { ...(extra || {}) };
  if (g.chance(0.7)) {
    const ac = new AbortController();
    const when = g.pick(['before', 'soon', 'later', 'never']);
    if (when === 'before') ac.abort();
    else if (when === 'soon') queueMicrotask(() => ac.abort());
    else if (when === 'later') setTimeout(() => ac.abort(), g.int(0, 20));
    o.signal = g.chance(0.95) ? ac.signal : g.pick(WEIRD_VALUES);
  }
  if (g.chance(0.5)) o.onProgress = g.chance(0.8) ? () => undefined : g.pick(WEIRD_VALUES);
  return o;
}
function dataFormatOption(g) {
  if (g.chance(0.5)) return undefined;
  return { dataFormat: g.chance(0.85) ? g.pick(['channelsFirst', 'channelsLast']) : g.pick(['NHWC', 5, null]) };
}

// ---- the calls --------------------------------------------------------------------------------
// Each target builds its arguments from the generator and returns [syncCall, asyncCall | null,
// checkOutput]: checkOutput false for calls that return the caller's data or documented
// non-finite values (backwardCoefficientsSync before replacement).

const TARGETS = {
  covpool: (g, cp) => {
    const x = features(g, cp); const f = dataFormatOption(g); const o = callOptions(g, f);
    return [() => cp.covpoolSync(x, f), () => cp.covpool(x, o), true];
  },
  covpoolBackward: (g, cp) => {
    const x = features(g, cp); const A = (() => { try { return cp.covpoolSync(x); } catch { return null; } })();
    const dA = A && g.chance(0.8) ? tensorFor(g, cp, A.shape.slice(), A.dtype) : covariances(g, cp);
    const o = callOptions(g);
    return [() => cp.covpoolBackwardSync(x, dA), () => cp.covpoolBackward(x, dA, o), true];
  },
  triuvec: (g, cp) => { const s = covariances(g, cp); const o = callOptions(g); return [() => cp.triuvecSync(s), () => cp.triuvec(s, o), true]; },
  triuvecBackward: (g, cp) => {
    const C = dim(g); const B = dim(g);
    const dy = tensorFor(g, cp, [B, typeof C === 'number' ? (C * (C + 1)) / 2 : dim(g)]);
    const c = g.chance(0.9) ? C : g.pick(WEIRD_NUMBERS);
    const o = callOptions(g);
    return [() => cp.triuvecBackwardSync(dy, c), () => cp.triuvecBackward(dy, c, o), true];
  },
  eigh: (g, cp) => { const a = covariances(g, cp); const o = callOptions(g); return [() => cp.eighSync(a), () => cp.eigh(a, o), true]; },
  sqrtm: (g, cp) => { const a = covariances(g, cp); const m = methodSpec(g); const o = callOptions(g); return [() => cp.sqrtmSync(a, m), () => cp.sqrtm(a, m, o), true]; },
  sqrtmBackward: (g, cp) => {
    const f = stateFor(g, cp, 'sqrtm'); const st = f && f.state ? f.state : f; const dS = gradFor(g, cp, f);
    const opt = g.chance(0.8) ? undefined : { retainState: optionValue(g, 'checkPsd') };
    return [() => cp.sqrtmBackwardSync(st, dS, opt), () => cp.sqrtmBackward(st, dS, callOptions(g, opt)), true];
  },
  layerForward: (g, cp) => {
    let layer; try { layer = new cp.CovPoolLayer({ ...Object(methodSpec(g)), ...dataFormatOption(g) }); } catch { layer = new cp.CovPoolLayer('ns'); }
    const x = features(g, cp); const o = callOptions(g);
    return [() => layer.forwardSync(x), () => layer.forward(x, o), true];
  },
  layerBackward: (g, cp) => {
    const layer = new cp.CovPoolLayer(g.pick(METHODS));
    let f; try { f = g.chance(0.85) ? layer.forwardSync(features(g, cp)) : stateFor(g, cp, 'layer'); } catch { f = stateFor(g, cp, 'layer'); }
    const st = f && f.state ? f.state : f; const dy = gradFor(g, cp, f);
    const opt = g.chance(0.8) ? undefined : g.pick([{ retainState: true }, { retainState: 'yes' }, 'x', null]);
    return [() => layer.backwardSync(st, dy, opt), () => layer.backward(st, dy, opt && typeof opt === 'object' ? callOptions(g, opt) : opt), true];
  },
  layerMisc: (g, cp) => {
    const spec = g.chance(0.5) ? methodSpec(g) : { ...methodSpec(g), vectorize: optionValue(g, 'vectorize') };
    const shape = shapeFor(g, g.int(2, 5)); const dt = g.pick(['float32', 'float64', 'int8', 3]); const C = dim(g);
    return [() => { const l = new cp.CovPoolLayer(spec); l.outputShape(shape); l.resolvedOptions(dt, C); l.setMethod(methodSpec(g)); return l.options; }, null, false];
  },
  resolveOptions: (g, cp) => { const m = methodSpec(g); const dt = g.pick(['float32', 'float64', 'x']); const C = dim(g); return [() => cp.resolveOptions(m, dt, C), null, true]; },
  backwardCoefficients: (g, cp) => {
    const l = tensorFor(g, cp, shapeFor(g, g.int(1, 3)), 'float64'); const m = methodSpec(g); const replace = g.chance(0.7) ? true : optionValue(g, 'checkPsd');
    return [() => cp.backwardCoefficientsSync(l, m, replace), null, replace === true];
  },
  padeCoefficients: (g, cp) => {
    const kind = g.pick(['geometric', 'sqrt', 'taylor', 1]); const d = g.chance(0.5) ? g.int(0, 1200) : g.pick(WEIRD_NUMBERS.concat(WEIRD_VALUES));
    return [() => cp.padeCoefficients(kind, d), null, true];
  },
  triangleSize: (g, cp) => { const c = g.chance(0.5) ? g.int(1, 1000) : g.pick(WEIRD_NUMBERS.concat(WEIRD_VALUES)); return [() => cp.triangleSize(c), null, true]; },
  tensor: (g, cp) => {
    const shape = g.chance(0.8) ? shapeFor(g, g.int(0, 4)) : g.pick(WEIRD_VALUES);
    const data = dataFor(g, Array.isArray(shape) ? product(shape) : 4, g.pick(['float32', 'float64']));
    const plain = g.chance(0.3) && data && typeof data === 'object' && data.length < 1e5 ? Array.from(data) : data;
    const dtype = g.chance(0.8) ? undefined : g.pick(['float32', 'float64', 'int32', 5]);
    return [() => {
      const t = g.chance(0.5) ? new cp.Tensor(plain, shape, dtype) : cp.Tensor.from({ data: plain, shape, dtype });
      t.reshape(g.chance(0.7) ? [t.size] : shapeFor(g, 2));
      t.get(...shapeFor(g, t.rank).map((d) => (typeof d === 'number' ? d - 1 : d)));
      return cp.Tensor.zeros(g.chance(0.8) ? t.shape : shapeFor(g, 2));
    }, null, false];
  },
  schedule: (g, cp) => {
    const phases = Array.from({ length: g.int(0, 3) }, (_, i) => ({ from: g.chance(0.8) ? i * 5 : g.pick(WEIRD_NUMBERS.concat(WEIRD_VALUES)), method: methodSpec(g) }));
    const epoch = g.chance(0.8) ? g.int(0, 20) : g.pick(WEIRD_NUMBERS);
    return [() => {
      const s = g.chance(0.5) ? new cp.MethodSchedule(phases) : cp.MethodSchedule.hybrid(epoch, methodSpec(g), methodSpec(g));
      s.apply(new cp.CovPoolLayer('ns'), epoch);
      return s.at(epoch);
    }, null, false];
  },
  budget: (g, cp) => {
    const v = g.chance(0.5) ? g.int(1, 1e9) : g.pick(WEIRD_NUMBERS.concat(WEIRD_VALUES)); const x = features(g, cp);
    return [() => { cp.setMaxBytes(v); return cp.covpoolSync(x); }, null, true];
  },
  memory: (g, cp) => {
    const x = features(g, cp); const layer = new cp.CovPoolLayer(g.pick(METHODS));
    return [() => {
      const r = layer.forwardSync(x); // may throw (a bad x): then stats are not reached
      const before = cp.memoryStats(); const freed = cp.emptyCache(); const after = cp.memoryStats();
      r.state.dispose();
      return [before, freed, after, cp.memoryStats()];
    }, null, true];
  },
  stateMembers: (g, cp) => {
    const f = stateFor(g, cp, g.pick(['layer', 'sqrtm'])); const st = f && f.state ? f.state : f;
    return [() => { if (!(st instanceof cp.BackwardState)) throw new TypeError('covpool: (not a state: nothing to call)'); const b = st.bytes; st.dispose(); st.dispose(); return [b, st.disposed]; }, null, true];
  },
  // The raw addon, called the way no wrapper would: it must re-check everything itself.
  native: (g, cp) => {
    const addon = require(path.join(ROOT, 'dist', 'lib', 'native.js')).native();
    const names = ['covpool', 'covpoolBackward', 'triuvec', 'triuvecBackward', 'eigh', 'sqrtm', 'layer', 'backward', 'coefficients', 'stateInfo', 'disposeState', 'resolveOptions', 'padeCoefficients', 'maxBytes'];
    const name = g.pick(names);
    const arg = () => {
      const roll = g.r();
      if (roll < 0.35) return dataFor(g, g.pick([0, 1, 4, 9, 27, 64, 256]), g.pick(['float32', 'float64']));
      if (roll < 0.65) return dim(g);
      if (roll < 0.75) return methodSpec(g);
      if (roll < 0.85) { const s = stateFor(g, cp, 'sqrtm'); return s && s.state ? s.state.handle : s; }
      return g.pick([true, false].concat(WEIRD_VALUES));
    };
    const args = Array.from({ length: g.int(0, 7) }, arg);
    const isAsync = g.chance(0.5);
    if (args.length) args[args.length - 1] = isAsync;
    return [() => addon[name](...args), null, name !== 'coefficients'];
  },
};

// ---- checking one case ------------------------------------------------------------------------

function nonFinite(v, depth = 0) {
  if (depth > 5 || v === null || v === undefined) return null;
  if (typeof v === 'number') return Number.isFinite(v) ? null : String(v);
  if (v instanceof Float32Array || v instanceof Float64Array) {
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return `${v[i]} at index ${i}`;
    return null;
  }
  if (Array.isArray(v)) { for (const e of v) { const r = nonFinite(e, depth + 1); if (r) return r; } return null; }
  if (typeof v === 'object') {
    const keys = v.constructor === Object ? Object.keys(v) : ['data', 'output', 'values', 'vectors'];
    for (const k of keys) if (k in v) { const r = nonFinite(v[k], depth + 1); if (r) return `${k}: ${r}`; }
  }
  return null;
}
function isOwnError(e) {
  return Object.prototype.toString.call(e) === '[object Error]' && /^(TypeError|RangeError|Error|AbortError)$/.test(e.name) && /^covpool(\/tfjs)?: /.test(e.message);
}

function describeCase(seed, index) {
  const g = caseRandom(seed, index);
  const names = Object.keys(TARGETS);
  return { target: names[Math.floor(g.r() * names.length)], mode: g.r() < 0.5 ? 'sync' : 'async' };
}

// Runs case (seed, index) in this process; resolves to a verdict.
async function runCase(seed, index) {
  const cp = require(ROOT);
  const { target, mode } = describeCase(seed, index);
  const g = caseRandom(seed, index ^ 0x5bd1e995);
  let call;
  try {
    call = TARGETS[target](g, cp);
  } catch (e) {
    return { ok: false, target, mode, why: `the case could not be built: ${e && e.stack}` };
  }
  const [syncCall, asyncCall, checkOutput] = call;
  const useAsync = mode === 'async' && asyncCall;
  let result;
  try {
    // Fault injection, for the fuzzer's own test: each must be reported as a failure.
    const inject = process.env.COVPOOL_FUZZ_INJECT;
    if (inject === 'crash') process.kill(process.pid, 'SIGSEGV');
    if (inject === 'hang') for (;;);
    if (inject === 'nonfinite') return { ok: !nonFinite(Float32Array.of(1, NaN)), target, mode, why: 'injected non-finite output (1, NaN)' };
    if (inject === 'foreign-error') null.x; // eslint-disable-line no-unused-expressions
    if (useAsync) {
      const p = asyncCall();
      if (!(p instanceof Promise)) return { ok: false, target, mode, why: 'the async call did not return a promise' };
      result = await p;
    } else {
      result = syncCall();
    }
  } catch (e) {
    if (isOwnError(e)) return { ok: true, target, mode: useAsync ? 'async' : 'sync', outcome: 'error', message: e.message.slice(0, 160) };
    return { ok: false, target, mode, why: `not a covpool error: ${e && e.name}: ${e && e.message}`, stack: e && e.stack };
  }
  const bad = checkOutput ? nonFinite(result) : null;
  if (bad) return { ok: false, target, mode, why: `returned a non-finite value without an error (${bad})` };
  return { ok: true, target, mode: useAsync ? 'async' : 'sync', outcome: 'returned' };
}

// ---- the driver -------------------------------------------------------------------------------

function runChild(seed, index, timeoutMs) {
  return new Promise((resolve) => {
    const env = { ...process.env };
    if (!env.COVPOOL_MAX_BYTES) env.COVPOOL_MAX_BYTES = '2000000000';
    const child = spawn(process.execPath, [...process.execArgv, __filename, '--child', String(seed), String(index)], { cwd: ROOT, env });
    let out = '', err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const t0 = Date.now();
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - t0;
      const last = out.trim().split('\n').pop() || '';
      let verdict = null;
      try { verdict = JSON.parse(last); } catch { /* no verdict: crashed */ }
      if (signal === 'SIGKILL' && ms >= timeoutMs) resolve({ ok: false, why: `hang: no result within ${timeoutMs} ms`, ms });
      else if (signal || code !== 0 || !verdict) resolve({ ok: false, why: `crashed (exit code ${code}, signal ${signal})`, stderr: err.slice(-2000), ms });
      else resolve({ ...verdict, ms, stderr: /ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:/.test(err) ? err.slice(-2000) : undefined });
    });
  });
}

function argValue(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

async function main() {
  if (process.argv[2] === '--child') {
    const v = await runCase(Number(process.argv[3]), Number(process.argv[4]));
    process.stdout.write('\n' + JSON.stringify(v) + '\n');
    return;
  }
  const seed = argValue('--seed', Date.now() % 1e9);
  const timeout = argValue('--timeout', 60000);
  if (process.argv.includes('--case')) {
    const index = argValue('--case', 0);
    console.log(JSON.stringify({ seed, index, ...describeCase(seed, index) }));
    const v = await runChild(seed, index, timeout);
    console.log(JSON.stringify(v, null, 2));
    process.exitCode = v.ok && !v.stderr ? 0 : 1;
    return;
  }
  const cases = argValue('--cases', 200);
  const jobs = argValue('--jobs', Math.max(1, Math.min(4, require('os').cpus().length)));
  const t0 = Date.now();
  const failures = [];
  const tally = {};
  let next = 0;
  async function worker() {
    while (next < cases) {
      const index = next++;
      const v = await runChild(seed, index, timeout);
      const key = `${v.target || describeCase(seed, index).target}/${v.outcome || 'failed'}`;
      tally[key] = (tally[key] || 0) + 1;
      if (!v.ok || v.stderr) failures.push({ index, ...describeCase(seed, index), ...v, replay: `node test/fuzz/fuzz.js --seed ${seed} --case ${index}` });
    }
  }
  await Promise.all(Array.from({ length: jobs }, worker));
  const summary = { seed, cases, jobs, seconds: (Date.now() - t0) / 1e3, failures: failures.length, outcomes: tally };
  console.log(JSON.stringify(summary));
  for (const f of failures) console.log(JSON.stringify(f));
  process.exitCode = failures.length ? 1 : 0;
}

main();
