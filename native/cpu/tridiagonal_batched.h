// Eigenvalues and eigenvectors of four symmetric tridiagonal matrices at once, one per lane of an
// AVX2 register (float64): the implicit QL iteration with Wilkinson shifts (as in EISPACK's tql2),
// run in lockstep. Each lane deflates on its own; a lane whose current eigenvalue has converged,
// or whose unreduced block ends before the sweep's row, gets the identity rotation, so one sweep
// serves four matrices. The rotations of a sweep are kept and applied to the eigenvectors in
// blocks of 8 rows, which stay in L1 while the whole sweep passes over them.
//
// Why: for small matrices LAPACK's divide and conquer (?stedc) is scalar-bound (its secular
// equations and its ?steqr leaves). Per matrix, one core, on tridiagonal forms of covariances:
// 7.6 us at n = 32, 24 at n = 52 and 35 at n = 60, where covpool's own divide and conquer
// (tridiagonal_divide_conquer.h) takes 16, 30 and 37; but 58 against 39 at n = 64 and 140 against
// 94 at n = 96 (bench/native/kernels.cpp): the rotations applied to the eigenvectors grow as n^3
// with a larger constant than the divide and conquer's GEMMs. Hence kBatchedTridiagonalMax = 60.
// The divide and conquer also runs this solver on its leaves (n <= 25), four at a time.
//
// Deflation: |e_m| <= eps ||T_lane||, the absolute criterion of a backward-stable solver (the
// result is exact for a matrix within eps ||T|| of the input). A lane that does not converge in
// 60 sweeps for one eigenvalue, or meets an exactly zero rotation, makes the call return false and
// the caller solves those matrices with ?stedc instead.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <numeric>
#include <vector>

#include "simd_level.h"  // COVPOOL_X86_DISPATCH, cpuHasAvx2Fma (COVPOOL_CPU_SIMD, COVPOOL_CPU_BASELINE)

