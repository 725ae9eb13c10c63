// Kernel microbenchmark behind the README's profile: CPU time (this thread only, so other load on
// the machine hardly matters) of the LAPACK symmetric eigensolvers and their parts on covariance
// matrices of the two CPU workloads, of covpool's own eigensolver (native/cpu/symmetric_eigen.h,
// one matrix and four at a time) and the stages it replaces (its tridiagonal solvers against
// ?stedc and the others), and of gemmUpper (native/cpu/blas.h) against a full GEMM.
// Single-threaded OpenBLAS, as covpool runs it.
//
//   g++ -O3 -std=c++17 bench/native/kernels.cpp -I/usr/include/x86_64-linux-gnu/openblas-pthread \
//       -lopenblas -llapacke -o /tmp/covpool-kernels && /tmp/covpool-kernels
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "../../native/cpu/blas.h"
#include "../../native/cpu/symmetric_eigen.h"
#include "cpu_timer.h"

extern "C" void openblas_set_num_threads(int);

using namespace covpool::cpu;

// `items` covariances of centred ReLU features (n channels, N positions): rank N - 1 < n for cpu-s.
static std::vector<double> covariances(int n, int N, int items) {
  std::mt19937 g(1);
  std::normal_distribution<double> d;
  const std::size_t m = static_cast<std::size_t>(n) * n;
  std::vector<double> a(m * items), x(static_cast<std::size_t>(n) * N);
  for (int b = 0; b < items; ++b) {
    for (auto& v : x) v = std::max(0.0, d(g));
    for (int i = 0; i < n; ++i) {
      double mu = 0;
      for (int k = 0; k < N; ++k) mu += x[i * N + k];
      for (int k = 0; k < N; ++k) x[i * N + k] -= mu / N;
    }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, N, 1.0 / N, x.data(), N, 0.0, a.data() + b * m, n);
    mirrorUpper(a.data() + b * m, n);
  }
  return a;
}

