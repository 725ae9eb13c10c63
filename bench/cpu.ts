// CPU benchmark: forward + backward of the full GCP layer (covpool -> square root -> triuvec) for
// every method on the CPU workloads of the design (cpu-l, cpu-s), plus the pieces (covariance
// pooling alone, eigendecomposition alone) and, for Newton-Schulz, its FLOP count against a GEMM
// floor. Optionally compares with the JSON of bench/torch/bench_layers.py (the same layers in PyTorch)
// run in the same session (bench/run-cpu.sh does both).
//
//   node dist/bench/cpu.js [--workloads cpu-l,cpu-s] [--methods ns,svd,...] [--repeats 9]
//                          [--warmup 3] [--warmup-ms 500] [--inputs 4] [--out file.json] [--anchor torch.json]
//                          [--machine machine.json] [--gemm-rate-f32 180] [--gemm-rate-f64 100] [--no-pieces]
//
// Threads: set COVPOOL_NUM_THREADS (default: the core count). The GEMM rate of the Newton-Schulz
// floor is measured on the machine the benchmark runs on: --machine names the JSON of
// bench/native/machine.cpp (bench/run-cpu.sh makes it right before covpool's timings), whose rate
// of n x n x n products at n = C, run on all the benchmark's threads at once, the floor then uses.
// Without it the floor falls back to a fixed rate (--gemm-rate-f32 / -f64, or
// COVPOOL_BENCH_GEMM_F32 / COVPOOL_BENCH_GEMM_F64; GFLOP/s), which the output says.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import {
  CovPoolLayer,
  METHODS,
  Method,
  Tensor,
  backendInfo,
  covpoolBackwardSync,
  covpoolSync,
  eighSync,
  triangleSize,
} from '../lib';

// ---- configuration --------------------------------------------------------------------------

interface Workload {
  name: string;
  B: number;
  C: number;
  N: number;
}

const WORKLOADS: Record<string, Workload> = {
  'cpu-l': { name: 'cpu-l', B: 16, C: 256, N: 196 },
  'cpu-s': { name: 'cpu-s', B: 64, C: 64, N: 49 },
};

interface Args {
  workloads: Workload[];
  methods: Method[];
  repeats: number;
  warmup: number;
  warmupMs: number;
  inputs: number;
  out: string;
  anchor?: string;
  machine?: string;
  gemmRateF32: number;
  gemmRateF64: number;
  pieces: boolean;
}

const USAGE = `usage: node dist/bench/cpu.js [options]
  --workloads LIST   comma-separated: cpu-l, cpu-s or BxCxN (default cpu-l,cpu-s)
  --methods LIST     comma-separated methods (default: all ${METHODS.length})
  --repeats N        timed repeats per method and workload, >= 5 (default 9)
  --warmup N         untimed warm-up runs, at least (default 3)
  --warmup-ms MS     and warm-up for at least this long (default 500; allocators need a few dozen
                     calls to reach the steady state of a training loop)
  --inputs N         distinct input sets cycled through the runs (default 4)
  --out FILE         JSON output (default bench/results/tmp-cpu-<date>.json)
  --anchor FILE      JSON of the PyTorch baseline (bench/torch/bench_layers.py) run in the same session
  --machine FILE     JSON of bench/native/machine.cpp: kernels in use and measured GEMM rates (the floor's)
  --gemm-rate-f32 R  GFLOP/s for the GEMM floor without --machine, float32 (default 180 or $COVPOOL_BENCH_GEMM_F32)
  --gemm-rate-f64 R  GFLOP/s, float64 (default 100 or $COVPOOL_BENCH_GEMM_F64)
  --no-pieces        skip the covpool / eigh piece timings
Threads: COVPOOL_NUM_THREADS (default: all cores).`;

function die(msg: string): never {
  process.stderr.write(`bench: ${msg}\n\n${USAGE}\n`);
  process.exit(2);
}

function positiveNumber(v: string | undefined, what: string): number {
  const x = Number(v);
  if (v === undefined || !Number.isFinite(x) || x <= 0) die(`${what} must be a positive number, got '${v}'`);
  return x;
}

