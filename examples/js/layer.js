// covpool from plain JavaScript (CommonJS), as an installed package: the GCP layer's forward and
// backward on a batch of features, the hybrid method schedule, cancellation and memory control.
//   node node_modules/covpool/examples/js/layer.js
const { CovPoolLayer, MethodSchedule, Tensor, emptyCache, memoryStats } = require('covpool');

/** A batch of ReLU feature maps [B, C, H, W] from a seeded generator (the same on every run). */
function reluFeatures(B, C, H, W, seed = 1) {
  let s = seed >>> 0;
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  const data = new Float32Array(B * C * H * W);
  for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()));
  return new Tensor(data, [B, C, H, W]);
}

async function main() {
  const x = reluFeatures(8, 64, 7, 7); // N = 49 < C = 64: singular covariances, as in a real GCP head
  const layer = new CovPoolLayer({ method: 'ns', iterations: 5 });
  const schedule = MethodSchedule.hybrid(2, 'ns', 'svd-pade');

  for (let epoch = 0; epoch < 4; epoch++) {
    schedule.apply(layer, epoch);
    const { output, state } = await layer.forward(x);
    // L = ½‖output‖², so dL/d(output) = output.
    const dx = await layer.backward(state, output);
    let norm = 0;
    for (const v of dx.data) norm += v * v;
    console.log(`epoch ${epoch}: ${layer.method.padEnd(8)} output ${JSON.stringify(output.shape)}  ‖dL/dx‖ = ${Math.sqrt(norm).toExponential(3)}`);
  }

  // A call can be cancelled between batch items; it then rejects with an AbortError.
  const controller = new AbortController();
  const pending = layer.forward(reluFeatures(64, 64, 7, 7, 2), { signal: controller.signal });
  controller.abort();
  await pending.then(
    () => console.log('finished before the abort took effect'),
    (e) => console.log(`forward: ${e.name}`),
  );

  console.log('host memory:', memoryStats().host);
  console.log(`emptyCache released ${emptyCache()} bytes`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
