// Soak benchmark: resident memory (RSS) over many forward/backward calls of the layer, in every way a
// training or inference loop may be written. The target is flat memory in every mode: what one
// step allocates must be freed by the time of the next, whether or not the loop calls dispose()
// and whether or not the event loop ever turns.
//
//   node dist/bench/soak.js [--calls 10000] [--every 250] [--B 8 --C 32 --N 64] [--method ns]
//                           [--modes sync,sync-dispose,...] [--out bench/results/soak-DATE.json]
//
// Each mode runs in its own child process (a fresh heap and a fresh RSS). Modes:
//   sync             forwardSync + backwardSync, no dispose (the backward frees the state)
//   sync-dispose     forwardSync + backwardSync(retainState) + state.dispose()
//   async            await forward + await backward, no dispose
//   async-dispose    await forward + await backward(retainState) + state.dispose()
//   sync-forward     forwardSync only, the state dropped (inference): freed once the GC found it
//   sync-retain      forwardSync + backwardSync(retainState), the state dropped, never disposed
// Growth is reported from the first sample after the warm-up (the first 10% of the calls, where
// allocator pools and the host cache fill) to the last, and as a least-squares slope over the
// second half (MB per 1000 calls): a leak shows as a steady slope, noise as a small wobble.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { CovPoolLayer, Tensor, backendInfo, maxBytes } from '../lib';

const MODES = ['sync', 'sync-dispose', 'async', 'async-dispose', 'sync-forward', 'sync-retain'] as const;
type Mode = (typeof MODES)[number];

interface Args {
  calls: number;
  every: number;
  B: number;
  C: number;
  N: number;
  method: string;
  modes: Mode[];
  out: string;
  child?: Mode;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string, dflt: string) => {
    const i = argv.indexOf('--' + name);
    return i >= 0 ? argv[i + 1] : dflt;
  };
  const stamp = new Date().toISOString().slice(0, 10);
  const modes = get('modes', MODES.join(',')).split(',') as Mode[];
  for (const m of modes) if (!MODES.includes(m)) throw new Error(`unknown mode '${m}'; modes: ${MODES.join(', ')}`);
  const child = get('child', '');
  return {
    calls: Number(get('calls', '10000')),
    every: Number(get('every', '250')),
    B: Number(get('B', '8')),
    C: Number(get('C', '32')),
    N: Number(get('N', '64')),
    method: get('method', 'ns'),
    modes,
    out: get('out', path.join('bench', 'results', `soak-${stamp}.json`)),
    child: child ? (child as Mode) : undefined,
  };
}

const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;

/** One mode, in this process: RSS samples every `every` calls. */
async function runMode(a: Args, mode: Mode): Promise<{ calls: number[]; rssMb: number[]; seconds: number }> {
  const layer = new CovPoolLayer(a.method as never);
  const x = new Tensor(Float32Array.from({ length: a.B * a.C * a.N }, (_, i) => Math.max(0, Math.sin(0.37 * i) + 0.2 * Math.cos(1.3 * i))), [a.B, a.C, a.N]);
  const probe = layer.forwardSync(x);
  const dy = new Tensor(Float32Array.from({ length: probe.output.size }, (_, i) => Math.sin(0.7 * i + 1)), probe.output.shape);
  probe.state.dispose();
  const keep = { retainState: true };
  const calls: number[] = [];
  const rssMb: number[] = [];
  const t0 = Date.now();
  for (let i = 1; i <= a.calls; i++) {
    switch (mode) {
      case 'sync': {
        const { state } = layer.forwardSync(x);
        layer.backwardSync(state, dy);
        break;
      }
      case 'sync-dispose': {
        const { state } = layer.forwardSync(x);
        layer.backwardSync(state, dy, keep);
        state.dispose();
        break;
      }
      case 'async': {
        const { state } = await layer.forward(x);
        await layer.backward(state, dy);
        break;
      }
      case 'async-dispose': {
        const { state } = await layer.forward(x);
        await layer.backward(state, dy, keep);
        state.dispose();
        break;
      }
      case 'sync-forward':
        layer.forwardSync(x);
        break;
      case 'sync-retain': {
        const { state } = layer.forwardSync(x);
        layer.backwardSync(state, dy, keep);
        break;
      }
    }
    if (i % a.every === 0) {
      calls.push(i);
      rssMb.push(mb(process.memoryUsage().rss));
    }
  }
  return { calls, rssMb, seconds: (Date.now() - t0) / 1e3 };
}

/** Least-squares slope of y over x. */
function slope(x: number[], y: number[]): number {
  const n = x.length;
  const mx = x.reduce((s, v) => s + v, 0) / n;
  const my = y.reduce((s, v) => s + v, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (x[i] - mx) * (y[i] - my);
    den += (x[i] - mx) ** 2;
  }
  return den ? num / den : 0;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  if (a.child) {
    process.stdout.write(JSON.stringify(await runMode(a, a.child)) + '\n');
    return;
  }
  const info = backendInfo();
  console.log(`soak: ${a.calls} calls per mode, ${a.method} layer on [${a.B}, ${a.C}, ${a.N}] float32, backend ${info.backend}, ${info.threads} threads`);
  const results = [];
  for (const mode of a.modes) {
    const r = spawnSync(process.execPath, [__filename, ...process.argv.slice(2), '--child', mode], { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.status !== 0) throw new Error(`mode ${mode} failed (exit ${r.status}, signal ${r.signal}): ${r.stderr.slice(-2000)}`);
    const run = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { calls: number[]; rssMb: number[]; seconds: number };
    const warm = run.calls.findIndex((c) => c >= a.calls / 10);
    const half = Math.floor(run.calls.length / 2);
    const row = {
      mode,
      seconds: run.seconds,
      rss_after_warmup_mb: run.rssMb[warm],
      rss_end_mb: run.rssMb[run.rssMb.length - 1],
      rss_max_mb: Math.max(...run.rssMb),
      growth_after_warmup_mb: Math.round((run.rssMb[run.rssMb.length - 1] - run.rssMb[warm]) * 10) / 10,
      slope_mb_per_1000_calls: Math.round(slope(run.calls.slice(half), run.rssMb.slice(half)) * 1000 * 100) / 100,
      samples: { calls: run.calls, rss_mb: run.rssMb },
    };
    results.push(row);
    console.log(
      `  ${mode.padEnd(14)} ${run.seconds.toFixed(1).padStart(6)} s   RSS after warm-up ${row.rss_after_warmup_mb} MB, end ${row.rss_end_mb} MB, ` +
        `max ${row.rss_max_mb} MB, slope ${row.slope_mb_per_1000_calls} MB / 1000 calls`,
    );
  }
  const doc = {
    benchmark: 'soak',
    date: new Date().toISOString(),
    node: process.version,
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memory_gb: Math.round(os.totalmem() / 1e9) },
    backend: info,
    memory_budget_bytes: maxBytes(),
    workload: { B: a.B, C: a.C, N: a.N, dtype: 'float32', method: a.method },
    calls: a.calls,
    sample_every: a.every,
    // No PyTorch anchor: the target is absolute (flat RSS), not a ratio to another library.
    modes: results,
  };
  fs.mkdirSync(path.dirname(a.out), { recursive: true });
  fs.writeFileSync(a.out, JSON.stringify(doc, null, 1) + '\n');
  console.log(`written: ${a.out}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
