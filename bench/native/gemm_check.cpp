// Exhaustive check of covpool's own GEMM kernels (native/cpu/small_gemm.h) against a long double
// reference: every instruction set this CPU runs (AVX2 + FMA; AVX-512), float32 and float64, row
// counts that leave every remainder of the row blocks, column counts over odd and even numbers of
// vectors and with partial last vectors (masked), inner dimensions from 1 to the largest accepted, one and two terms,
// op(A) transposed or not, beta 0 / 1 / other, leading dimensions larger than the matrices, full
// products and upper triangles. Entries the call must not touch (below the diagonal of a
// triangle, right of the columns in a wider leading dimension) are checked to be as they were.
//
//   g++ -O2 -std=c++17 bench/native/gemm_check.cpp -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas -o /tmp/gemm-check && /tmp/gemm-check
// (bench/test-kernel-choices.sh runs it.) Exit status 0 when every case agrees.
#include <cmath>
#include <cstdio>
#include <random>
#include <type_traits>
#include <vector>

#include "../../native/cpu/blas.h"

using namespace covpool::cpu;

static long cases = 0, failures = 0;

// tight: every array exactly as large as the matrix (leading dimensions = widths), so that a read or
// write past a partial last vector leaves the allocation (the sanitizer build, bench/test-kernel-
// choices.sh, reports it); otherwise wider leading dimensions, whose extra entries must stay as they were.
template <class Tr> static void check(const char* isa, int m, int n, int k, int nterms, bool ta, bool upper, double beta, std::mt19937& g, bool tight = false) {
  using T = typename Tr::T;
  std::normal_distribution<double> d;
  const int lda = (ta ? m : k) + (tight ? 0 : 3), ldb = n + (tight ? 0 : 5), ldc = n + (tight ? 0 : 7);
  const int aRows = ta ? k : m;
  std::vector<std::vector<T>> as(nterms), bs(nterms);
  std::vector<GemmTerm<T>> terms(nterms);
  for (int t = 0; t < nterms; ++t) {
    as[t].resize(static_cast<std::size_t>(aRows) * lda);
    bs[t].resize(static_cast<std::size_t>(k) * ldb);
    for (auto& v : as[t]) v = static_cast<T>(d(g));
    for (auto& v : bs[t]) v = static_cast<T>(d(g));
    terms[t] = {as[t].data(), lda, ta, bs[t].data(), ldb, k};
  }
  std::vector<T> c(static_cast<std::size_t>(m) * ldc), c0;
  for (auto& v : c) v = static_cast<T>(d(g));
  c0 = c;
  const T alpha = static_cast<T>(0.75);
  if constexpr (std::is_same_v<Tr, gemm_avx512::Vt> || std::is_same_v<Tr, gemm_avx512::VtD>)
    gemm_avx512::run<Tr>(m, n, terms.data(), nterms, alpha, static_cast<T>(beta), c.data(), ldc, upper);
  else
    gemm_avx2::run<Tr>(m, n, terms.data(), nterms, alpha, static_cast<T>(beta), c.data(), ldc, upper);
  ++cases;
  const double eps = sizeof(T) == 4 ? 1.2e-7 : 2.3e-16;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < ldc; ++j) {
      const T got = c[static_cast<std::size_t>(i) * ldc + j];
      const T before = c0[static_cast<std::size_t>(i) * ldc + j];
      if (j >= n || (upper && j < i)) {
        if (!(got == before)) {
          if (failures++ < 20) std::printf("FAIL %s %s m=%d n=%d k=%d terms=%d ta=%d upper=%d beta=%g: (%d,%d) touched\n", isa, sizeof(T) == 4 ? "f32" : "f64", m, n, k, nterms, ta, upper, beta, i, j);
        }
        continue;
      }
      long double ref = 0, mag = 0;
      for (int t = 0; t < nterms; ++t)
        for (int p = 0; p < k; ++p) {
          const long double av = ta ? as[t][static_cast<std::size_t>(p) * lda + i] : as[t][static_cast<std::size_t>(i) * lda + p];
          const long double bv = bs[t][static_cast<std::size_t>(p) * ldb + j];
          ref += av * bv;
          mag += std::fabs(av * bv);
        }
      ref = alpha * ref + beta * static_cast<long double>(before);
      mag = alpha * mag + std::fabs(beta * before);
      const double err = std::fabs(static_cast<double>(got - ref));
      if (!(err <= 4 * (nterms * k + 2) * eps * static_cast<double>(mag) + 1e-300)) {
        if (failures++ < 20)
          std::printf("FAIL %s %s m=%d n=%d k=%d terms=%d ta=%d upper=%d beta=%g: (%d,%d) %g vs %g\n", isa, sizeof(T) == 4 ? "f32" : "f64", m, n, k, nterms, ta, upper, beta, i, j,
                      static_cast<double>(got), static_cast<double>(ref));
      }
    }
}

template <class Tr> static void sweep(const char* isa) {
  std::mt19937 g(11);
  constexpr int W = Tr::W;
  const int ns[] = {1, 3, W - 1, W, W + 1, 2 * W, 2 * W + 3, 3 * W, 5 * W - 2, 8 * W, 49, 64, 196, 256};
  const int ms[] = {1, 2, 3, 5, 6, 7, 8, 9, 11, 12, 13, 17, 25, 31, 33, 64, 100};
  const int ks[] = {1, 2, 7, 16, 33, 64};
  for (int n : ns) {
    if (n > kSmallGemmMax || n < 1) continue;
    for (int k : ks)
      for (int nterms = 1; nterms <= 2; ++nterms)
        for (int ta = 0; ta <= 1; ++ta)
          for (double beta : {0.0, 1.0, -0.5}) {
            for (int m : ms) check<Tr>(isa, m, n, k, nterms, ta, false, beta, g);
            check<Tr>(isa, n, n, k, nterms, ta, true, beta, g);
            check<Tr>(isa, 7, n, k, nterms, ta, false, beta, g, true);
            check<Tr>(isa, n, n, k, nterms, ta, true, beta, g, true);
          }
  }
  // The largest sizes the dispatcher sends here: the MPA-Lya backward's k = 2n product at n = 256.
  check<Tr>(isa, 256, 256, 512, 1, false, true, 0.0, g);
  check<Tr>(isa, 256, 256, 512, 2, false, false, 1.0, g);
  check<Tr>(isa, 256, 256, 256, 2, true, true, -0.5, g);
}

int main() {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx2) {
    sweep<gemm_avx2::Vt>("avx2");
    sweep<gemm_avx2::VtD>("avx2");
  }
  if (avx512) {
    sweep<gemm_avx512::Vt>("avx512");
    sweep<gemm_avx512::VtD>("avx512");
  }
  std::printf("gemm_check: %ld cases (%s%s), %ld failures\n", cases, avx2 ? "avx2" : "no avx2", avx512 ? ", avx512" : ", no avx512", failures);
  return failures ? 1 : 0;
}
