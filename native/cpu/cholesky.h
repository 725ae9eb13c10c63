// Solves Q X = P for a symmetric positive definite Q (n x n, row-major) and n right-hand sides:
// Q = U^T U (Cholesky, U upper triangular), then U^T Y = P and U X = Y, all blocked so that most
// of the flops are GEMMs (blas.h: covpool's own kernels at these sizes) and the rest are row
// operations over whole rows (contiguous, vectorized; compiled for AVX2 + FMA as well and picked
// at run time, as the eigensolver's reduction).
//
// Why not LAPACK's ?posv: at n = 64 its triangular solves (OpenBLAS ?trsm: packing and small
// kernel calls for each 64 x 64 solve) took 14 us with the Haswell kernels and 41 with the
// Cooperlake ones, 3 and 16 GEMMs' time, for a GEMM's worth of flops (bench/native/mpa_lya.cpp
// times the MPA-Lya forward, which solves one such system per item).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "blas.h"

namespace covpool::cpu {

// Rows of nb at a time: the diagonal blocks are factored / solved row by row, everything off them
// is a GEMM.
inline int choleskyBlock(int n) { return n <= 96 ? 16 : 32; }

// Row operations: x[0:len] -= f y[0:len], and x[0:len] *= f.
template <class T> [[gnu::always_inline]] inline void rowAxpy(T* x, const T* y, T f, int len) {
  for (int j = 0; j < len; ++j) x[j] -= f * y[j];
}
template <class T> [[gnu::always_inline]] inline void rowScale(T* x, T f, int len) {
  for (int j = 0; j < len; ++j) x[j] *= f;
}

// Rows k0 .. k1 - 1 of U from the same rows of the partly updated matrix (row-major, upper part,
// row stride n): the diagonal block is factored and the rows to its right solved with it,
// U[k, k1:] = (A[k, k1:] - sum over k0 <= c < k of U[c, k] U[c, k1:]) / U[k, k]. Returns 0 or the
// failing pivot's index + 1.
template <class T> [[gnu::always_inline]] inline int choleskyPanelBody(int n, T* u, int k0, int k1) {
  for (int k = k0; k < k1; ++k) {
    T* rk = u + static_cast<std::size_t>(k) * n;
    for (int c = k0; c < k; ++c) {
      const T* rc = u + static_cast<std::size_t>(c) * n;
      rowAxpy(rk + k, rc + k, rc[k], n - k);
    }
    const T pivot = rk[k];
    if (!(pivot > T(0)) || !std::isfinite(pivot)) return k + 1;
    const T d = std::sqrt(pivot);
    rk[k] = d;
    rowScale(rk + k + 1, T(1) / d, n - k - 1);
  }
  return 0;
}

// One diagonal block of a triangular solve with n right-hand sides (rows of p, row stride n):
// forward (U^T Y = P, rows r0 .. r1 - 1 in order, y_r = (p_r - sum_{r0 <= c < r} U[c, r] y_c) / U[r, r])
// or backward (U X = Y, rows in reverse, x_r = (y_r - sum_{r < c < r1} U[r, c] x_c) / U[r, r]). The
// rest of each sum was subtracted by a GEMM before. Each row is formed in chunks of kChunk columns
// held in registers over the whole sum (a row update per c would store and reload the row every
// time).
template <class T> [[gnu::always_inline]] inline void triangularBlockBody(int n, const T* u, T* p, int r0, int r1, bool forward) {
  typedef T V __attribute__((vector_size(32)));  // an AVX2 register (two SSE2 ones in the baseline build)
  typedef T VU __attribute__((vector_size(32), aligned(alignof(T)), may_alias));  // unaligned access to rows
  constexpr int kLanes = 32 / sizeof(T), kVecs = 4, kChunk = kLanes * kVecs;
  for (int step = 0; step < r1 - r0; ++step) {
    const int r = forward ? r0 + step : r1 - 1 - step;
    const int c0 = forward ? r0 : r + 1, c1 = forward ? r : r1;  // the rows already solved
    T* pr = p + static_cast<std::size_t>(r) * n;
    const T inv = T(1) / u[static_cast<std::size_t>(r) * n + r];
    const std::size_t cStride = forward ? static_cast<std::size_t>(n) : 1;  // U[c, r] or U[r, c]
    const T* coef = forward ? u + r : u + static_cast<std::size_t>(r) * n;
    int j0 = 0;
    for (; j0 + kChunk <= n; j0 += kChunk) {
      VU* out = reinterpret_cast<VU*>(pr + j0);
      V acc[kVecs];
      for (int v = 0; v < kVecs; ++v) acc[v] = out[v];
      for (int c = c0; c < c1; ++c) {
        const T f = coef[c * cStride];
        const VU* y = reinterpret_cast<const VU*>(p + static_cast<std::size_t>(c) * n + j0);
        for (int v = 0; v < kVecs; ++v) acc[v] -= f * y[v];
      }
      for (int v = 0; v < kVecs; ++v) out[v] = acc[v] * inv;
    }
    if (j0 < n) {
      for (int c = c0; c < c1; ++c) rowAxpy(pr + j0, p + static_cast<std::size_t>(c) * n + j0, coef[c * cStride], n - j0);
      rowScale(pr + j0, inv, n - j0);
    }
  }
}

#ifdef COVPOOL_X86_DISPATCH
template <class T> __attribute__((target("avx2,fma"))) int choleskyPanelAvx2(int n, T* u, int k0, int k1) {
  return choleskyPanelBody(n, u, k0, k1);
}
template <class T> __attribute__((target("avx2,fma"))) void triangularBlockAvx2(int n, const T* u, T* p, int r0, int r1, bool forward) {
  triangularBlockBody(n, u, p, r0, r1, forward);
}
#endif
template <class T> int choleskyPanel(int n, T* u, int k0, int k1) {
#ifdef COVPOOL_X86_DISPATCH
  if (cpuHasAvx2Fma()) return choleskyPanelAvx2(n, u, k0, k1);
#endif
  return choleskyPanelBody(n, u, k0, k1);
}
template <class T> void triangularBlock(int n, const T* u, T* p, int r0, int r1, bool forward) {
#ifdef COVPOOL_X86_DISPATCH
  if (cpuHasAvx2Fma()) return triangularBlockAvx2(n, u, p, r0, r1, forward);
#endif
  triangularBlockBody(n, u, p, r0, r1, forward);
}

// U (row-major, upper triangle; the strictly lower part is not touched) with Q = U^T U, from the
// upper triangle of q. Right-looking by blocks of rows: a block of rows is factored (choleskyPanel),
// then the trailing upper triangle takes its symmetric rank-nb update as one triangle of a GEMM.
// Returns 0, or k + 1 when pivot k is not positive (Q is not positive definite to working
// precision), as LAPACK's info.
template <class T> int choleskyUpper(int n, const T* q, T* u) {
  for (int i = 0; i < n; ++i) std::copy(q + static_cast<std::size_t>(i) * n + i, q + static_cast<std::size_t>(i + 1) * n, u + static_cast<std::size_t>(i) * n + i);
  const int nb = choleskyBlock(n);
  for (int k0 = 0; k0 < n; k0 += nb) {
    const int k1 = std::min(n, k0 + nb);
    if (const int info = choleskyPanel(n, u, k0, k1)) return info;
    if (k1 < n) {  // A[k1:, k1:] -= U[k0:k1, k1:]^T U[k0:k1, k1:] (upper triangle)
      T* panel = u + static_cast<std::size_t>(k0) * n + k1;
      gemmUpper(true, false, n - k1, k1 - k0, T(-1), panel, n, panel, n, T(1), u + static_cast<std::size_t>(k1) * n + k1, n);
    }
  }
  return 0;
}

// X = Q^{-1} P given U (Q = U^T U, upper triangle of u read): p (n x n) is overwritten with X.
template <class T> void choleskySolve(int n, const T* u, T* p) {
  const int nb = choleskyBlock(n);
  auto row = [&](T* a, int i) { return a + static_cast<std::size_t>(i) * n; };
  // U^T Y = P, top block first: Y_I = U_II^{-T} (P_I - U[0:i0, I]^T Y[0:i0]).
  for (int i0 = 0; i0 < n; i0 += nb) {
    const int i1 = std::min(n, i0 + nb);
    if (i0 > 0) gemm(true, false, i1 - i0, n, i0, T(-1), u + i0, n, p, n, T(1), row(p, i0), n);
    triangularBlock(n, u, p, i0, i1, true);
  }
  // U X = Y, bottom block first: X_I = U_II^{-1} (Y_I - U[I, i1:n] X[i1:n]).
  for (int i0 = (n - 1) / nb * nb; i0 >= 0; i0 -= nb) {
    const int i1 = std::min(n, i0 + nb);
    if (i1 < n) gemm(false, false, i1 - i0, n, n - i1, T(-1), u + static_cast<std::size_t>(i0) * n + i1, n, row(p, i1), n, T(1), row(p, i0), n);
    triangularBlock(n, u, p, i0, i1, false);
  }
}

}  // namespace covpool::cpu
