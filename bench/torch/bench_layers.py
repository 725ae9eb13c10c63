"""Times forward + backward of bench/torch/gcp_layers.py's layers: the PyTorch side of covpool's
benchmarks. Writes JSON that `node dist/bench/cpu.js --anchor FILE` reads (rows keyed by B, C, N
with `<method>_<precision>_fwdbwd_ms` entries).

    python3 bench/torch/bench_layers.py [cpu|cuda|cuda:1|...] [out.json]

Environment: THREADS (CPU threads, default all cores), CONFIGS (JSON list of {"B","C","N"};
default: cpu-l and cpu-s on the CPU, the design's three GPU workloads on CUDA), METHODS
(comma-separated, default all ten at covpool's default precision), REPEATS (timed runs, median;
default 7 on the CPU, 20 on CUDA), WARMUP (untimed runs, default 2 / 5).
"""
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcp_layers as L  # noqa: E402

CPU_WORKLOADS = [dict(B=16, C=256, N=196), dict(B=64, C=64, N=49)]
GPU_WORKLOADS = [dict(B=128, C=256, N=196), dict(B=256, C=64, N=49), dict(B=1024, C=32, N=49)]


def main():
    device = torch.device(sys.argv[1] if len(sys.argv) > 1 else 'cpu')
    out = sys.argv[2] if len(sys.argv) > 2 else None
    cuda = device.type == 'cuda'
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # full float32, like covpool
        torch.backends.cudnn.allow_tf32 = False
    else:
        torch.set_num_threads(int(os.environ.get('THREADS', os.cpu_count())))
    workloads = json.loads(os.environ['CONFIGS']) if 'CONFIGS' in os.environ else (GPU_WORKLOADS if cuda else CPU_WORKLOADS)
    methods = os.environ['METHODS'].split(',') if os.environ.get('METHODS') else list(L.METHODS)
    repeats = int(os.environ.get('REPEATS', 20 if cuda else 7))
    warmup = int(os.environ.get('WARMUP', 5 if cuda else 2))

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def median_ms(fn, cpu_times=None):
        """Median wall-clock ms; with a list, the run's process CPU ms (all threads) go into it."""
        for _ in range(warmup):
            fn()
        sync()
        times = []
        for _ in range(repeats):
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
            if cpu_times is not None:
                cpu_times.append((time.process_time() - c0) * 1e3)
        times.sort()
        return times[len(times) // 2], times

    print(f'torch {torch.__version__} on {device}' + ('' if cuda else f', {torch.get_num_threads()} threads')
          + f', {repeats} timed runs (median) after {warmup}', flush=True)
    rows = []
    for w in workloads:
        B, C, N = w['B'], w['C'], w['N']
        gen = torch.Generator().manual_seed(C * 1000 + N)
        x = torch.relu(torch.randn(B, C, N, generator=gen)).to(device)
        dy = torch.randn(B, C * (C + 1) // 2, generator=gen).to(device)
        row = dict(B=B, C=C, N=N)
        # The pieces covpool's benchmark also times.
        row['covpool_ms'], _ = median_ms(lambda: L.covariance(x, torch.float32))
        a32 = L.covariance(x, torch.float32)
        a64 = L.covariance(x, torch.float64)
        row['eigh_f32_ms'], _ = median_ms(lambda: torch.linalg.eigh(a32))
        row['eigh_f64_ms'], _ = median_ms(lambda: torch.linalg.eigh(a64))
        samples = {}
        for method in methods:
            precision = L.default_precision(method, x.dtype)
            key = f'{method}_{str(precision).replace("torch.", "")}_fwdbwd_ms'

            def step():
                xg = x.clone().requires_grad_(True)
                y = L.gcp_layer(method, xg, precision)
                y.backward(dy)
                return xg.grad

            try:
                cpu = []
                row[key], samples[key] = median_ms(step, cpu)
                # CPU time of the process, all threads: robust to other load where wall-clock is not
                # (with one thread it is the work done; with more it includes OpenMP's spin-waits).
                row[key.replace('_fwdbwd_ms', '_fwdbwd_cpu_ms')] = sorted(cpu)[len(cpu) // 2]
                print(f'  {B}x{C}x{N} {method:11s} {str(precision)[6:]:8s} {row[key]:9.2f} ms', flush=True)
            except Exception as e:  # record the failure (e.g. a solver that rejects the input)
                row[key] = 'ERR ' + str(e).splitlines()[0][:160]
                print(f'  {B}x{C}x{N} {method:11s} ERROR {row[key]}', flush=True)
        row['samples_ms'] = samples
        rows.append(row)
    result = dict(
        kind='covpool-torch-bench', device=str(device), torch=torch.__version__,
        device_name=torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
        threads=None if cuda else torch.get_num_threads(), repeats=repeats, warmup=warmup,
        blas=None if cuda else torch.__config__.show().splitlines()[:12],
        # Which kernels ran: ATen's vector code (ATEN_CPU_CAPABILITY caps it) and the settings that
        # cap oneMKL / oneDNN (bench/run-cpu.sh sets them for CPU_KERNELS=avx2).
        cpu_capability=None if cuda else torch.backends.cpu.get_cpu_capability(),
        env={k: os.environ[k] for k in ('ATEN_CPU_CAPABILITY', 'MKL_ENABLE_INSTRUCTIONS', 'ONEDNN_MAX_CPU_ISA', 'OMP_NUM_THREADS') if k in os.environ},
        date=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), rows=rows)
    if out:
        with open(out, 'w') as f:
            json.dump(result, f, indent=1)
        print(f'wrote {out}')


if __name__ == '__main__':
    main()