function parseWorkload(s: string): Workload {
  if (WORKLOADS[s]) return WORKLOADS[s];
  const m = /^(\d+)x(\d+)x(\d+)$/.exec(s);
  if (!m) die(`unknown workload '${s}' (expected ${Object.keys(WORKLOADS).join(', ')} or BxCxN)`);
  return { name: s, B: +m[1], C: +m[2], N: +m[3] };
}

function parseArgs(argv: string[]): Args {
  const today = new Date().toISOString().slice(0, 10);
  const a: Args = {
    workloads: [WORKLOADS['cpu-l'], WORKLOADS['cpu-s']],
    methods: [...METHODS],
    repeats: 9,
    warmup: 3,
    warmupMs: 500,
    inputs: 4,
    out: path.join('bench', 'results', `tmp-cpu-${today}.json`),
    gemmRateF32: process.env.COVPOOL_BENCH_GEMM_F32 ? positiveNumber(process.env.COVPOOL_BENCH_GEMM_F32, 'COVPOOL_BENCH_GEMM_F32') : 180,
    gemmRateF64: process.env.COVPOOL_BENCH_GEMM_F64 ? positiveNumber(process.env.COVPOOL_BENCH_GEMM_F64, 'COVPOOL_BENCH_GEMM_F64') : 100,
    pieces: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const eq = flag.indexOf('=');
    const key = eq >= 0 ? flag.slice(0, eq) : flag;
    const val = (): string => (eq >= 0 ? flag.slice(eq + 1) : argv[++i]);
    switch (key) {
      case '--workloads':
        a.workloads = val().split(',').filter(Boolean).map(parseWorkload);
        break;
      case '--methods': {
        const ms = val().split(',').filter(Boolean);
        for (const m of ms) if (!(METHODS as readonly string[]).includes(m)) die(`unknown method '${m}' (expected ${METHODS.join(', ')})`);
        a.methods = ms as Method[];
        break;
      }
      case '--repeats':
        a.repeats = Math.round(positiveNumber(val(), '--repeats'));
        if (a.repeats < 5) die('--repeats must be at least 5');
        break;
      case '--warmup': {
        const v = val();
        a.warmup = Number(v);
        if (!Number.isInteger(a.warmup) || a.warmup < 0) die(`--warmup must be a non-negative integer, got '${v}'`);
        break;
      }
      case '--warmup-ms': {
        const v = val();
        a.warmupMs = Number(v);
        if (!Number.isFinite(a.warmupMs) || a.warmupMs < 0) die(`--warmup-ms must be a non-negative number, got '${v}'`);
        break;
      }
      case '--inputs':
        a.inputs = Math.round(positiveNumber(val(), '--inputs'));
        break;
      case '--out':
        a.out = val();
        break;
      case '--anchor':
        a.anchor = val();
        break;
      case '--machine':
        a.machine = val();
        break;
      case '--gemm-rate-f32':
        a.gemmRateF32 = positiveNumber(val(), '--gemm-rate-f32');
        break;
      case '--gemm-rate-f64':
        a.gemmRateF64 = positiveNumber(val(), '--gemm-rate-f64');
        break;
      case '--no-pieces':
        a.pieces = false;
        break;
      case '--threads':
        die('--threads is not an option: set COVPOOL_NUM_THREADS in the environment');
      case '-h':
      case '--help':
        process.stdout.write(USAGE + '\n');
        process.exit(0);
      default:
        die(`unknown option '${flag}'`);
    }
  }
  if (a.workloads.length === 0) die('no workloads');
  if (a.methods.length === 0) die('no methods');
  return a;
}

// ---- inputs ---------------------------------------------------------------------------------

