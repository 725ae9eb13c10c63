// Microbenchmark of the iterative methods' kernels, Newton-Schulz (native/cpu/newton_schulz.h) and
// MPA-Lya (native/cpu/mpa_lya.h), and of the GEMMs they are made of: thread CPU time per matrix,
// single-threaded BLAS as covpool runs it, on normalized covariances of centred ReLU features
// (cpu-s: n = 64, N = 49; cpu-l: n = 256, N = 196). The kernels in use follow OPENBLAS_CORETYPE
// and COVPOOL_CPU_SIMD, as in the addon.
//
//   g++ -O3 -std=c++17 bench/native/iterations.cpp native/core/pade.cpp -I/usr/include/x86_64-linux-gnu/openblas-pthread
//       -lopenblas -llapacke -o /tmp/covpool-iterations && /tmp/covpool-iterations   (one command)
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../../native/core/pade.h"
#include "../../native/cpu/blas.h"
#include "../../native/cpu/mpa_lya.h"
#include "../../native/cpu/newton_schulz.h"
#include "cpu_timer.h"

extern "C" void openblas_set_num_threads(int);

using namespace covpool;
using namespace covpool::cpu;

// The normalized covariance (trace 1) of centred ReLU features, n channels, N positions.
template <class T> static std::vector<T> normalizedCovariance(int n, int N, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> d;
  const std::size_t m = static_cast<std::size_t>(n) * n;
  std::vector<double> x(static_cast<std::size_t>(n) * N), a(m);
  for (auto& v : x) v = std::max(0.0, d(g));
  for (int i = 0; i < n; ++i) {
    double mu = 0;
    for (int k = 0; k < N; ++k) mu += x[i * N + k];
    for (int k = 0; k < N; ++k) x[i * N + k] -= mu / N;
  }
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, N, 1.0 / N, x.data(), N, 0.0, a.data(), n);
  mirrorUpper(a.data(), n);
  double tr = 0;
  for (int i = 0; i < n; ++i) tr += a[i * n + i];
  std::vector<T> out(m);
  for (std::size_t i = 0; i < m; ++i) out[i] = static_cast<T>(a[i] / tr);
  return out;
}

// The previous grouping (3.5 GEMMs of flops a step: B C, B (B C), (B C) B, B^2, B^3), kept as the
// yardstick of lyapunovSignIteration's time and agreement.
template <class T> void lyapunovPrevious(const T* sNorm, const T* g, T* out, int n, int iters, T* work) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  T *b = work, *c = work + m, *b2 = work + 2 * m, *bc = work + 3 * m, *y = work + 4 * m, *x = work + 5 * m;
  std::copy(sNorm, sNorm + m, b);
  symmetrize(g, c, n);
  for (int it = 0; it < iters; ++it) {
    gemm(false, false, n, T(1), b, c, T(0), bc);
    gemm(false, false, n, T(1), b, bc, T(0), y);
    symmetrize(y, y, n);
    symProduct(n, T(0.5), bc, b, x);
    for (std::size_t i = 0; i < m; ++i) x[i] += T(1.5) * c[i] - y[i];
    std::swap(c, x);
    if (it + 1 < iters) {
      symProduct(n, T(1), b, b, b2);
      symProduct(n, T(-0.5), b, b2, x);
      for (std::size_t i = 0; i < m; ++i) x[i] += T(1.5) * b[i];
      std::swap(b, x);
    }
  }
  for (std::size_t i = 0; i < m; ++i) out[i] = T(0.5) * c[i];
}

