// Summaries over seeds, the markdown table, and the SVG plots of the singular-regime experiment.
import * as fs from 'fs';
import * as path from 'path';
import { coincidenceOffsets } from '../../lib/analysis/svg';
import { CHANCE, Config, RunRecord } from './experiment';

export interface Summary {
  run: string;
  seeds: number;
  /** Runs that finished every epoch. */
  completed: number;
  accuracyMean: number | null;
  accuracyStd: number | null;
  accuracies: (number | null)[];
  /**
   * Paired with ns (same seed: same initial weights and batches): this run's final test accuracy
   * minus ns's, mean and std over the seeds where both finished. Null for ns itself or without ns.
   */
  deltaVsNsMean: number | null;
  deltaVsNsStd: number | null;
  /** Mean over seeds of each epoch's test accuracy (runs that reached that epoch). */
  epochAccuracyMean: (number | null)[];
  epochAccuracyMin: (number | null)[];
  epochAccuracyMax: (number | null)[];
  epochTrainLossMean: (number | null)[];
  /** Mean over seeds of the median |dL/dF| (GCP input gradient) of each epoch. */
  epochGcpGradNormMedian: (number | null)[];
  /** Mean over seeds of the largest |dL/dF| of a step in each epoch. */
  epochGcpGradNormMax: (number | null)[];
  /** Mean over seeds of the loss curve (training loss over windows of steps). */
  lossCurveMean: number[];
  finalTrainLossMean: number | null;
  nonFiniteSteps: number;
  steps: number;
  gcpGradNormMedian: number | null;
  gcpGradNormMax: number | null;
  paramGradNormMedian: number | null;
  paramGradNormMax: number | null;
  secondsPerRun: number;
  errors: string[];
}

function mean(xs: number[]): number | null {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
}

