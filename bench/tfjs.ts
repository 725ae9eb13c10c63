// TensorFlow.js benchmark: forward + backward of the covpool op through the tfjs adapter, with
// features in NHWC (the tfjs default, read natively with dataFormat 'channelsLast'), in NCHW, and
// in NHWC transposed to NCHW by tf.transpose first (what the adapter did before the native
// channels-last path, and what a user without it would write). tfjs's 'cpu' backend.
//
//   node dist/bench/tfjs.js [--workloads cpu-l,cpu-s] [--methods ns,svd] [--repeats 9] [--out file.json]
import * as fs from 'fs';
import * as path from 'path';

import * as tf from '@tensorflow/tfjs';

import { covPoolOp } from '../lib/tfjs';

const WORKLOADS: Record<string, { B: number; C: number; H: number; W: number }> = {
  'cpu-l': { B: 16, C: 256, H: 14, W: 14 },
  'cpu-s': { B: 64, C: 64, H: 7, W: 7 },
};

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[s.length >> 1];
}

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  const workloads = arg('workloads', 'cpu-l,cpu-s').split(',');
  const methods = arg('methods', 'ns,svd').split(',');
  const repeats = Number(arg('repeats', '9'));
  const out = arg('out', path.join('bench', 'results', `tmp-tfjs-${new Date().toISOString().slice(0, 10)}.json`));
  const rows: Record<string, unknown>[] = [];
  for (const wName of workloads) {
    const w = WORKLOADS[wName];
    if (!w) throw new Error(`unknown workload ${wName}`);
    const nhwc = tf.relu(tf.randomNormal([w.B, w.H, w.W, w.C], 0, 1, 'float32', 7));
    const nchw = tf.transpose(nhwc, [0, 3, 1, 2]);
    for (const method of methods) {
      const variants: Array<[string, () => tf.Tensor]> = [
        ['nhwc_native', () => nhwc],
        ['nchw', () => nchw],
        ['nhwc_transposed', () => nhwc],
      ];
      const row: Record<string, unknown> = { workload: wName, ...w, method };
      for (const [name, input] of variants) {
        const fmt = name === 'nhwc_native' ? 'channelsLast' : 'channelsFirst';
        const loss = (x: tf.Tensor): tf.Scalar => {
          const feats = name === 'nhwc_transposed' ? tf.transpose(x, [0, 3, 1, 2]) : x;
          return tf.sum(covPoolOp(feats, { method, dataFormat: fmt } as never)) as tf.Scalar;
        };
        const grad = tf.grad(loss);
        const times: number[] = [];
        for (let r = 0; r < repeats + 2; r++) {
          const t0 = process.hrtime.bigint();
          const g = grad(input());
          await g.data();
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          g.dispose();
          if (r >= 2) times.push(ms);
        }
        row[`${name}_ms`] = Math.round(median(times) * 1000) / 1000;
      }
      row.nhwc_native_vs_nchw = Math.round(((row.nhwc_native_ms as number) / (row.nchw_ms as number)) * 1000) / 1000;
      row.nhwc_transposed_vs_nchw = Math.round(((row.nhwc_transposed_ms as number) / (row.nchw_ms as number)) * 1000) / 1000;
      rows.push(row);
      console.log(
        `${wName} ${method.padEnd(6)} NHWC native ${String(row.nhwc_native_ms).padStart(9)} ms | NCHW ${String(row.nchw_ms).padStart(9)} ms | ` +
          `NHWC via tf.transpose ${String(row.nhwc_transposed_ms).padStart(9)} ms  (native/NCHW ${row.nhwc_native_vs_nchw}, transposed/NCHW ${row.nhwc_transposed_vs_nchw})`,
      );
    }
    nhwc.dispose();
    nchw.dispose();
  }
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ kind: 'covpool-tfjs-bench', date: new Date().toISOString(), tfjs: tf.version.tfjs, backend: tf.getBackend(), repeats, rows }, null, 1) + '\n');
  console.log(`wrote ${out}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
