// Combines several rounds of bench/run-cpu.sh (each round: the PyTorch baseline, then covpool, in
// the same session) into one table of medians: on a shared, noisy machine a single pair of runs
// can be off by tens of percent, the median over rounds much less.
//
//   node dist/bench/combine.js --out RUN/combined.json RUN/covpool-r1.json RUN/torch-r1.json RUN/covpool-r2.json RUN/torch-r2.json ...
//
// bench/run-cpu.sh calls it with RUN = bench/results/STAMP, the run's own folder, so that the
// combined file sits next to the rounds it was made from.
//
// Arguments after the options are covpool/baseline JSON pairs, in that order. Per cell it reports
// the median of covpool's medians, the median of the baseline's, their ratio, and the median of
// the per-round ratios (the two agree when the noise is small).
import * as fs from 'fs';
import type { Row } from './cpu';

/** The fields of bench/cpu.ts's rows that the combination reads. */
type OursRow = Pick<Row, 'workload' | 'B' | 'C' | 'N' | 'method' | 'precision' | 'median_ms' | 'anchor_key' | 'cpu_median_ms' | 'anchor_cpu_ms'>;

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = xs.slice().sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function r3(x: number | null): number | null {
  return x === null ? null : Math.round(x * 1000) / 1000;
}

function main(): void {
  const argv = process.argv.slice(2);
  let out = '';
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out') out = argv[++i];
    else files.push(argv[i]);
  }
  if (files.length === 0 || files.length % 2 !== 0) {
    process.stderr.write('usage: node dist/bench/combine.js [--out FILE] covpool-r1.json torch-r1.json [covpool-r2.json torch-r2.json ...]\n');
    process.exit(2);
  }
  type Floor = { floor_ms: number; measured_ms: number; ratio_to_floor: number; gemm_rate_gflops: number; gemm_rate_source?: string };
  const rounds: Array<{
    ours: { rows: OursRow[]; machine?: unknown; backend?: unknown; kernels?: unknown; ns_floor?: Record<string, Floor> };
    torch: { torch?: string; cpu_capability?: string; env?: unknown; rows: Array<Record<string, unknown>> };
  }> = [];
  for (let i = 0; i < files.length; i += 2)
    rounds.push({ ours: JSON.parse(fs.readFileSync(files[i], 'utf8')), torch: JSON.parse(fs.readFileSync(files[i + 1], 'utf8')) });

  const cells = new Map<string, { row: OursRow; ours: number[]; torch: number[]; ratios: number[]; cpuRatios: number[]; oursCpu: number[]; torchCpu: number[] }>();
  for (const { ours, torch } of rounds) {
    for (const row of ours.rows) {
      const key = `${row.workload}|${row.method}`;
      if (!cells.has(key)) cells.set(key, { row, ours: [], torch: [], ratios: [], cpuRatios: [], oursCpu: [], torchCpu: [] });
      const cell = cells.get(key)!;
      const t = torch.rows.find((r) => r.B === row.B && r.C === row.C && r.N === row.N)?.[row.anchor_key];
      if (row.median_ms !== null) cell.ours.push(row.median_ms);
      if (typeof t === 'number') cell.torch.push(t);
      if (row.median_ms !== null && typeof t === 'number') cell.ratios.push(t / row.median_ms);
      if (row.cpu_median_ms && typeof row.anchor_cpu_ms === 'number') {
        cell.cpuRatios.push(row.anchor_cpu_ms / row.cpu_median_ms);
        cell.oursCpu.push(row.cpu_median_ms);
        cell.torchCpu.push(row.anchor_cpu_ms);
      }
    }
  }

  const table = [...cells.values()].map((c) => {
    const o = median(c.ours);
    const t = median(c.torch);
    return {
      workload: c.row.workload,
      method: c.row.method,
      precision: c.row.precision,
      rounds: c.ours.length,
      covpool_ms: r3(o),
      torch_ms: r3(t),
      ratio_of_medians: o !== null && t !== null ? r3(t / o) : null,
      median_ratio: r3(median(c.ratios)),
      cpu_time_ratio: r3(median(c.cpuRatios)),
      covpool_cpu_ms: r3(median(c.oursCpu)),
      torch_cpu_ms: r3(median(c.torchCpu)),
      covpool_ms_rounds: c.ours,
      torch_ms_rounds: c.torch,
    };
  });

  // Newton-Schulz against its GEMM floor, per workload: the rounds' values and their medians.
  const floorNames = [...new Set(rounds.flatMap((r) => Object.keys(r.ours.ns_floor ?? {})))];
  const nsFloor = Object.fromEntries(
    floorNames.map((w) => {
      const fs_ = rounds.map((r) => r.ours.ns_floor?.[w]).filter((f): f is Floor => f !== undefined);
      return [
        w,
        {
          rounds: fs_.length,
          ratio_to_floor: r3(median(fs_.map((f) => f.ratio_to_floor))),
          measured_ms: r3(median(fs_.map((f) => f.measured_ms))),
          floor_ms: r3(median(fs_.map((f) => f.floor_ms))),
          gemm_rate_gflops: r3(median(fs_.map((f) => f.gemm_rate_gflops))),
          gemm_rate_source: fs_[0]?.gemm_rate_source ?? null,
          ratio_to_floor_rounds: fs_.map((f) => f.ratio_to_floor),
          gemm_rate_gflops_rounds: fs_.map((f) => f.gemm_rate_gflops),
        },
      ];
    }),
  );

  const workloads = [...new Set(table.map((r) => r.workload))];
  const methods = [...new Set(table.map((r) => r.method))];
  const fmt = (x: number | null) => (x === null ? '-' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
  console.log(`${rounds.length} rounds; torch ${rounds.map((r) => r.torch.torch ?? '?').join(', ')}; medians over rounds`);
  console.log(['method'.padEnd(12), ...workloads.map((w) => `| ${w.padEnd(8)} covpool    torch   ratio  CPU-time ratio`)].join(' '));
  for (const m of methods) {
    let line = m.padEnd(12);
    for (const w of workloads) {
      const r = table.find((q) => q.method === m && q.workload === w);
      line += ` | ${''.padEnd(8)} ${fmt(r?.covpool_ms ?? null).padStart(7)} ${fmt(r?.torch_ms ?? null).padStart(8)} ${(r?.ratio_of_medians === null || r === undefined ? '-' : r.ratio_of_medians.toFixed(2) + 'x').padStart(7)} ${(r?.cpu_time_ratio === null || r === undefined ? '-' : r.cpu_time_ratio.toFixed(2) + 'x').padStart(15)}`;
    }
    console.log(line);
  }
  for (const [w, f] of Object.entries(nsFloor))
    console.log(`ns ${w}: ${f.ratio_to_floor}x its GEMM floor (rounds ${f.ratio_to_floor_rounds.join(', ')}; floor ${f.floor_ms} ms at ${f.gemm_rate_gflops} GFLOP/s)`);
  if (out) {
    fs.writeFileSync(
      out,
      JSON.stringify(
        {
          kind: 'covpool-cpu-bench-combined',
          date: new Date().toISOString(),
          files,
          torch: rounds.map((r) => r.torch.torch ?? null),
          torch_cpu_capability: rounds.map((r) => r.torch.cpu_capability ?? null),
          torch_env: rounds[0].torch.env ?? null,
          machine: rounds[0].ours.machine,
          backend: rounds[0].ours.backend,
          kernels: rounds[0].ours.kernels ?? null,
          table,
          ns_floor: nsFloor,
        },
        null,
        1,
      ) + '\n',
    );
    console.log(`wrote ${out}`);
  }
}

main();
