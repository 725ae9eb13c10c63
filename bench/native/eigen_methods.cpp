// Microbenchmark of one item of the eigen methods (native/cpu/eigen_sqrtm.h, symmetric_eigen.h,
// covariance.h) in float64, as the layer runs it: thread CPU time per item, single-threaded BLAS,
// on covariances of centred ReLU features (cpu-s: n = 64, N = 49; cpu-l: n = 256, N = 196). The
// kernels in use follow OPENBLAS_CORETYPE and COVPOOL_CPU_SIMD, as in the addon.
//
//   g++ -O3 -std=c++17 bench/native/eigen_methods.cpp -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas -llapacke -o /tmp/covpool-eigen && /tmp/covpool-eigen
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "../../native/cpu/covariance.h"
#include "../../native/cpu/eigen_sqrtm.h"
#include "cpu_timer.h"

extern "C" void openblas_set_num_threads(int);

using namespace covpool;
using namespace covpool::cpu;

static void run(int n, int N, int reps) {
  using T = double;
  const int items = 4;
  const std::size_t m = static_cast<std::size_t>(n) * n, cn = static_cast<std::size_t>(n) * N;
  std::mt19937 g(5);
  std::normal_distribution<double> d;
  std::vector<float> x(items * cn);
  for (auto& v : x) v = std::max(0.0f, static_cast<float>(d(g)));
  std::vector<T> xc(items * cn), a(items * m), a0(items * m), w(items * m), l(items * n), s(m), ds(m), da(m), dx(cn), work(4 * m);
  for (auto& v : ds) v = d(g);
  T* as[4];
  T* ws[4];
  T* ls[4];
  int info[4];
  for (int b = 0; b < items; ++b) {
    as[b] = a.data() + b * m;
    ws[b] = w.data() + b * m;
    ls[b] = l.data() + b * n;
  }
  auto cov = [&] {
    for (int b = 0; b < items; ++b) {
      centerFeatures(x.data() + b * cn, xc.data() + b * cn, n, N, false);
      covarianceForward(xc.data() + b * cn, a.data() + b * m, n, N);
    }
  };
  cov();
  for (int b = 0; b < items; ++b) {  // trace-normalized, as the layer's default
    const T tr = trace(a.data() + b * m, n);
    for (std::size_t i = 0; i < m; ++i) a[b * m + i] /= tr;
  }
  a0 = a;
  const double covUs = cpuUs(cov, reps) / items;
  const double eighUs = cpuUs([&] { a = a0; eighBatch(n, items, as, ws, ls, info); }, reps) / items - cpuUs([&] { a = a0; }, reps) / items;
  a = a0;
  eighBatch(n, items, as, ws, ls, info);
  const double sqrtUs = cpuUs([&] { for (int b = 0; b < items; ++b) eigenSqrtFromEigen(s.data(), ws[b], ls[b], n, T(1e-16), 0, work.data()); }, reps) / items;
  SqrtmOptions svd, lyap;
  svd.method = Method::SVD;
  lyap.method = Method::SVD_LYAP;
  const double bwdSvdUs = cpuUs([&] { for (int b = 0; b < items; ++b) eigenSqrtBackward(svd, ds.data(), da.data(), ws[b], ls[b], n, nullptr, work.data()); }, reps) / items;
  const double bwdLyapUs = cpuUs([&] { for (int b = 0; b < items; ++b) eigenSqrtBackward(lyap, ds.data(), da.data(), ws[b], ls[b], n, nullptr, work.data()); }, reps) / items;
  symmetrize(ds.data(), da.data(), n);
  const double covBwdUs = cpuUs([&] { for (int b = 0; b < items; ++b) covarianceBackward(xc.data() + b * cn, da.data(), dx.data(), n, N, false, true); }, reps) / items;
  const double gemmUs = cpuUs([&] { for (int b = 0; b < items; ++b) gemm(false, false, n, T(1), ws[b], ds.data(), T(0), work.data()); }, reps) / items;
  std::printf("float64 n = %3d [OpenBLAS %s, covpool %s], us per item (GEMM = %.1f us):\n", n, openblas_get_corename ? openblas_get_corename() : "?",
              simdLevelName(simdLevel()), gemmUs);
  std::printf("    centring + covariance      %8.1f\n    eigendecomposition         %8.1f\n    S from it                  %8.1f\n", covUs, eighUs, sqrtUs);
  std::printf("    backward svd               %8.1f (%.2f GEMMs)\n    backward svd-lyap          %8.1f (%.2f GEMMs)\n    covariance backward        %8.1f\n",
              bwdSvdUs, bwdSvdUs / gemmUs, bwdLyapUs, bwdLyapUs / gemmUs, covBwdUs);
}

int main() {
  openblas_set_num_threads(1);  // as the addon runs it (blas.cpp)
  run(64, 49, 41);
  run(256, 196, 9);
  return 0;
}