/** mulberry32: deterministic, so every run (and every machine) times the same inputs. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussianArray(n: number, seed: number, relu: boolean): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    // Box-Muller, both outputs
    const rad = Math.sqrt(-2 * Math.log(1 - r()));
    const th = 2 * Math.PI * r();
    const g0 = rad * Math.cos(th);
    const g1 = rad * Math.sin(th);
    out[i] = relu ? Math.max(0, g0) : g0;
    if (i + 1 < n) out[i + 1] = relu ? Math.max(0, g1) : g1;
  }
  return out;
}

interface InputSet {
  x: Tensor; // features [B, C, N], float32, ReLU of a standard normal
  dy: Tensor; // output gradient [B, C(C+1)/2]
  dA: Tensor; // covariance gradient [B, C, C] (covpool piece)
  a32?: Tensor; // covariance matrices (eigh piece)
  a64?: Tensor;
}

function makeInputs(w: Workload, count: number): InputSet[] {
  const sets: InputSet[] = [];
  for (let k = 0; k < count; k++) {
    const seed = 1000 * (k + 1) + w.C;
    sets.push({
      x: new Tensor(gaussianArray(w.B * w.C * w.N, seed, true), [w.B, w.C, w.N]),
      dy: new Tensor(gaussianArray(w.B * triangleSize(w.C), seed + 1, false), [w.B, triangleSize(w.C)]),
      dA: new Tensor(gaussianArray(w.B * w.C * w.C, seed + 2, false), [w.B, w.C, w.C]),
    });
  }
  return sets;
}

// ---- timing ---------------------------------------------------------------------------------

const now = (): number => Number(process.hrtime.bigint()) / 1e6; // ms

interface Stats {
  median_ms: number;
  min_ms: number;
  max_ms: number;
  mean_ms: number;
  samples_ms: number[];
}

function stats(xs: number[]): Stats {
  const s = xs.slice().sort((p, q) => p - q);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return {
    median_ms: round(median),
    min_ms: round(s[0]),
    max_ms: round(s[s.length - 1]),
    mean_ms: round(s.reduce((p, q) => p + q, 0) / s.length),
    samples_ms: xs.map(round),
  };
}

function round(x: number, digits = 4): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

interface Warmup {
  runs: number; // at least this many untimed runs
  ms: number; // and at least this long
}

/**
 * Runs `step(set)` warmup + repeats times, cycling through the input sets so consecutive runs
 * never see the same data. `step` returns the timed phases of one run in ms.
 */
// One turn of the event loop, as a training loop takes between steps (it awaits its data, tfjs's
// model.fit awaits each batch): finalizers Node defers to the loop run there, among them the one
// that gives a collected result array's memory back to covpool (see memoryStats().host.resultArrayBytes).
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function timeSteps(sets: number, warmup: Warmup, repeats: number, step: (set: number) => number[]): Promise<Stats[]> {
  // Warm-up by count and by time: allocation paths (glibc's adaptive mmap threshold, V8 freeing
  // output buffers at GC) take a few dozen calls to settle into what a training loop sees.
  const w0 = now();
  let i = 0;
  for (; i < warmup.runs || (now() - w0 < warmup.ms && i < 200); i++) {
    step(i % sets);
    await turn();
  }
  warmup = { ...warmup, runs: i };
  const phases: number[][] = [];
  for (let r = 0; r < repeats; r++) {
    const t = step((warmup.runs + r) % sets); // timed inside step; the turn between steps is not
    t.forEach((v, i) => (phases[i] ??= []).push(v));
    await turn();
  }
  return phases.map(stats);
}

// ---- anchor ---------------------------------------------------------------------------------

interface AnchorFile {
  device?: string;
  torch?: string;
  rows: Array<Record<string, number | string>>;
}

function loadAnchor(file: string): AnchorFile {
  let j: AnchorFile;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8')) as AnchorFile;
  } catch (e) {
    die(`cannot read anchor JSON '${file}': ${(e as Error).message}`);
  }
  if (!j || !Array.isArray(j.rows)) die(`anchor JSON '${file}' has no 'rows' array`);
  return j;
}

function anchorRow(a: AnchorFile | undefined, w: Workload): Record<string, number | string> | undefined {
  return a?.rows.find((r) => r.B === w.B && r.C === w.C && r.N === w.N);
}

/** The anchor's key for a method at a precision: e.g. svd-pade_float64_fwdbwd_ms. */
function anchorKey(method: string, precision: string): string {
  return `${method}_${precision}_fwdbwd_ms`;
}

function anchorValue(row: Record<string, number | string> | undefined, key: string): number | null {
  const v = row?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

// ---- the machine --------------------------------------------------------------------------------

/** What bench/native/machine.cpp reports: the kernels in use and the measured GEMM rates. */
interface MachineFile {
  cpu_model?: string;
  cpu_avx512f?: boolean;
  openblas_core?: string;
  covpool_simd?: string;
  threads?: number;
  gemm_gflops?: Array<{ n: number; float32?: number; float64?: number } & Record<string, number>>;
}

function loadMachine(file: string): MachineFile {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as MachineFile;
  } catch (e) {
    die(`cannot read machine JSON '${file}': ${(e as Error).message}`);
  }
}

