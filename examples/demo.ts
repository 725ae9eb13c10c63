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
  for (const method of METHODS) {
    const layer = new CovPoolLayer(method);
    await layer.forward(x); // warm-up
    const t0 = process.hrtime.bigint();
    const { output, state } = await layer.forward(x);
    const t1 = process.hrtime.bigint();
    const grad = await layer.backward(state, dy);
    const t2 = process.hrtime.bigint();
    state.dispose();
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
  console.log(
    '\nErrors are relative to svd-lyap in float64 (exact square root, exact gradient).\n' +
      'Large gradient errors of svd/svd-topn/svd-pade are the instability the ICCV 2021 paper\n' +
      'studies: their K = 1/(l_i - l_j) meets the many equal (floored) eigenvalues of a singular covariance.',
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
