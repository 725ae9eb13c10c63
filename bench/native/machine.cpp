// What the CPU benchmark needs to know about the machine it runs on, as JSON on stdout:
//   - the kernels in use: OpenBLAS's core type (its own pick or OPENBLAS_CORETYPE) and covpool's
//     SIMD level (native/cpu/simd_level.h: the CPU's, capped by COVPOOL_CPU_SIMD), the CPU model
//     and whether it has AVX-512;
//   - the GEMM rate behind the Newton-Schulz floor (bench/cpu.ts): n x n x n products at the
//     workloads' sizes, float32 and float64, on `threads` threads at once (one product per thread,
//     single-threaded BLAS, as the layers run them), by OpenBLAS and by covpool's own kernels
//     (native/cpu/small_gemm.h); the floor takes the faster of the two.
//
//   g++ -O3 -std=c++17 -pthread bench/native/machine.cpp -I/usr/include/x86_64-linux-gnu/openblas-pthread \
//       -lopenblas -o build/covpool-machine && build/covpool-machine --threads 2 --sizes 64,256
// (bench/run-cpu.sh builds and runs it.)
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../../native/cpu/blas.h"

extern "C" void openblas_set_num_threads(int);

using namespace covpool::cpu;

static std::string cpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto p = line.find(':');
      if (p != std::string::npos) return line.substr(p + 2);
    }
  return "?";
}

static std::string jsonString(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + "\"";
}

// Aggregate GFLOP/s of `threads` threads each running n x n x n products for about `ms` ms, the
// median of `rounds` such runs. own: covpool's kernels (gemm() of blas.h, which takes them where
// they apply); otherwise OpenBLAS directly.
template <class T> static double gemmRate(int n, int threads, bool own, int ms, int rounds) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  std::vector<double> rates;
  for (int round = 0; round < rounds; ++round) {
    std::atomic<long> calls{0};
    std::atomic<bool> stop{false};
    std::atomic<int> ready{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        T* a = static_cast<T*>(std::aligned_alloc(64, (m * sizeof(T) + 63) / 64 * 64));
        T* b = static_cast<T*>(std::aligned_alloc(64, (m * sizeof(T) + 63) / 64 * 64));
        T* c = static_cast<T*>(std::aligned_alloc(64, (m * sizeof(T) + 63) / 64 * 64));
        std::mt19937 g(7 + t);
        std::normal_distribution<double> d;
        for (std::size_t i = 0; i < m; ++i) { a[i] = static_cast<T>(d(g)); b[i] = static_cast<T>(d(g)); }
        ready.fetch_add(1);
        while (ready.load() < threads) std::this_thread::yield();
        long mine = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          if (own) gemm(false, false, n, T(1), a, b, T(0), c);
          else blasGemm(false, false, n, n, n, T(1), a, n, b, n, T(0), c, n);
          ++mine;
        }
        calls.fetch_add(mine);
        std::free(a);
        std::free(b);
        std::free(c);
      });
    while (ready.load() < threads) std::this_thread::yield();
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    stop.store(true);
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(2.0 * n * n * static_cast<double>(n) * calls.load() / s / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

int main(int argc, char** argv) {
  int threads = 1, ms = 200, rounds = 5;
  std::vector<int> sizes = {64, 256};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
    else if (a == "--ms" && i + 1 < argc) ms = std::max(10, std::atoi(argv[++i]));
    else if (a == "--rounds" && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else if (a == "--sizes" && i + 1 < argc) {
      sizes.clear();
      for (const char* p = argv[++i]; *p;) {
        sizes.push_back(std::atoi(p));
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
      }
    } else {
      std::fprintf(stderr, "usage: covpool-machine [--threads N] [--sizes 64,256] [--ms 200] [--rounds 5]\n");
      return 2;
    }
  }
  openblas_set_num_threads(1);
  __builtin_cpu_init();
  const char* core = openblas_get_corename ? openblas_get_corename() : nullptr;
  std::printf("{\n \"cpu_model\": %s,\n \"cpu_avx512f\": %s,\n \"cpu_avx2_fma\": %s,\n", jsonString(cpuModel()).c_str(),
              __builtin_cpu_supports("avx512f") ? "true" : "false",
              __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "true" : "false");
  std::printf(" \"openblas_core\": %s,\n \"covpool_simd\": %s,\n", jsonString(core ? core : "?").c_str(), jsonString(simdLevelName(simdLevel())).c_str());
  const char* envs[] = {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "COVPOOL_CPU_SIMD", "COVPOOL_CPU_BASELINE"};
  std::printf(" \"env\": {");
  bool first = true;
  for (const char* e : envs)
    if (const char* v = std::getenv(e)) {
      std::printf("%s%s: %s", first ? "" : ", ", jsonString(e).c_str(), jsonString(v).c_str());
      first = false;
    }
  std::printf("},\n \"threads\": %d,\n \"gemm_gflops\": [", threads);
  first = true;
  for (int n : sizes) {
    const double f32b = gemmRate<float>(n, threads, false, ms, rounds), f32o = gemmRate<float>(n, threads, true, ms, rounds);
    const double f64b = gemmRate<double>(n, threads, false, ms, rounds), f64o = gemmRate<double>(n, threads, true, ms, rounds);
    std::printf("%s\n  {\"n\": %d, \"float32_openblas\": %.1f, \"float32_covpool\": %.1f, \"float32\": %.1f, "
                "\"float64_openblas\": %.1f, \"float64_covpool\": %.1f, \"float64\": %.1f}",
                first ? "" : ",", n, f32b, f32o, std::max(f32b, f32o), f64b, f64o, std::max(f64b, f64o));
    first = false;
  }
  std::printf("\n ]\n}\n");
  return 0;
}