/** Sample standard deviation (n - 1); null below two values. */
export function std(xs: number[]): number | null {
  if (xs.length < 2) return null;
  const m = mean(xs) as number;
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const finite = (xs: (number | null)[]): number[] => xs.filter((x): x is number => x !== null && Number.isFinite(x));

export function summarize(records: RunRecord[], runs: string[], epochs: number): Summary[] {
  return runs.map((run) => {
    const rs = records.filter((r) => r.run === run);
    const accs = rs.map((r) => r.finalTestAccuracy);
    const perEpoch = <T>(f: (e: RunRecord['epochs'][number]) => number | null, agg: (xs: number[]) => T | null) =>
      Array.from({ length: epochs }, (_, i) => agg(finite(rs.map((r) => (r.epochs[i] ? f(r.epochs[i]) : null)))));
    const curveLen = Math.min(...rs.map((r) => r.lossCurve.length));
    const eps = rs.flatMap((r) => r.epochs);
    const ns = records.filter((r) => r.run === 'ns');
    const deltas = run === 'ns' ? [] : finite(rs.map((r) => {
      const ref = ns.find((q) => q.seed === r.seed);
      return ref && ref.finalTestAccuracy !== null && r.finalTestAccuracy !== null ? r.finalTestAccuracy - ref.finalTestAccuracy : null;
    }));
    const lastLoss = finite(rs.map((r) => (r.epochs.length === epochs && !r.error ? r.epochs[epochs - 1].trainLoss : null)));
    return {
      run,
      seeds: rs.length,
      completed: finite(accs).length,
      accuracyMean: mean(finite(accs)),
      accuracyStd: std(finite(accs)),
      accuracies: accs,
      deltaVsNsMean: mean(deltas),
      deltaVsNsStd: std(deltas),
      epochAccuracyMean: perEpoch((e) => e.testAccuracy, mean),
      epochAccuracyMin: perEpoch((e) => e.testAccuracy, (xs) => (xs.length ? Math.min(...xs) : null)),
      epochAccuracyMax: perEpoch((e) => e.testAccuracy, (xs) => (xs.length ? Math.max(...xs) : null)),
      epochTrainLossMean: perEpoch((e) => e.trainLoss, mean),
      epochGcpGradNormMedian: perEpoch((e) => e.gcpGradNormMedian, mean),
      epochGcpGradNormMax: perEpoch((e) => e.gcpGradNormMax, mean),
      lossCurveMean: rs.length && Number.isFinite(curveLen) ? Array.from({ length: curveLen }, (_, i) => mean(rs.map((r) => r.lossCurve[i])) as number) : [],
      finalTrainLossMean: mean(lastLoss),
      nonFiniteSteps: rs.reduce((a, r) => a + r.nonFiniteSteps, 0),
      steps: rs.reduce((a, r) => a + r.steps, 0),
      gcpGradNormMedian: median(finite(eps.map((e) => e.gcpGradNormMedian))),
      gcpGradNormMax: finite(eps.map((e) => e.gcpGradNormMax)).reduce((a, b) => Math.max(a, b), -Infinity),
      paramGradNormMedian: median(finite(eps.map((e) => e.paramGradNormMedian))),
      paramGradNormMax: finite(eps.map((e) => e.paramGradNormMax)).reduce((a, b) => Math.max(a, b), -Infinity),
      secondsPerRun: mean(rs.map((r) => r.epochs.reduce((a, e) => a + e.seconds, 0))) ?? 0,
      errors: rs.filter((r) => r.error).map((r) => `seed ${r.seed}: ${r.error}`),
    };
  });
}

/** 'ns>svd-pade' -> 'hybrid ns → svd-pade' (plot legends; the marker line shows the epoch). */
export function shortLabel(run: string): string {
  const p = run.split('>');
  return p.length === 2 ? `hybrid ${p[0]} → ${p[1]}` : run;
}

/** 'ns>svd-pade' -> 'hybrid: ns, then svd-pade from epoch E'. */
export function runLabel(run: string, switchEpoch: number): string {
  const p = run.split('>');
  return p.length === 2 ? `hybrid: ${p[0]}, then ${p[1]} from epoch ${switchEpoch + 1}` : run;
}

const pct = (x: number | null) => (x === null ? '–' : (100 * x).toFixed(2));
const sci = (x: number | null) => (x === null || !Number.isFinite(x) ? '–' : x.toExponential(1));

export function markdownTable(sums: Summary[], switchEpoch: number): string {
  const head = ['run', 'test acc. % (mean ± std)', 'per seed', 'minus ns, same seed (mean ± std)', 'final train loss', 'non-finite grad steps', '‖∂L/∂F‖ median / max', '‖∇θ‖ median / max', 's / run'];
  const rows = sums.map((s) => [
    runLabel(s.run, switchEpoch),
    s.accuracyMean === null ? 'no run finished' : `${pct(s.accuracyMean)} ± ${s.accuracyStd === null ? '–' : (100 * s.accuracyStd).toFixed(2)}${s.completed < s.seeds ? ` (${s.completed} of ${s.seeds} finished)` : ''}`,
    s.accuracies.map(pct).join(', '),
    s.deltaVsNsMean === null ? '–' : `${s.deltaVsNsMean >= 0 ? '+' : '−'}${pct(Math.abs(s.deltaVsNsMean))} ± ${s.deltaVsNsStd === null ? '–' : pct(s.deltaVsNsStd)}`,
    s.finalTrainLossMean === null ? '–' : s.finalTrainLossMean.toFixed(4),
    `${s.nonFiniteSteps} / ${s.steps}`,
    `${sci(s.gcpGradNormMedian)} / ${sci(s.gcpGradNormMax)}`,
    `${sci(s.paramGradNormMedian)} / ${sci(s.paramGradNormMax)}`,
    s.secondsPerRun.toFixed(0),
  ]);
  return [head, head.map((_, i) => (i === 0 || i === 2 ? '---' : '---:')), ...rows].map((r) => '| ' + r.join(' | ') + ' |').join('\n');
}

// ---- SVG line charts -------------------------------------------------------------------------

export interface Series {
  label: string;
  /** [x, y] points; null y leaves a gap. */
  points: [number, number | null][];
  /** Optional error bars: [x, low, high]. */
  bars?: [number, number, number][];
  dashed?: boolean;
}

const PALETTE = ['#1f77b4', '#d62728', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A niceish tick step for a range. */
function tickStep(span: number, target: number): number {
  const raw = span / target;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

export function lineChart(
  series: Series[],
  opts: { title: string; xLabel: string; yLabel: string; /** log scale where the data span a factor of 10 or more */ logY?: boolean; xTicks?: number[]; subtitle?: string; xMin?: number; marker?: { x: number; label: string } },
): string {
  const W = 960;
  const H = 520;
  const left = 80;
  const right = 260; // legend
  const top = opts.subtitle ? 70 : 50;
  const bottom = 60;
  const pw = W - left - right;
  const ph = H - top - bottom;
  const positive = series.flatMap((s) => s.points.map((p) => p[1])).filter((y): y is number => y !== null && Number.isFinite(y) && y > 0);
  if (opts.logY && positive.length && Math.max(...positive) < 10 * Math.min(...positive)) opts = { ...opts, logY: false };
  const ys = series.flatMap((s) => [...s.points.map((p) => p[1]), ...(s.bars ?? []).flatMap((b) => [b[1], b[2]])]).filter((y): y is number => y !== null && Number.isFinite(y) && (!opts.logY || y > 0));
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const tf = (y: number) => (opts.logY ? Math.log10(y) : y);
  let y0 = ys.length ? Math.min(...ys.map(tf)) : 0;
  let y1 = ys.length ? Math.max(...ys.map(tf)) : 1;
  if (y1 - y0 < 1e-9) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  if (opts.logY) {
    y0 = Math.floor(y0);
    y1 = Math.ceil(y1);
  }
  const x0 = opts.xMin ?? (xs.length ? Math.min(...xs) : 0);
  const x1 = xs.length ? Math.max(...xs) : 1;
  const X = (x: number) => left + ((x - x0) / (x1 - x0 || 1)) * pw;
  const Y = (y: number) => top + ph - ((tf(y) - y0) / (y1 - y0)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="13">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${left}" y="24" font-size="16" font-weight="bold">${esc(opts.title)}</text>`);
  if (opts.subtitle) out.push(`<text x="${left}" y="46" fill="#444">${esc(opts.subtitle)}</text>`);
  // Axes and grid.
  const yt: number[] = [];
  if (opts.logY) for (let e = y0; e <= y1; e++) yt.push(10 ** e);
  else {
    const st = tickStep(y1 - y0, 6);
    for (let v = Math.ceil(y0 / st) * st; v <= y1 + 1e-12; v += st) yt.push(v);
  }
  for (const v of yt) {
    const y = Y(v).toFixed(1);
    out.push(`<line x1="${left}" x2="${left + pw}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    const txt = opts.logY ? `1e${Math.round(Math.log10(v))}` : Number(v.toPrecision(6)).toString();
    out.push(`<text x="${left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${txt}</text>`);
  }
  const xt = opts.xTicks ?? Array.from({ length: Math.round(x1 - x0) + 1 }, (_, i) => x0 + i);
  for (const v of xt) {
    const x = X(v).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${top}" y2="${top + ph}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${x}" y="${top + ph + 20}" text-anchor="middle">${v}</text>`);
  }
  out.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  if (opts.marker && opts.marker.x >= x0 && opts.marker.x <= x1) {
    const mx = X(opts.marker.x).toFixed(1);
    out.push(`<line x1="${mx}" x2="${mx}" y1="${top}" y2="${top + ph}" stroke="#888" stroke-dasharray="2 3"/>`);
    out.push(`<text x="${Number(mx) + 4}" y="${top + ph - 8}" fill="#666" font-size="12">${esc(opts.marker.label)}</text>`);
  }
  out.push(`<text x="${left + pw / 2}" y="${H - 15}" text-anchor="middle">${esc(opts.xLabel)}</text>`);
  out.push(`<text transform="translate(20 ${top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel + (opts.logY ? ' (log scale)' : ''))}</text>`);
  // Series with the same values (the hybrids are ns, to the bit, until they switch) are drawn 3 px
  // apart, as in the analysis plots, so that none hides another; merely close curves (the SVD
  // methods' losses) stay where they are.
  const offsets = coincidenceOffsets(
    series.map((s) => ({ name: s.label, points: s.points.filter((p): p is [number, number] => p[1] !== null) })),
    X,
    Y,
    false,
    !!opts.logY,
    3,
    0.05,
  );
  // Series.
  series.forEach((s, i) => {
    const dy = offsets[i];
    const color = PALETTE[i % PALETTE.length];
    const dash = s.dashed ? ' stroke-dasharray="7 4"' : '';
    let d = '';
    let pen = false;
    for (const [x, y] of s.points) {
      if (y === null || !Number.isFinite(y) || (opts.logY && y <= 0)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${X(x).toFixed(1)} ${(Y(y) + dy).toFixed(1)} `;
      pen = true;
    }
    if (d) out.push(`<path d="${d.trim()}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
    // Offset error bars a little per series so that overlapping ones stay visible.
    const off = (i - (series.length - 1) / 2) * 2.2;
    for (const [x, lo, hi] of s.bars ?? []) {
      const bx = (X(x) + off).toFixed(1);
      out.push(`<line x1="${bx}" x2="${bx}" y1="${Y(lo).toFixed(1)}" y2="${Y(hi).toFixed(1)}" stroke="${color}" stroke-width="1.5" opacity="0.7"/>`);
    }
    for (const [x, y] of s.points)
      if (y !== null && Number.isFinite(y) && s.points.length <= 30) out.push(`<circle cx="${X(x).toFixed(1)}" cy="${(Y(y) + dy).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = top + 10 + i * 24;
    out.push(`<line x1="${left + pw + 20}" x2="${left + pw + 50}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2.5"${dash}/>`);
    out.push(`<text x="${left + pw + 58}" y="${ly}" dominant-baseline="middle">${esc(s.label)}</text>`);
  });
  if (offsets.some((o) => o !== 0))
    out.push(`<text x="${left + pw + 20}" y="${top + 10 + series.length * 24 + 8}" fill="#666" font-size="11">series with the same values are drawn 3 px apart</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

// ---- the files of a run -------------------------------------------------------------------------

function plots(sums: Summary[], cfg: Config): Record<string, string> {
  const E = cfg.epochs;
  const epochs = Array.from({ length: E }, (_, i) => i + 1);
  const marker = cfg.runs.some((r) => r.includes('>')) ? { x: cfg.switchEpoch, label: 'hybrids switch →' } : undefined;
  const sub = `C = ${cfg.channels} > N = 49; ${cfg.train} training / ${cfg.test} test MNIST digits; ${cfg.seeds.length} seed(s)`;
  const accuracy: Series[] = sums.map((s) => ({
    label: shortLabel(s.run),
    dashed: s.run.includes('>'),
    points: epochs.map((e, i) => [e, s.epochAccuracyMean[i] === null ? null : 100 * (s.epochAccuracyMean[i] as number)]),
    bars: epochs.flatMap((e, i) => (s.epochAccuracyMin[i] === null ? [] : [[e, 100 * (s.epochAccuracyMin[i] as number), 100 * (s.epochAccuracyMax[i] as number)] as [number, number, number]])),
  }));
  const loss: Series[] = sums.map((s) => ({
    label: shortLabel(s.run),
    dashed: s.run.includes('>'),
    points: s.lossCurveMean.map((y, i) => [((i + 1) * E) / Math.max(1, s.lossCurveMean.length), y]),
  }));
  const grad: Series[] = sums.map((s) => ({
    label: shortLabel(s.run),
    dashed: s.run.includes('>'),
    points: epochs.map((e, i) => [e, s.epochGcpGradNormMax[i]]),
  }));
  return {
    'singular-gcp-accuracy.svg': lineChart(accuracy, { title: 'Test accuracy per epoch (mean over seeds; bars: min–max)', subtitle: sub, xLabel: 'epoch', yLabel: 'test accuracy (%)', marker }),
    'singular-gcp-loss.svg': lineChart(loss, {
      title: `Training loss (mean over seeds, windows of 1/${cfg.curvePoints} epoch)`,
      subtitle: sub,
      xLabel: 'epoch',
      yLabel: 'cross-entropy',
      xTicks: [0, ...epochs],
      xMin: 0,
      marker,
    }),
    'singular-gcp-gradnorm.svg': lineChart(grad, {
      title: 'Largest ‖∂L/∂F‖ of a step in each epoch, F = GCP input (mean over seeds)',
      subtitle: sub,
      xLabel: 'epoch',
      yLabel: 'gradient norm',
      logY: true,
      marker,
    }),
  };
}


/**
 * Writes singular-gcp.json (configuration, summary, every run), singular-gcp.md (the table) and
 * the three plots into `outDir`.
 */
export function writeResults(
  outDir: string,
  cfg: Config,
  records: RunRecord[],
  meta: { command: string; quick: boolean; complete: boolean; environment: Record<string, unknown>; wallSeconds: number },
): { sums: Summary[]; table: string } {
  const sums = summarize(records, cfg.runs, cfg.epochs);
  const table = markdownTable(sums, cfg.switchEpoch);
  const date = new Date().toISOString();
  const result = { date, command: meta.command, quick: meta.quick, complete: meta.complete, runsDone: records.length, runsPlanned: cfg.runs.length * cfg.seeds.length, config: cfg, environment: meta.environment, wallSeconds: meta.wallSeconds, chance: CHANCE, summary: sums, runs: records };
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, 'singular-gcp.json'), JSON.stringify(result, null, 1) + '\n');
  fs.writeFileSync(
    path.join(outDir, 'singular-gcp.md'),
    `<!-- written by ${meta.command} on ${date.slice(0, 10)} -->\n\n` +
      `${cfg.train} training / ${cfg.test} test digits, ${cfg.epochs} epochs, batch ${cfg.batch}, C = ${cfg.channels}, N = 49, ` +
      `${cfg.optimizer} lr ${cfg.lr}, seeds ${cfg.seeds.join(', ')}` +
      (meta.complete ? '' : ` — INCOMPLETE: ${records.length} of ${cfg.runs.length * cfg.seeds.length} runs done`) +
      `.\n\n${table}\n`,
  );
  for (const [name, svg] of Object.entries(plots(sums, cfg))) fs.writeFileSync(path.join(outDir, name), svg);
  return { sums, table };
}