/** The measured rate of C x C x C products in this precision, or null. */
function measuredRate(m: MachineFile | undefined, C: number, precision: string): number | null {
  const row = m?.gemm_gflops?.find((r) => r.n === C);
  const v = row?.[precision === 'float64' ? 'float64' : 'float32'];
  return typeof v === 'number' && v > 0 ? v : null;
}

// ---- Newton-Schulz FLOP count ----------------------------------------------------------------

/**
 * The yardstick of the GEMM floor: full n x n x n GEMMs of the plain Newton-Schulz iteration and of
 * its reverse-mode backward, for T iterations (3T - 3 forward, 6T - 6 backward; T = 5: 12 + 24).
 * It stays fixed so that "at or below the floor" keeps one meaning across versions.
 */
function nsGemmCounts(T: number): { fwd: number; bwd: number } {
  if (T <= 0) return { fwd: 0, bwd: 0 };
  if (T === 1) return { fwd: 1, bwd: 2 };
  return { fwd: 3 * T - 3, bwd: 4 + 6 * (T - 2) + 2 };
}

/**
 * GEMM flops native/cpu/newton_schulz.h actually performs, in full-GEMM units: every product is
 * symmetric and formed as one triangle (half the flops), and the backward is the forward-mode
 * tangent, two half-products per product (see the header).
 */
function nsPerformedGemms(T: number): { fwd: number; bwd: number } {
  if (T <= 0) return { fwd: 0, bwd: 0 };
  return { fwd: (3 * T - 3 || 1) / 2, bwd: T === 1 ? 1 : (2 + 6 * (T - 2) + 4) / 2 };
}

interface NsFloor {
  workload: string;
  B: number;
  C: number;
  N: number;
  iterations: number;
  precision: string;
  gemms_fwd: number;
  gemms_bwd: number;
  gflop_ns_fwd: number;
  gflop_ns_bwd: number;
  gflop_cov_fwd: number;
  gflop_cov_bwd: number;
  gflop_total: number;
  gemms_performed_fwd: number;
  gemms_performed_bwd: number;
  gflop_performed: number;
  gemm_rate_gflops: number;
  /** Where the rate came from: measured on this machine (bench/native/machine.cpp) or a fixed one. */
  gemm_rate_source: string;
  floor_ms: number;
  measured_ms: number;
  measured_fwd_ms: number;
  measured_bwd_ms: number;
  achieved_gflops: number;
  achieved_fwd_gflops: number;
  achieved_bwd_gflops: number;
  ratio_to_floor: number;
  target_ratio: number;
  meets_target: boolean;
}

function nsFloor(w: Workload, T: number, precision: string, rate: number, rateSource: string, total: Stats, fwd: Stats, bwd: Stats): NsFloor {
  const { fwd: gf, bwd: gb } = nsGemmCounts(T);
  const n3 = 2 * w.C ** 3; // flops of one n x n x n GEMM
  const nsF = w.B * gf * n3;
  const nsB = w.B * gb * n3;
  const covF = w.B * w.C * w.C * w.N; // syrk: half of a C x C x N GEMM
  const covB = w.B * 2 * w.C * w.C * w.N; // (G + G^T) Xc: a full C x N x C GEMM
  const flops = nsF + nsB + covF + covB;
  const floor = (flops / (rate * 1e9)) * 1e3;
  const perf = nsPerformedGemms(T);
  const performed = w.B * (perf.fwd + perf.bwd) * n3 + covF + covB;
  return {
    workload: w.name,
    B: w.B,
    C: w.C,
    N: w.N,
    iterations: T,
    precision,
    gemms_fwd: gf,
    gemms_bwd: gb,
    gflop_ns_fwd: round(nsF / 1e9),
    gflop_ns_bwd: round(nsB / 1e9),
    gflop_cov_fwd: round(covF / 1e9),
    gflop_cov_bwd: round(covB / 1e9),
    gflop_total: round(flops / 1e9),
    gemms_performed_fwd: perf.fwd,
    gemms_performed_bwd: perf.bwd,
    gflop_performed: round(performed / 1e9),
    gemm_rate_gflops: rate,
    gemm_rate_source: rateSource,
    floor_ms: round(floor),
    measured_ms: total.median_ms,
    measured_fwd_ms: fwd.median_ms,
    measured_bwd_ms: bwd.median_ms,
    achieved_gflops: round(flops / 1e6 / total.median_ms, 2),
    achieved_fwd_gflops: round((nsF + covF) / 1e6 / fwd.median_ms, 2),
    achieved_bwd_gflops: round((nsB + covB) / 1e6 / bwd.median_ms, 2),
    ratio_to_floor: round(total.median_ms / floor, 3),
    target_ratio: 1,
    meets_target: total.median_ms / floor <= 1,
  };
}

