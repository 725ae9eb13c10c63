// CUDA benchmark: forward + backward of the full GCP layer (covpool -> square root -> triuvec) for
// every method on the design's GPU workloads, float32, timed two ways on the same device in the
// same run:
//   - device: features, output gradient and results stay on the device (device-resident tensors):
//     the figure to hold against PyTorch's layer on device tensors;
//   - host: Float32Arrays in and out, as a TensorFlow.js model or any host-array caller pays
//     (copies through pinned staging memory, pipelined with the compute in chunks of items);
//   - host, whole batch: the same with the pipelining off (COVPOOL_CUDA_PIPELINE_ITEMS=0), so a
//     GPU run shows whether chunking the batch pays for its smaller batched calls;
// and the share of the host figure that the copies take, (host - device) / host.
//
//   node dist/bench/cuda.js [--device cuda:0] [--workloads gpu-l,gpu-m,gpu-s] [--methods ns,svd-pade]
//                           [--repeats 5] [--warmup 2] [--out file.json] [--smoke]
//
// Without a usable CUDA device it prints why and exits with status 3. On the emulated CUDA device
// (the test build) it runs only with --smoke (tiny shapes, one repeat): its timings mean nothing,
// the run only shows the benchmark itself works before a GPU session depends on it.
import * as fs from 'fs';

import { CovPoolLayer, METHODS, Method, Tensor, backendInfo } from '../lib';

interface Workload {
  name: string;
  B: number;
  C: number;
  N: number;
}
const WORKLOADS: Workload[] = [
  { name: 'gpu-l', B: 128, C: 256, N: 196 }, // the ImageNet ResNet-50 GCP head
  { name: 'gpu-m', B: 256, C: 64, N: 49 },
  { name: 'gpu-s', B: 1024, C: 32, N: 49 },
];
const SMOKE: Workload[] = [
  { name: 'smoke-xsyev', B: 2, C: 40, N: 20 },
  { name: 'smoke-syevj', B: 4, C: 16, N: 8 },
];

interface Args {
  device: string;
  workloads: Workload[];
  methods: Method[];
  repeats: number;
  warmup: number;
  out?: string;
  smoke: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { device: 'cuda:0', workloads: WORKLOADS.slice(0, 1), methods: [...METHODS], repeats: 5, warmup: 2, smoke: false };
  for (let i = 0; i < argv.length; i++) {
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`bench/cuda: ${argv[i]} needs a value`);
      return argv[++i];
    };
    switch (argv[i]) {
      case '--device': a.device = v(); break;
      case '--workloads': {
        const names = v().split(',');
        a.workloads = names.map((n) => {
          const w = WORKLOADS.find((x) => x.name === n);
          if (!w) throw new Error(`bench/cuda: unknown workload ${n} (${WORKLOADS.map((x) => x.name).join(', ')})`);
          return w;
        });
        break;
      }
      case '--methods': a.methods = v().split(',') as Method[]; break;
      case '--repeats': a.repeats = Number(v()); break;
      case '--warmup': a.warmup = Number(v()); break;
      case '--out': a.out = v(); break;
      case '--smoke': a.smoke = true; break;
      default: throw new Error(`bench/cuda: unknown argument ${argv[i]}`);
    }
  }
  if (a.smoke) Object.assign(a, { workloads: SMOKE, repeats: 1, warmup: 0 });
  return a;
}

function features(B: number, C: number, N: number): Tensor {
  // ReLU of a fixed pseudo-random Gaussian-like sequence: the post-ReLU features a GCP head sees.
  const x = new Float32Array(B * C * N);
  let s = 12345;
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const u = s / 4294967296;
    x[i] = Math.max(0, (u - 0.5) * 3.4);
  }
  return new Tensor(x, [B, C, N]);
}

function median(v: number[]): number {
  const s = [...v].sort((p, q) => p - q);
  return s[s.length >> 1];
}

/** Milliseconds of f, `repeats` times after `warmup` untimed runs. */
function time(f: () => void, warmup: number, repeats: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < warmup + repeats; r++) {
    const t0 = process.hrtime.bigint();
    f();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r >= warmup) out.push(ms);
  }
  return out;
}

