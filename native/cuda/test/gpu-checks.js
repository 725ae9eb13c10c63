// Robustness checks of the CUDA device through the public API, for the GPU machine
// (native/cuda/test/run-on-gpu.sh runs them; each prints one result line and exits non-zero on failure).
//
//   node native/cuda/test/gpu-checks.js memory     1000 layer forward+backward calls: GPU memory and
//                                                  host RSS must level off (no leak per call)
//   node native/cuda/test/gpu-checks.js oom        a batch larger than the GPU: a clear JS error, and
//                                                  the device keeps working afterwards
//   node native/cuda/test/gpu-checks.js baddevice  'cuda:N' past the last device: a RangeError
'use strict';
const { execFileSync } = require('child_process');
const path = require('path');
const covpool = require(path.resolve(__dirname, '../../../dist/lib'));
const { CovPoolLayer, Tensor, backendInfo } = covpool;


function features(B, C, N, seed = 1) {
  const x = new Float32Array(B * C * N);
  let s = seed;
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    x[i] = Math.max(0, s / 4294967296 - 0.5);
  }
  return new Tensor(x, [B, C, N]);
}

// This process's GPU memory in MiB, as nvidia-smi reports it (null where it cannot say).
function gpuMiB() {
  try {
    const out = execFileSync('nvidia-smi', ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'], { encoding: 'utf8' });
    for (const line of out.trim().split('\n')) {
      const [pid, mib] = line.split(',').map((v) => v.trim());
      if (Number(pid) === process.pid) return Number(mib);
    }
  } catch {
    /* no nvidia-smi */
  }
  return null;
}

function memory() {
  const x = features(32, 64, 49);
  const layers = ['ns', 'svd-pade', 'mpa-lya', 'svd-newton'].map((method) => new CovPoolLayer({ method, device: 'cuda' }));
  const sample = [];
  for (let i = 1; i <= 1000; i++) {
    const layer = layers[i % layers.length];
    const { output, state } = layer.forwardSync(x);
    layer.backwardSync(state, output);
    if (i % 2 === 0) state.dispose(); // half disposed explicitly, half left to the garbage collector
    if (i === 100 || i === 1000) {
      if (global.gc) global.gc();
      sample.push({ calls: i, gpuMiB: gpuMiB(), rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20) });
    }
  }
  const [a, b] = sample;
  const gpuGrowth = a.gpuMiB === null ? 0 : b.gpuMiB - a.gpuMiB;
  const rssGrowth = b.rssMiB - a.rssMiB;
  const ok = gpuGrowth <= 64 && rssGrowth <= 128;
  console.log(`${ok ? 'ok' : 'FAIL'} memory: 1000 fwd+bwd calls; after 100 / 1000 calls: GPU ${a.gpuMiB} / ${b.gpuMiB} MiB, host RSS ${a.rssMiB} / ${b.rssMiB} MiB`);
  if (!ok) process.exit(1);
}

function oom() {
  // B * C * C float64 covariances: 24000 * 1024^2 * 8 bytes = 200 GB, more than any single GPU has,
  // from a small input (24000 * 1024 * 2 float32 = 197 MB).
  const B = 24000, C = 1024, N = 2;
  let message = '';
  try {
    new CovPoolLayer({ method: 'svd-pade', device: 'cuda' }).forwardSync(features(B, C, N));
  } catch (e) {
    message = `${e.name}: ${e.message}`;
  }
  const clear = /out of GPU memory/.test(message);
  // The device must still work.
  const { output } = new CovPoolLayer({ method: 'ns', device: 'cuda' }).forwardSync(features(2, 16, 8));
  const works = output.data.every(Number.isFinite);
  console.log(`${clear && works ? 'ok' : 'FAIL'} oom: ${message || '(no error)'}; a small call afterwards ${works ? 'works' : 'fails'}`);
  if (!clear || !works) process.exit(1);
}

function badDevice() {
  const device = `cuda:${info.cudaDevices}`;
  let err = null;
  try {
    new CovPoolLayer({ method: 'ns', device }).forwardSync(features(2, 8, 4));
  } catch (e) {
    err = e;
  }
  const ok = err instanceof RangeError && new RegExp(`${device}`).test(err.message);
  console.log(`${ok ? 'ok' : 'FAIL'} baddevice: ${err ? `${err.name}: ${err.message}` : '(no error)'}`);
  if (!ok) process.exit(1);
}

const checks = { memory, oom, baddevice: badDevice };
const which = process.argv[2];
if (!checks[which]) {
  console.log(`usage: node native/cuda/test/gpu-checks.js ${Object.keys(checks).join('|')}`);
  process.exit(2);
}
const info = backendInfo();
if (!info.cuda || info.cudaDevices === 0) {
  console.log(`no CUDA device: ${info.cudaReason}`);
  process.exit(3);
}
checks[which]();