// ---- output ---------------------------------------------------------------------------------

/** One JSON row of this benchmark's output (bench/combine.ts reads them back). */
export interface Row {
  workload: string;
  B: number;
  C: number;
  N: number;
  method: string;
  precision: string;
  options: Record<string, unknown>;
  median_ms: number | null;
  min_ms: number | null;
  max_ms: number | null;
  fwd_median_ms: number | null;
  bwd_median_ms: number | null;
  repeats: number;
  samples_ms: number[];
  anchor_key: string;
  anchor_ms: number | null;
  speedup_vs_anchor: number | null;
  meets_2x_target: boolean | null;
  /** Process CPU time (all threads) of one forward + backward, and the baseline's: robust to other load. */
  cpu_median_ms?: number;
  anchor_cpu_ms?: number | null;
  cpu_speedup_vs_anchor?: number | null;
  error?: string;
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padEnd(n) : s.padStart(n);
}

function fmt(x: number | null | undefined, d = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  return x >= 100 ? x.toFixed(Math.max(0, d - 1)) : x.toFixed(d + (x < 10 ? 1 : 0));
}

function printTable(rows: Row[], workloads: Workload[], methods: string[], haveAnchor: boolean): void {
  const colW = haveAnchor ? 30 : 10;
  let head = pad('method', 12, true) + pad('prec', 8, true);
  for (const w of workloads) head += ' | ' + pad(`${w.name} (${w.B}x${w.C}x${w.N})`, colW, true);
  const sub =
    pad('', 20, true) +
    workloads.map(() => ' | ' + (haveAnchor ? pad('ms', 9) + pad('torch ms', 10) + pad('ratio', 8) + '   ' : pad('ms', 9) + ' ')).join('');
  console.log(head);
  console.log(sub);
  console.log('-'.repeat(head.length));
  for (const m of methods) {
    const any = rows.find((r) => r.method === m);
    let line = pad(m, 12, true) + pad(any?.precision ?? '', 8, true);
    for (const w of workloads) {
      const r = rows.find((q) => q.method === m && q.workload === w.name);
      if (!r) {
        line += ' | ' + pad('', colW, true);
        continue;
      }
      if (r.error) {
        line += ' | ' + pad('ERROR', colW, true);
        continue;
      }
      if (haveAnchor) {
        const flag = r.speedup_vs_anchor === null ? '   ' : r.speedup_vs_anchor >= 2 ? '   ' : ' <2';
        line +=
          ' | ' + pad(fmt(r.median_ms), 9) + pad(fmt(r.anchor_ms), 10) + pad(r.speedup_vs_anchor === null ? '-' : r.speedup_vs_anchor.toFixed(2) + 'x', 8) + flag;
      } else {
        line += ' | ' + pad(fmt(r.median_ms), 9) + ' ';
      }
    }
    console.log(line);
  }
  if (haveAnchor) console.log('ratio = anchor ms / ours (higher is better; target >= 2x; "<2" marks a miss)');
}

// ---- machine state ----------------------------------------------------------------------------

/** Linux CPU pressure (share of time some task waited for a CPU): other load on a shared machine. */
function cpuPressure(): string | null {
  try {
    return fs.readFileSync('/proc/pressure/cpu', 'utf8').split('\n')[0] ?? null;
  } catch {
    return null;
  }
}