template <class T> static void run(int n, int N, int reps) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  const int items = n > 100 ? 4 : 32;
  const PadeCoefficients pade = sqrtPade(5);
  std::vector<std::vector<T>> a, s(items, std::vector<T>(m)), g(items, std::vector<T>(m)), x(items, std::vector<T>(m));
  std::vector<T> work(16 * m);
  std::vector<lapack_int> ipiv(n);
  std::mt19937 gen(3);
  std::normal_distribution<double> d;
  for (int b = 0; b < items; ++b) {
    a.push_back(normalizedCovariance<T>(n, N, 10 + b));
    mpaForward(a[b].data(), s[b].data(), n, pade, work.data(), ipiv.data());
    for (auto& v : g[b]) v = static_cast<T>(d(gen));
  }
  const char* ty = sizeof(T) == 4 ? "float32" : "float64";
  std::vector<T> c(m);
  const double gemmUs = cpuUs([&] { for (int b = 0; b < items; ++b) gemm(false, false, n, T(1), s[b].data(), g[b].data(), T(0), c.data()); }, reps) / items;
  const double upperUs = cpuUs([&] { for (int b = 0; b < items; ++b) gemmUpper(n, T(1), s[b].data(), g[b].data(), T(0), c.data()); }, reps) / items;
  const double fwdUs = cpuUs([&] { for (int b = 0; b < items; ++b) mpaForward(a[b].data(), x[b].data(), n, pade, work.data(), ipiv.data()); }, reps) / items;
  const double bwdUs = cpuUs([&] { for (int b = 0; b < items; ++b) lyapunovSignIteration(s[b].data(), g[b].data(), x[b].data(), n, 8, work.data()); }, reps) / items;
  const double prevUs = cpuUs([&] { for (int b = 0; b < items; ++b) lyapunovPrevious(s[b].data(), g[b].data(), c.data(), n, 8, work.data()); }, reps) / items;
  // Agreement of the two groupings: max |difference| / max |X| over the items.
  double diff = 0, scale = 0;
  for (int b = 0; b < items; ++b) {
    lyapunovPrevious(s[b].data(), g[b].data(), c.data(), n, 8, work.data());
    lyapunovSignIteration(s[b].data(), g[b].data(), x[b].data(), n, 8, work.data());
    for (std::size_t i = 0; i < m; ++i) {
      diff = std::max(diff, std::fabs(static_cast<double>(c[i]) - x[b][i]));
      scale = std::max(scale, std::fabs(static_cast<double>(c[i])));
    }
  }
  const double gf = 2.0 * n * n * n / 1e3;  // MFLOP of one GEMM / 1e3 = flops per us / 1e3
  printf("%s n = %3d: GEMM %7.1f us (%5.1f GFLOP/s), gemmUpper %7.1f us (%.2f of a GEMM)   [OpenBLAS %s, covpool %s]\n", ty, n, gemmUs, gf / gemmUs, upperUs,
         upperUs / gemmUs, openblas_get_corename ? openblas_get_corename() : "?", simdLevelName(simdLevel()));
  printf("    mpaForward (degree 5)           %8.1f us = %5.2f GEMMs\n", fwdUs, fwdUs / gemmUs);
  printf("    lyapunovSignIteration (8 steps) %8.1f us = %5.2f GEMMs\n", bwdUs, bwdUs / gemmUs);
  printf("    the previous grouping           %8.1f us = %5.2f GEMMs (max difference %.1e of max |X|)\n", prevUs, prevUs / gemmUs, diff / scale);
  // Newton-Schulz, T = 5, as the layer runs it: the tape's forward, then the backward.
  const int T_ = 5;
  std::vector<T> tape(NsTape<T>::matricesNeeded(T_) * m * items), nsWork(nsWorkMatrices * m);
  std::vector<NsTape<T>> tapes(items);
  for (int b = 0; b < items; ++b) tapes[b].bind(tape.data() + b * NsTape<T>::matricesNeeded(T_) * m, n, T_, a[b].data());
  const double nsFwdUs = cpuUs([&] { for (int b = 0; b < items; ++b) nsForward(x[b].data(), tapes[b]); }, reps) / items;
  const double nsBwdUs = cpuUs([&] { for (int b = 0; b < items; ++b) nsBackward(g[b].data(), c.data(), tapes[b], nsWork.data()); }, reps) / items;
  printf("    nsForward (T = 5)               %8.1f us = %5.2f GEMMs (6 GEMMs of flops)\n", nsFwdUs, nsFwdUs / gemmUs);
  printf("    nsBackward (T = 5)              %8.1f us = %5.2f GEMMs (12 GEMMs of flops)\n", nsBwdUs, nsBwdUs / gemmUs);
}

int main() {
  openblas_set_num_threads(1);
  run<float>(64, 49, 21);
  run<float>(256, 196, 9);
  return 0;
}
