// Robustness checks of the CUDA device through the public API, for the GPU machine
// (native/cuda/test/run-on-gpu.sh runs them) and the emulated device (scripts/cuda-emu.sh runs them
// with COVPOOL_ADDON naming the emulated build); each prints one result line and exits non-zero on
// failure.
//
//   node native/cuda/test/gpu-checks.js memory     1000 layer forward+backward calls: covpool's device
//                                                  memory returns to its baseline once the states are
//                                                  gone, GPU memory and host RSS level off (no leak)
//   node native/cuda/test/gpu-checks.js oom        a batch larger than the GPU: a clear JS error, and
//                                                  the device keeps working afterwards
//   node native/cuda/test/gpu-checks.js baddevice  'cuda:N' past the last device: a RangeError
'use strict';
const { execFileSync } = require('child_process');
const path = require('path');
const covpool = require(path.resolve(__dirname, '../../../dist/lib'));
const { CovPoolLayer, Tensor, backendInfo } = covpool;
const native = () => require(path.resolve(__dirname, '../../../dist/lib/native')).native();


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

// covpool's own device accounting (memoryStats) for cuda:0, in bytes.
function deviceBytes() {
  const d = covpool.memoryStats().devices.find((e) => e.device === 'cuda:0');
  return d ? { allocated: d.allocatedBytes, cached: d.cachedBytes } : { allocated: 0, cached: 0 };
}

function memory() {
  // The emulated device runs kernels thread by thread on the CPU: small shapes there (one syevj and
  // one XsyevBatched size), the ImageNet-like one on a GPU.
  const shapes = info.cudaEmulated ? [features(4, 16, 8), features(2, 40, 20)] : [features(32, 64, 49)];
  const layers = ['ns', 'svd-pade', 'mpa-lya', 'svd-newton', 'svd'].map((method) => new CovPoolLayer({ method, device: 'cuda' }));
  const base = deviceBytes();
  const sample = [];
  for (let i = 1; i <= 1000; i++) {
    const layer = layers[i % layers.length];
    const { output, state } = layer.forwardSync(shapes[i % shapes.length]);
    layer.backwardSync(state, output);
    if (i % 2 === 0) state.dispose(); // half disposed explicitly, half left to the garbage collector
    if (i === 100 || i === 1000) {
      if (global.gc) global.gc();
      sample.push({ calls: i, gpuMiB: gpuMiB(), rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20), device: deviceBytes() });
    }
  }
  const [a, b] = sample;
  const gpuGrowth = a.gpuMiB === null ? 0 : b.gpuMiB - a.gpuMiB;
  const rssGrowth = b.rssMiB - a.rssMiB;
  // Every state gone (the collector's included), covpool's device memory in use is back at its
  // baseline, and what stays parked in the cache did not grow after the first 100 calls.
  layers.length = 0;
  for (let k = 0; k < 3 && global.gc; k++) global.gc();
  covpool.memoryStats(); // sweeps the states the collector freed
  const end = deviceBytes();
  const released = covpool.emptyCache();
  const after = deviceBytes();
  const emu = info.cudaEmulated ? native().info().cudaEmulator : null;
  const leakFree = !global.gc || end.allocated === base.allocated;
  const cacheSteady = b.device.cached <= a.device.cached + (2 << 20);
  const emuClean = !emu || (emu.violations === 0 && emu.liveDeviceBlocks === 0);
  const ok = gpuGrowth <= 64 && rssGrowth <= 128 && leakFree && cacheSteady && after.cached === 0 && emuClean;
  console.log(
    `${ok ? 'ok' : 'FAIL'} memory: 1000 fwd+bwd calls; after 100 / 1000 calls: GPU ${a.gpuMiB} / ${b.gpuMiB} MiB, host RSS ${a.rssMiB} / ${b.rssMiB} MiB, ` +
      `covpool device memory cached ${a.device.cached} / ${b.device.cached} B; in use before / after ${base.allocated} / ${end.allocated} B` +
      `${global.gc ? '' : ' (run with --expose-gc to check the collector\'s states too)'}; emptyCache released ${released} B` +
      (emu ? `; emulated device: ${emu.violations} violation(s), ${emu.liveDeviceBlocks} block(s) left` : ''),
  );
  if (!ok) process.exit(1);
}

function oom() {
  // B * C * C float64 covariances: 24000 * 1024^2 * 8 bytes = 200 GB, more than any single GPU has,
  // from a small input (24000 * 1024 * 2 float32 = 197 MB). The emulated device has 4 GiB
  // (COVPOOL_EMU_DEVICE_MB): 600 items (5 GB) are enough there.
  const B = info.cudaEmulated ? 600 : 24000, C = 1024, N = 2;
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