static void eigensolvers(int n, int N, int items, int reps) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  const std::vector<double> a = covariances(n, N, items);
  std::vector<double> w(m), z(m), l(n), d(n), e(n), tau(n), d0, e0, scratch(3 * static_cast<std::size_t>(n)), btWork(64 * static_cast<std::size_t>(n) + 1024);
  std::vector<double> work(4 * (1 + 6 * static_cast<std::size_t>(n) + 2 * m) + 64 * static_cast<std::size_t>(n));
  std::vector<lapack_int> iwork(20 * static_cast<std::size_t>(n) + 16), isuppz(2 * n);
  const lapack_int lw = static_cast<lapack_int>(work.size()), liw = static_cast<lapack_int>(iwork.size());
  // Per matrix, over all items (each call starts from a fresh copy of its matrix).
  auto full = [&](auto&& solve) {
    return cpuUs([&] {
      for (int b = 0; b < items; ++b) {
        std::copy(a.begin() + b * m, a.begin() + (b + 1) * m, w.begin());
        solve();
      }
    }, reps) / items;
  };
  int found = 0;
  printf("n = %d (covariance of %d positions), CPU us per matrix:\n", n, N);
  printf("  dsyevd                  %8.1f\n", full([&] { LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', n, w.data(), n, l.data(), work.data(), lw, iwork.data(), liw); }));
  printf("  dsyevr                  %8.1f\n", full([&] { LAPACKE_dsyevr_work(LAPACK_COL_MAJOR, 'V', 'A', 'U', n, w.data(), n, 0, 0, 0, 0, 0, &found, l.data(), z.data(), n, isuppz.data(), work.data(), lw, iwork.data(), liw); }));
  printf("  dsyev                   %8.1f\n", full([&] { LAPACKE_dsyev_work(LAPACK_COL_MAJOR, 'V', 'U', n, w.data(), n, l.data(), work.data(), lw); }));
  printf("  covpool eigh            %8.1f   (symmetric_eigen.h, one matrix: the three stages below)\n", full([&] { eigh(n, w.data(), z.data(), l.data()); }));
  {  // four matrices at a time, as the layers run them (items 4k .. 4k+3)
    std::vector<double> a4(4 * m), w4(4 * m), l4(4 * static_cast<std::size_t>(n));
    double *ap[4], *wp[4], *lp[4];
    int info[4];
    for (int q = 0; q < 4; ++q) { ap[q] = a4.data() + q * m; wp[q] = w4.data() + q * m; lp[q] = l4.data() + q * n; }
    printf("  covpool eighBatch       %8.1f   (four matrices at a time, per matrix)\n", cpuUs([&] {
      for (int b = 0; b + 4 <= items; b += 4) {
        std::copy(a.begin() + b * m, a.begin() + (b + 4) * m, a4.begin());
        eighBatch(n, 4, ap, wp, lp, info);
      }
    }, reps) / items);
  }
  printf("  dsytrd (tridiagonalize) %8.1f\n", full([&] { LAPACKE_dsytrd_work(LAPACK_COL_MAJOR, 'L', n, w.data(), n, d.data(), e.data(), tau.data(), work.data(), lw); }));
  printf("  fused Householder       %8.1f   (householderTridiagonalize; covpool uses it up to n = %d)\n",
         full([&] { householderTridiagonalize(n, w.data(), d.data(), e.data(), tau.data(), scratch.data()); }), kFusedTridiagonalMax);
  // The tridiagonal solvers, on the last item's tridiagonal form.
  std::copy(a.end() - m, a.end(), w.begin());
  LAPACKE_dsytrd_work(LAPACK_COL_MAJOR, 'L', n, w.data(), n, d.data(), e.data(), tau.data(), work.data(), lw);
  d0 = d;
  e0 = e;
  auto tri = [&](auto&& solve) {
    return cpuUs([&] {
      for (int b = 0; b < items; ++b) {
        d = d0;
        e = e0;
        solve();
      }
    }, reps) / items;
  };
  lapack_logical tryrac = 1;
  printf("  dstedc (divide and conquer, vectors) %8.1f\n", tri([&] { LAPACKE_dstedc_work(LAPACK_COL_MAJOR, 'I', n, d.data(), e.data(), z.data(), n, work.data(), lw, iwork.data(), liw); }));
  {
    DivideConquerWorkspace dc;
    printf("  divide and conquer, roots in SIMD    %8.1f   (tridiagonalEigenDivideConquer; covpool's above the lanes)\n",
           tri([&] { tridiagonalEigenDivideConquer(n, d.data(), e.data(), z.data(), dc); }));
  }
#ifdef COVPOOL_X86_DISPATCH
  if (cpuHasAvx2Fma()) {  // the same tridiagonal problem in all four lanes; time per matrix
    std::vector<double> lz(4 * static_cast<std::size_t>(n)), zz(4 * m);
    double* dl[4] = {d0.data(), d0.data(), d0.data(), d0.data()};
    double* el[4] = {e0.data(), e0.data(), e0.data(), e0.data()};
    double* ll[4] = {lz.data(), lz.data() + n, lz.data() + 2 * n, lz.data() + 3 * n};
    double* zl[4] = {zz.data(), zz.data() + m, zz.data() + 2 * m, zz.data() + 3 * m};
    printf("  lane-interleaved QL, 4 at a time     %8.1f   (tridiagonalEigenBatched; covpool's up to n = %d)\n",
           cpuUs([&] { for (int b = 0; b < items; b += 4) tridiagonalEigenBatched(n, 4, dl, el, ll, zl); }, reps) / items,
           kBatchedTridiagonalMax);
  }
#endif
  printf("  dstemr (MRRR, vectors)               %8.1f\n", tri([&] { LAPACKE_dstemr_work(LAPACK_COL_MAJOR, 'V', 'A', n, d.data(), e.data(), 0, 0, 0, 0, &found, l.data(), z.data(), n, n, isuppz.data(), &tryrac, work.data(), lw, iwork.data(), liw); }));
  printf("  dsteqr (implicit QL/QR, vectors)     %8.1f\n", tri([&] { LAPACKE_dsteqr_work(LAPACK_COL_MAJOR, 'I', n, d.data(), e.data(), z.data(), n, work.data()); }));
  printf("  dsterf (values only)                 %8.1f\n", tri([&] { LAPACKE_dsterf(n, d.data(), e.data()); }));
  // The back-transformations, applied over and over to the same (orthogonal) z.
  printf("  dormtr (back-transformation)         %8.1f\n", cpuUs([&] {
    for (int b = 0; b < items; ++b) LAPACKE_dormtr_work(LAPACK_COL_MAJOR, 'L', 'L', 'N', n, n, w.data(), n, tau.data(), z.data(), n, work.data(), lw);
  }, reps) / items);
  printf("  blocked back-transformation          %8.1f   (backTransformBlocked, covpool's)\n", cpuUs([&] {
    for (int b = 0; b < items; ++b) backTransformBlocked(n, w.data(), tau.data(), z.data(), btWork.data());
  }, reps) / items);
}

template <class T> static void products(int n, int reps) {
  std::mt19937 g(2);
  std::normal_distribution<double> d;
  const std::size_t m = static_cast<std::size_t>(n) * n;
  std::vector<T> a(m), b(m), c(m);
  for (auto& v : a) v = static_cast<T>(d(g));
  for (auto& v : b) v = static_cast<T>(d(g));
  const int inner = n > 100 ? 4 : 64;  // calls per timing, so the clock's resolution does not matter
  const double full = cpuUs([&] { for (int i = 0; i < inner; ++i) gemm(false, false, n, T(1), a.data(), b.data(), T(0), c.data()); }, reps) / inner;
  const double upper = cpuUs([&] { for (int i = 0; i < inner; ++i) gemmUpper(n, T(1), a.data(), b.data(), T(0), c.data()); }, reps) / inner;
  const double mirror = cpuUs([&] { for (int i = 0; i < inner; ++i) mirrorUpper(c.data(), n); }, reps) / inner;
  printf("%s n = %3d: GEMM %8.1f us, gemmUpper %8.1f us (%.2f of the GEMM), mirrorUpper %6.2f us\n",
         sizeof(T) == 4 ? "float32" : "float64", n, full, upper, upper / full, mirror);
}

int main() {
  openblas_set_num_threads(1);
  eigensolvers(64, 49, 64, 15);
  eigensolvers(96, 74, 16, 7);    // around the lane-interleaved QL's crossover with ?stedc
  eigensolvers(128, 98, 8, 5);
  eigensolvers(256, 196, 4, 5);
  for (int n : {64, 256}) {
    products<float>(n, 15);
    products<double>(n, 15);
  }
  return 0;
}
