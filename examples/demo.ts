// The covpool demo: a synthetic batch of ReLU feature maps (what a CNN's last conv layer hands a
// GCP head; N < C, so every covariance is singular) goes through the GCP layer with each of the ten
// methods. For each it prints how far the output and the gradient are from the exact ones
// (eigendecomposition forward with the exact Lyapunov gradient, in float64) and the time taken.
//
//   npm run demo                      B=8, C=256, N=196 (the ImageNet iSQRT-COV head, smaller batch)
//   COVPOOL_DEMO_QUICK=1 npm run demo B=4, C=64, N=49
import { CovPoolLayer, METHODS, Tensor, backendInfo } from '../lib';

const quick = !!process.env.COVPOOL_DEMO_QUICK;
const [B, C, H, W] = quick ? [4, 64, 7, 7] : [8, 256, 14, 14];

function reluFeatures(): Tensor {
  let s = 12345; // small LCG + Box-Muller: the same batch on every machine
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  const data = new Float32Array(B * C * H * W);
  for (let i = 0; i < data.length; i++)
    data[i] = Math.max(0, Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()));
  return new Tensor(data, [B, C, H, W]);
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

function nonFinite(a: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) n++;
  return n;
}

/** One method's measurements, as the table prints them. */
export interface DemoRow {
  method: string;
  outputErr: number;
  gradErr: number;
  nonFinite: number;
}

// Why a method's gradient differs from the exact one: facts about each method (see docs/methods.md's
// methods table), attached to whichever group the measured numbers put the method in.
const GRADIENT_REASON: Record<string, string> = {
  ns: 'differentiates its 5 Newton-Schulz iterations, which do not converge on the smallest eigenvalues',
  'svd-newton': 'differentiates 5 Newton-Schulz iterations at A',
  'mpa-lya': 'solves the Lyapunov equation with a few Newton-Schulz sign iterations around an approximate forward',
  'svd-taylor': "truncates K's series at degree 100",
  'svd-pi': "truncates K's power-iteration series",
  'svd-trunc': 'clips K at ±kappa',
  'svd-topn': 'floors the eigenvalues below its top n',
};

// Methods whose backward differentiates an iteration rather than the exact square root.
const ITERATIVE_BACKWARD = ['ns', 'svd-newton', 'mpa-lya'];

const fmt = (v: number): string => v.toExponential(1);
const range = (rows: DemoRow[], key: 'gradErr' | 'outputErr'): string => {
  const v = rows.map((r) => r[key]);
  const lo = Math.min(...v), hi = Math.max(...v);
  return lo === hi ? fmt(lo) : `${fmt(lo)}–${fmt(hi)}`;
};

/**
 * The text under the table, derived from the table's own numbers: which methods' gradients agree
 * with the exact one, which are biased and by how much, and why (from what each method computes).
 */
export function summarize(rows: DemoRow[], reference = 'svd-lyap'): string {
  const others = rows.filter((r) => r.method !== reference);
  const close = others.filter((r) => r.gradErr < 1e-3);
  const biased = others.filter((r) => r.gradErr >= 1e-3 && r.gradErr < 0.1);
  const far = others.filter((r) => r.gradErr >= 0.1);
  const names = (g: DemoRow[]): string => g.map((r) => r.method).join(', ');
  const why = (g: DemoRow[]): string =>
    g.filter((r) => GRADIENT_REASON[r.method]).map((r) => `${r.method} ${GRADIENT_REASON[r.method]}`).join('; ');
  const lines = [`Errors are relative to ${reference} in float64 (exact square root, exact gradient).`];
  const approxForward = others.filter((r) => r.outputErr >= 1e-3);
  if (approxForward.length)
    lines.push(`Forward: ${names(approxForward)} approximate the square root (output error ${range(approxForward, 'outputErr')}); the others are exact up to rounding.`);
  if (close.length) {
    let t = `Gradients within ${fmt(Math.max(...close.map((r) => r.gradErr)))} of exact: ${names(close)}`;
    const svd = close.find((r) => r.method === 'svd'), pade = close.find((r) => r.method === 'svd-pade');
    if (svd && pade && fmt(svd.gradErr) === fmt(pade.gradErr)) t += ' (svd-pade equals svd here: its Padé K is 1/(1 − r) exactly)';
    if (svd) t += ". svd's K is ±∞ at the tied (floored) eigenvalues; replaced per matrix, those entries do not spoil its gradient here";
    lines.push(t + '.');
  }
  if (biased.length) lines.push(`Biased by ${range(biased, 'gradErr')}: ${names(biased)}${why(biased) ? ` (${why(biased)})` : ''}.`);
  if (far.length) {
    const iterative = far.every((r) => ITERATIVE_BACKWARD.includes(r.method));
    lines.push(
      `Off by ${range(far, 'gradErr')}: ${names(far)}${why(far) ? ` (${why(far)})` : ''}.` +
        (iterative ? ' These are gradients of a smoother function, what the ICCV 2021 paper credits for Newton-Schulz training well; not a bug.' : ''),
    );
  }
  const bad = others.filter((r) => r.nonFinite > 0);
  lines.push(bad.length ? `Non-finite gradient entries: ${bad.map((r) => `${r.method} ${r.nonFinite}`).join(', ')}.` : 'No method produced a non-finite gradient entry.');
  return lines.join('\n');
}

async function main(): Promise<void> {
  const info = backendInfo();
  const x = reluFeatures();
  console.log(`covpool demo — backend ${info.backend}, ${info.threads} threads`);
  console.log(`features [${x.shape.join(', ')}] float32, ReLU (N = ${H * W} < C = ${C}: singular covariances)\n`);

  // dL/dy: a fixed pseudo-random direction, the same for every method.
  const exactLayer = new CovPoolLayer({ method: 'svd-lyap', precision: 'float64' });
  const ref = await exactLayer.forward(x);
  const dy = new Tensor(Float32Array.from({ length: ref.output.size }, (_, i) => Math.sin(0.7 * i + 1)), ref.output.shape);
  const refGrad = await exactLayer.backward(ref.state, dy);

  const rows: string[][] = [];
  const measured: DemoRow[] = [];
  for (const method of METHODS) {
    const layer = new CovPoolLayer(method);
    await layer.forward(x); // warm-up
    const t0 = process.hrtime.bigint();
    const { output, state } = await layer.forward(x);
    const t1 = process.hrtime.bigint();
    const grad = await layer.backward(state, dy);
    const t2 = process.hrtime.bigint();
    state.dispose();
    measured.push({ method, outputErr: relErr(output.data, ref.output.data), gradErr: relErr(grad.data, refGrad.data), nonFinite: nonFinite(grad.data) });
    rows.push([
      method,
      String(state.options.precision),
      relErr(output.data, ref.output.data).toExponential(2),
      relErr(grad.data, refGrad.data).toExponential(2),
      String(nonFinite(grad.data)),
      (Number(t1 - t0) / 1e6).toFixed(1),
      (Number(t2 - t1) / 1e6).toFixed(1),
    ]);
  }
  const head = ['method', 'spectral', 'output rel.err', 'grad rel.err', 'non-finite', 'fwd ms', 'bwd ms'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  rows.forEach((r) => console.log(line(r)));
  console.log('\n' + summarize(measured));
}

if (require.main === module)
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