/** The addon binary this run loaded (node-gyp-build or COVPOOL_ADDON decides which) and its hash. */
function addonInfo(): { file: string; sha256: string; mtime: string } | null {
  const file = Object.keys(require.cache).find((k) => k.endsWith('.node'));
  if (!file) return null;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const crypto = require('crypto') as typeof import('crypto');
    const data = fs.readFileSync(file);
    return { file, sha256: crypto.createHash('sha256').update(data).digest('hex'), mtime: fs.statSync(file).mtime.toISOString() };
  } catch {
    return { file, sha256: '?', mtime: '?' };
  }
}

// ---- main -----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const anchor = args.anchor ? loadAnchor(args.anchor) : undefined;
  const machineFile = args.machine ? loadMachine(args.machine) : undefined;
  const info = backendInfo();
  const cpus = os.cpus();
  const loadStart = os.loadavg();
  const pressureStart = cpuPressure();
  console.log(
    `covpool CPU bench: backend ${info.backend}, ${info.threads} threads (COVPOOL_NUM_THREADS=${process.env.COVPOOL_NUM_THREADS ?? 'unset'}), ` +
      `${cpus.length} x ${cpus[0]?.model ?? '?'}, node ${process.version}`,
  );
  console.log(`repeats ${args.repeats} (median), warm-up >= ${args.warmup} runs and >= ${args.warmupMs} ms, ${args.inputs} input sets; load average ${loadStart.map((l) => l.toFixed(2)).join(' ')}`);
  if (loadStart[0] > 0.5) console.log(`note: the machine is not idle (1-min load ${loadStart[0].toFixed(2)}); timings and ratios may be disturbed`);
  if (machineFile)
    console.log(
      `kernels: OpenBLAS ${machineFile.openblas_core ?? '?'}, covpool ${machineFile.covpool_simd ?? '?'}; CPU ${machineFile.cpu_model ?? '?'}` +
        `${machineFile.cpu_avx512f ? ' (AVX-512)' : ' (no AVX-512)'}; measured GEMM GFLOP/s on ${machineFile.threads ?? '?'} threads: ` +
        (machineFile.gemm_gflops ?? []).map((r) => `n=${r.n} f32 ${r.float32} f64 ${r.float64}`).join(', '),
    );
  if (anchor) console.log(`anchor: ${args.anchor} (torch ${anchor.torch ?? '?'}, ${anchor.device ?? '?'})`);
  else console.log('anchor: none (pass --anchor torch.json for ratios)');

  const warm: Warmup = { runs: args.warmup, ms: args.warmupMs };
  const rows: Row[] = [];
  const pieces: Record<string, unknown>[] = [];
  const floors: NsFloor[] = [];
  const t0 = now();

  for (const w of args.workloads) {
    const sets = makeInputs(w, args.inputs);
    const aRow = anchorRow(anchor, w);
    if (anchor && !aRow) console.log(`  (anchor has no row for ${w.name} B=${w.B} C=${w.C} N=${w.N})`);

    if (args.pieces) {
      const [cf] = await timeSteps(sets.length, warm, args.repeats, (k) => {
        const t = now();
        covpoolSync(sets[k].x);
        return [now() - t];
      });
      const [cfb, cb] = await timeSteps(sets.length, warm, args.repeats, (k) => {
        const t = now();
        covpoolSync(sets[k].x);
        const t1 = now();
        covpoolBackwardSync(sets[k].x, sets[k].dA);
        const t2 = now();
        return [t2 - t, t2 - t1];
      });
      for (const s of sets) {
        const a = covpoolSync(s.x);
        s.a32 = a;
        s.a64 = new Tensor(Float64Array.from(a.data), a.shape);
      }
      const [e32] = await timeSteps(sets.length, warm, args.repeats, (k) => {
        const t = now();
        eighSync(sets[k].a32!);
        return [now() - t];
      });
      const [e64] = await timeSteps(sets.length, warm, args.repeats, (k) => {
        const t = now();
        eighSync(sets[k].a64!);
        return [now() - t];
      });
      const piece = (name: string, st: Stats, key?: string) => {
        const am = key ? anchorValue(aRow, key) : null;
        return {
          workload: w.name,
          piece: name,
          median_ms: st.median_ms,
          min_ms: st.min_ms,
          anchor_key: key ?? null,
          anchor_ms: am,
          speedup_vs_anchor: am === null ? null : round(am / st.median_ms, 3),
        };
      };
      const ps = [
        piece('covpool_fwd', cf, 'covpool_ms'),
        piece('covpool_bwd', cb),
        piece('covpool_fwdbwd', cfb),
        piece('eigh_float32', e32, 'eigh_f32_ms'),
        piece('eigh_float64', e64, 'eigh_f64_ms'),
      ];
      pieces.push(...ps);
      for (const p of ps)
        console.log(
          `  ${w.name} ${pad(p.piece, 15, true)} ${pad(fmt(p.median_ms, 2), 9)} ms` +
            (p.anchor_ms !== null ? `   torch ${pad(fmt(p.anchor_ms, 2), 9)} ms  ratio ${p.speedup_vs_anchor?.toFixed(2)}x` : ''),
        );
      for (const s of sets) {
        delete s.a32;
        delete s.a64;
      }
    }

    for (const method of args.methods) {
      const layer = new CovPoolLayer(method);
      const opts = layer.resolvedOptions('float32', w.C);
      const precision = String(opts.precision);
      const key = anchorKey(method, precision);
      const anchorMs = anchorValue(aRow, key);
      const base = {
        workload: w.name,
        B: w.B,
        C: w.C,
        N: w.N,
        method,
        precision,
        options: opts,
        repeats: args.repeats,
        anchor_key: key,
        anchor_ms: anchorMs,
      };
      let total: Stats, fwd: Stats, bwd: Stats, cpu: Stats;
      try {
        [total, fwd, bwd, cpu] = await timeSteps(sets.length, warm, args.repeats, (k) => {
          const c = process.cpuUsage();
          const t = now();
          const { state } = layer.forwardSync(sets[k].x);
          const t1 = now();
          layer.backwardSync(state, sets[k].dy);
          const t2 = now();
          const dc = process.cpuUsage(c);
          state.dispose(); // free the tape now rather than at the next GC (untimed)
          return [t2 - t, t1 - t, t2 - t1, (dc.user + dc.system) / 1e3];
        });
      } catch (e) {
        const msg = (e as Error).message;
        console.log(`  ${w.name} ${pad(method, 11, true)} ERROR ${msg}`);
        rows.push({
          ...base,
          median_ms: null,
          min_ms: null,
          max_ms: null,
          fwd_median_ms: null,
          bwd_median_ms: null,
          samples_ms: [],
          speedup_vs_anchor: null,
          meets_2x_target: null,
          error: msg,
        });
        continue;
      }
      const speedup = anchorMs === null ? null : round(anchorMs / total.median_ms, 3);
      const anchorCpuMs = anchorValue(aRow, key.replace('_fwdbwd_ms', '_fwdbwd_cpu_ms'));
      rows.push({
        ...base,
        median_ms: total.median_ms,
        min_ms: total.min_ms,
        max_ms: total.max_ms,
        fwd_median_ms: fwd.median_ms,
        bwd_median_ms: bwd.median_ms,
        samples_ms: total.samples_ms,
        speedup_vs_anchor: speedup,
        meets_2x_target: speedup === null ? null : speedup >= 2,
        cpu_median_ms: cpu.median_ms,
        anchor_cpu_ms: anchorCpuMs,
        cpu_speedup_vs_anchor: anchorCpuMs === null ? null : round(anchorCpuMs / cpu.median_ms, 3),
      });
      console.log(
        `  ${w.name} ${pad(method, 11, true)} ${pad(precision, 8, true)} ${pad(fmt(total.median_ms, 2), 9)} ms ` +
          `(fwd ${fmt(fwd.median_ms, 2)}, bwd ${fmt(bwd.median_ms, 2)}, min ${fmt(total.min_ms, 2)})` +
          (anchorMs !== null ? `  torch ${fmt(anchorMs, 2)} ms  ratio ${speedup!.toFixed(2)}x` : ''),
      );
      if (method === 'ns') {
        const measured = measuredRate(machineFile, w.C, precision);
        const rate = measured ?? (precision === 'float64' ? args.gemmRateF64 : args.gemmRateF32);
        const source = measured !== null ? `measured: ${w.C}x${w.C}x${w.C} products on ${machineFile?.threads ?? '?'} threads (${args.machine})` : 'fixed (no --machine)';
        floors.push(nsFloor(w, Number(opts.iterations), precision, rate, source, total, fwd, bwd));
      }
    }
  }

  console.log(`\nforward + backward of the full layer, median ms (${((now() - t0) / 1e3).toFixed(1)} s of benchmarking)\n`);
  printTable(rows, args.workloads, args.methods, anchor !== undefined);

  if (floors.length) {
    console.log('\nNewton-Schulz vs its GEMM floor (covariance syrk + backward GEMM + the full-GEMM NS count at the given rate;');
    console.log('the kernels perform about half those NS flops: symmetric products as one triangle, see newton_schulz.h)');
    console.log(
      pad('workload', 9, true) + pad('T', 3) + pad('GEMMs f/b', 11) + pad('GFLOP', 9) + pad('rate', 7) + pad('floor ms', 10) +
        pad('ours ms', 10) + pad('GFLOP/s', 9) + pad('fwd', 8) + pad('bwd', 8) + '  ' + pad('x floor', 12, true),
    );
    for (const f of floors)
      console.log(
        pad(f.workload, 9, true) + pad(String(f.iterations), 3) + pad(`${f.gemms_fwd}/${f.gemms_bwd}`, 11) + pad(f.gflop_total.toFixed(3), 9) +
          pad(String(f.gemm_rate_gflops), 7) + pad(fmt(f.floor_ms, 2), 10) + pad(fmt(f.measured_ms, 2), 10) +
          pad(f.achieved_gflops.toFixed(1), 9) + pad(f.achieved_fwd_gflops.toFixed(1), 8) + pad(f.achieved_bwd_gflops.toFixed(1), 8) +
          '  ' + pad(f.ratio_to_floor.toFixed(2) + (f.meets_target ? '' : '  (>1)'), 12, true),
      );
    console.log(
      `rate = GFLOP/s of the floor (${floors.map((f) => `${f.workload}: ${f.gemm_rate_source}`).join('; ')}); GFLOP/s = flops of the full-GEMM count / measured time (fwd / bwd: per phase)`,
    );
  }

  const result = {
    kind: 'covpool-cpu-bench',
    date: new Date().toISOString(),
    node: process.version,
    machine: {
      cpu_model: cpus[0]?.model ?? null,
      cpu_count: cpus.length,
      cpu_mhz: cpus[0]?.speed ?? null,
      total_mem_gb: round(os.totalmem() / 2 ** 30, 1),
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      hostname: os.hostname(),
      loadavg_start: loadStart,
      loadavg_end: os.loadavg(),
      cpu_pressure_start: pressureStart,
      cpu_pressure_end: cpuPressure(),
    },
    backend: {
      ...info,
      addon: addonInfo(),
      env: Object.fromEntries(
        ['COVPOOL_NUM_THREADS', 'COVPOOL_ADDON', 'COVPOOL_HOST_CACHE_MB', 'COVPOOL_CPU_SIMD', 'COVPOOL_CPU_BASELINE', 'OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE', 'OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'GLIBC_TUNABLES']
          .filter((k) => process.env[k] !== undefined)
          .map((k) => [k, process.env[k]]),
      ),
    },
    settings: {
      repeats: args.repeats,
      warmup_runs_min: args.warmup,
      warmup_ms_min: args.warmupMs,
      input_sets: args.inputs,
      features: 'float32, max(0, N(0,1)), [B, C, N]; output gradient N(0,1) [B, C(C+1)/2]; distinct seeds per set',
      gemm_rate_f32_gflops: args.gemmRateF32,
      gemm_rate_f64_gflops: args.gemmRateF64,
      workloads: args.workloads,
      methods: args.methods,
    },
    /** The kernels in use and the measured GEMM rates (bench/native/machine.cpp), when given. */
    kernels: machineFile ? { file: args.machine, ...machineFile } : null,
    anchor: anchor ? { file: path.relative(process.cwd(), path.resolve(args.anchor!)), torch: anchor.torch ?? null, device: anchor.device ?? null } : null,
    rows,
    pieces,
    ns_floor: Object.fromEntries(floors.map((f) => [f.workload, f])),
  };
  fs.mkdirSync(path.dirname(path.resolve(args.out)), { recursive: true });
  fs.writeFileSync(args.out, JSON.stringify(result, null, 1) + '\n');
  console.log(`\nwrote ${args.out}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