namespace covpool::cpu {

constexpr int kTridiagonalLanes = 4;
constexpr int kBatchedTridiagonalMax = 60;

#ifdef COVPOOL_X86_DISPATCH
namespace batched {

typedef double v4 __attribute__((vector_size(32)));
typedef long long m4 __attribute__((vector_size(32)));

#define COVPOOL_AVX2 __attribute__((target("avx2,fma"), always_inline)) inline
COVPOOL_AVX2 v4 select(m4 mask, v4 a, v4 b) { return mask ? a : b; }
COVPOOL_AVX2 v4 absv(v4 x) { return x < 0 ? -x : x; }
COVPOOL_AVX2 v4 sqrtv(v4 x) { return __builtin_ia32_sqrtpd256(x); }
COVPOOL_AVX2 v4 splat(double x) { return v4{x, x, x, x}; }
#undef COVPOOL_AVX2

// d[i], e[i] (e[i] couples rows i and i + 1; e[n - 1] is ignored) for the four lanes; on return d
// holds the eigenvalues (unsorted) and z (n x n, row k, column j) the eigenvectors as columns.
// rotC, rotS: n entries of scratch.
__attribute__((target("avx2,fma"))) inline bool qlLockstep(int n, v4* d, v4* e, v4* z, v4* rotC, v4* rotS) {
  const v4 zero = splat(0), one = splat(1);
  for (std::size_t k = 0; k < static_cast<std::size_t>(n) * n; ++k) z[k] = zero;
  for (int k = 0; k < n; ++k) z[static_cast<std::size_t>(k) * n + k] = one;
  if (n == 1) return true;
  e[n - 1] = zero;
  v4 norm = zero;
  for (int i = 0; i < n; ++i) {
    const v4 t = absv(d[i]) + absv(e[i]);
    norm = t > norm ? t : norm;
  }
  const v4 tol = norm * splat(2.220446049250313e-16);
  for (int l = 0; l < n; ++l) {
    for (int sweep = 0;; ++sweep) {
      // Per lane, the end m of the unreduced block that starts at l.
      int m[kTridiagonalLanes];
      bool found[kTridiagonalLanes] = {};
      for (int q = 0; q < kTridiagonalLanes; ++q) m[q] = n - 1;
      for (int i = l; i < n - 1; ++i) {
        const m4 small = absv(e[i]) <= tol;
        bool all = true;
        for (int q = 0; q < kTridiagonalLanes; ++q) {
          if (!found[q] && small[q]) { found[q] = true; m[q] = i; }
          all = all && found[q];
        }
        if (all) break;
      }
      int mMax = l;
      m4 active = {0, 0, 0, 0};
      v4 dm;
      for (int q = 0; q < kTridiagonalLanes; ++q) {
        mMax = std::max(mMax, m[q]);
        active[q] = m[q] != l ? -1 : 0;
        dm[q] = d[m[q]][q];
      }
      if (mMax == l) break;  // every lane's eigenvalue l has converged
      if (sweep == 60) return false;
      // Wilkinson shift from the leading 2 x 2 block, folded into the first rotation (tql2).
      const v4 el = select(active, e[l], one);
      v4 g = (d[l + 1] - d[l]) / (splat(2) * el);
      v4 r = sqrtv(g * g + one);
      g = dm - d[l] + el / (g + (g < 0 ? -r : r));
      v4 s = one, c = one, p = zero;
      for (int i = mMax - 1; i >= l; --i) {
        m4 act = active;
        for (int q = 0; q < kTridiagonalLanes; ++q)
          if (i >= m[q]) act[q] = 0;
        const v4 f = s * e[i], b = c * e[i];
        r = sqrtv(f * f + g * g);
        for (int q = 0; q < kTridiagonalLanes; ++q)
          if (act[q] && r[q] == 0) return false;
        const v4 rs = select(act, r, one);
        const v4 s1 = f / rs, c1 = g / rs;
        const v4 gg = d[i + 1] - p;
        const v4 r2 = (d[i] - gg) * s1 + splat(2) * c1 * b;
        const v4 p1 = s1 * r2;
        d[i + 1] = select(act, gg + p1, d[i + 1]);
        e[i + 1] = select(act, r, e[i + 1]);
        g = select(act, c1 * r2 - b, g);
        s = select(act, s1, s);
        c = select(act, c1, c);
        p = select(act, p1, p);
        rotC[i] = select(act, c1, one);
        rotS[i] = select(act, s1, zero);
      }
      d[l] = select(active, d[l] - p, d[l]);
      e[l] = select(active, g, e[l]);
      for (int q = 0; q < kTridiagonalLanes; ++q)
        if (m[q] != l) e[m[q]][q] = 0;
      for (int k0 = 0; k0 < n; k0 += 8) {
        const int k1 = std::min(n, k0 + 8);
        for (int i = mMax - 1; i >= l; --i) {
          const v4 ci = rotC[i], si = rotS[i];
          for (int k = k0; k < k1; ++k) {
            v4* zr = z + static_cast<std::size_t>(k) * n;
            const v4 a = zr[i], f = zr[i + 1];
            zr[i + 1] = si * a + ci * f;
            zr[i] = ci * a - si * f;
          }
        }
      }
    }
  }
  return true;
}

}  // namespace batched

// Up to four tridiagonal problems (d[q], e[q] of length n; lanes q >= count unused). On success
// l[q] holds the eigenvalues ascending and z[q] (n x n, column-major with leading dimension ldz,
// n if 0: column j is the eigenvector of l[q][j]) the eigenvectors, as ?stedc('I') returns them;
// d and e are left as they were (l may be d). Returns false when the lockstep iteration gave up
// (the caller falls back to LAPACK).
inline bool tridiagonalEigenBatched(int n, int count, double* const* d, double* const* e, double* const* l, double* const* z,
                                    int ldz = 0) {
  using batched::v4;
  // Doubles, aligned by hand: a std::vector<v4> would drop v4's 32-byte alignment (GCC ignores the
  // vector attribute on template arguments) and the aligned AVX loads would fault.
  thread_local std::vector<double> buf;
  const std::size_t nn = static_cast<std::size_t>(n);
  buf.resize(kTridiagonalLanes * (4 * nn + nn * nn) + kTridiagonalLanes);
  v4* vd = reinterpret_cast<v4*>((reinterpret_cast<std::uintptr_t>(buf.data()) + 31) & ~std::uintptr_t(31));
  v4* ve = vd + nn;
  v4* rotC = ve + nn;
  v4* rotS = rotC + nn;
  v4* vz = rotS + nn;
  for (int i = 0; i < n; ++i)
    for (int q = 0; q < kTridiagonalLanes; ++q) {
      const int src = q < count ? q : 0;  // idle lanes repeat lane 0's problem
      vd[i][q] = d[src][i];
      ve[i][q] = i < n - 1 ? e[src][i] : 0.0;
    }
  if (!batched::qlLockstep(n, vd, ve, vz, rotC, rotS)) return false;
  thread_local std::vector<int> order;
  order.resize(nn);
  for (int q = 0; q < count; ++q) {
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return vd[a][q] < vd[b][q]; });
    for (int j = 0; j < n; ++j) {
      const int src = order[j];
      l[q][j] = vd[src][q];
      double* col = z[q] + static_cast<std::size_t>(j) * (ldz > 0 ? ldz : n);
      for (int k = 0; k < n; ++k) col[k] = vz[static_cast<std::size_t>(k) * n + src][q];
    }
  }
  return true;
}
#endif

}  // namespace covpool::cpu