interface Row {
  workload: string;
  B: number;
  C: number;
  N: number;
  method: string;
  deviceMs: number;
  hostMs: number;
  hostWholeBatchMs: number;
  transferShare: number;
  deviceRuns: number[];
  hostRuns: number[];
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  const info = backendInfo();
  if (!info.cuda || info.cudaDevices === 0) {
    console.log(`bench/cuda: no CUDA device: ${info.cudaReason}`);
    process.exit(3);
  }
  if (info.cudaEmulated && !args.smoke) {
    console.log('bench/cuda: this is the emulated CUDA device (a test build): its timings mean nothing; run with --smoke to check the benchmark runs');
    process.exit(3);
  }
  const rows: Row[] = [];
  const transfers: Array<{ workload: string; toDeviceMs: number; toHostMs: number; bytesIn: number; bytesOut: number }> = [];
  for (const w of args.workloads) {
    const x = features(w.B, w.C, w.N);
    const xd = x.toSync(args.device);
    // The copies alone: the features in, a layer's output (the upper triangle) out.
    const out = new Tensor(new Float32Array((w.B * w.C * (w.C + 1)) / 2), [w.B, (w.C * (w.C + 1)) / 2]);
    const outd = out.toSync(args.device);
    const inMs = median(time(() => x.toSync(args.device).dispose(), args.warmup, args.repeats));
    const outMs = median(time(() => outd.toSync('cpu'), args.warmup, args.repeats));
    transfers.push({ workload: w.name, toDeviceMs: inMs, toHostMs: outMs, bytesIn: x.size * 4, bytesOut: out.size * 4 });
    console.log(
      `${w.name} B=${w.B} C=${w.C} N=${w.N} float32: features to the device ${inMs.toFixed(2)} ms (${((x.size * 4) / 1e6).toFixed(1)} MB, ` +
        `${((x.size * 4) / 1e6 / inMs).toFixed(1)} GB/s), an output to the host ${outMs.toFixed(2)} ms (${((out.size * 4) / 1e6).toFixed(1)} MB)`,
    );
    for (const method of args.methods) {
      const layer = new CovPoolLayer({ method, device: args.device as never });
      const onDevice = time(
        () => {
          const { output, state } = layer.forwardSync(xd);
          const g = layer.backwardSync(state, output); // any gradient of the right shape will do
          output.dispose();
          g.dispose();
        },
        args.warmup,
        args.repeats,
      );
      const onHostStep = () => {
        const { output, state } = layer.forwardSync(x);
        layer.backwardSync(state, output);
      };
      const onHost = time(onHostStep, args.warmup, args.repeats);
      const hostWholeBatchMs = median(withEnv('COVPOOL_CUDA_PIPELINE_ITEMS', '0', () => time(onHostStep, args.warmup, args.repeats)));
      const deviceMs = median(onDevice), hostMs = median(onHost);
      const row: Row = {
        workload: w.name, B: w.B, C: w.C, N: w.N, method, deviceMs, hostMs, hostWholeBatchMs,
        transferShare: (hostMs - deviceMs) / hostMs, deviceRuns: onDevice, hostRuns: onHost,
      };
      rows.push(row);
      console.log(
        `${w.name} ${method.padEnd(11)} fwd+bwd median: device tensors ${deviceMs.toFixed(2)} ms, host arrays ${hostMs.toFixed(2)} ms ` +
          `(copies ${(100 * row.transferShare).toFixed(0)} %; unpipelined ${hostWholeBatchMs.toFixed(2)} ms)`,
      );
    }
    xd.dispose();
    outd.dispose();
  }
  const result = {
    device: args.device,
    emulated: info.cudaEmulated,
    cudaBinary: info.cudaBinary,
    date: new Date().toISOString(),
    dtype: 'float32',
    transfers,
    results: rows,
  };
  if (args.out) fs.writeFileSync(args.out, JSON.stringify(result, null, 1) + '\n');
}

// Runs f with an environment variable set for the native code (which reads it at each call), then
// restores it.
function withEnv<T>(name: string, value: string, f: () => T): T {
  const before = process.env[name];
  process.env[name] = value;
  try {
    return f();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

main();
