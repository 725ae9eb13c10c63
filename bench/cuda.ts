// CUDA benchmark (minimal; the full GPU benchmark with the PyTorch anchor is a later issue):
// forward + backward of the full GCP layer (covpool -> square root -> triuvec) for every method on
// the GPU workload of the design, gpu-l (B=128, C=256, N=196), float32, host copies included.
//
//   node dist/bench/cuda.js [--device cuda:0] [--methods ns,svd-pade] [--repeats 5] [--warmup 2] [--out file.json]
//
// Without a usable CUDA device it prints why and exits with status 3.
import * as fs from 'fs';

import { CovPoolLayer, METHODS, Method, Tensor, backendInfo } from '../lib';

interface Args {
  device: string;
  methods: Method[];
  repeats: number;
  warmup: number;
  out?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { device: 'cuda:0', methods: [...METHODS], repeats: 5, warmup: 2 };
  for (let i = 0; i < argv.length; i++) {
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`bench/cuda: ${argv[i]} needs a value`);
      return argv[++i];
    };
    switch (argv[i]) {
      case '--device': a.device = v(); break;
      case '--methods': a.methods = v().split(',') as Method[]; break;
      case '--repeats': a.repeats = Number(v()); break;
      case '--warmup': a.warmup = Number(v()); break;
      case '--out': a.out = v(); break;
      default: throw new Error(`bench/cuda: unknown argument ${argv[i]}`);
    }
  }
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

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  const info = backendInfo();
  if (!info.cuda || info.cudaDevices === 0) {
    console.log(`bench/cuda: no CUDA device: ${info.cudaReason}`);
    process.exit(3);
  }
  const [B, C, N] = [128, 256, 196];
  const x = features(B, C, N);
  const results: Array<{ method: string; medianMs: number; minMs: number; runs: number[] }> = [];
  for (const method of args.methods) {
    const layer = new CovPoolLayer({ method, device: args.device as never });
    const times: number[] = [];
    for (let r = 0; r < args.warmup + args.repeats; r++) {
      const t0 = process.hrtime.bigint();
      const { output, state } = layer.forwardSync(x);
      layer.backwardSync(state, output); // any gradient of the right shape will do
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      state.dispose();
      if (r >= args.warmup) times.push(ms);
    }
    const sorted = [...times].sort((p, q) => p - q);
    results.push({ method, medianMs: sorted[sorted.length >> 1], minMs: sorted[0], runs: times });
    console.log(`gpu-l B=${B} C=${C} N=${N} float32 ${method.padEnd(11)} fwd+bwd median ${sorted[sorted.length >> 1].toFixed(2)} ms`);
  }
  const out = { workload: { name: 'gpu-l', B, C, N, dtype: 'float32' }, device: args.device, cudaBinary: info.cudaBinary, date: new Date().toISOString(), results };
  if (args.out) fs.writeFileSync(args.out, JSON.stringify(out, null, 1) + '\n');
}

main();
