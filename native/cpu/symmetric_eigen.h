// Symmetric eigendecomposition of the eigen methods: a = U diag(l) U^T, returned as W = U^T (row i
// is the eigenvector of l[i]) with l ascending.
//
// LAPACK's ?syevd in three stages called one by one: Householder reduction to tridiagonal form,
// the tridiagonal eigenproblem, back-transformation of its eigenvectors. Taking the stages apart
// lets the reduction work in place on the caller's scratch copy and the eigenvectors land in W
// directly (?syevd copies the matrix in and the vectors back), and each stage is done here where
// LAPACK's is slow for these sizes:
//  - up to n = kFusedTridiagonalMax, the one-pass reduction below replaces LAPACK's unblocked
//    ?sytd2 (a ?symv, a ?syr2 and a handful of level-1 calls per column);
//  - eighBatch takes up to four matrices and, up to n = kBatchedTridiagonalMax on CPUs with AVX2,
//    solves their tridiagonal problems together (tridiagonal_batched.h); otherwise (float64) the
//    divide and conquer of tridiagonal_divide_conquer.h, whose secular equations are solved for
//    all roots at once, solves them one by one, and LAPACK's (?stedc) where that one declines
//    (float32, n <= 25, a split matrix);
//  - the back-transformation applies blocks of reflectors with GEMMs (backTransformBlocked) in
//    place of ?ormtr.
// Per matrix, one core (bench/native/kernels.cpp, which times each stage against LAPACK's):
// see docs/speed-cpu.md's profile.
//
// Matrices outside LAPACK's safe range (max |a_ij| below sqrt(safmin/eps) or above its reciprocal,
// about 1e-146 and 1e146 in float64) take ?syevd itself, which rescales them first; the same
// bounds keep the fused reduction's plain sums of squares free of overflow and underflow.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <vector>

#include "blas.h"
#include "tridiagonal_batched.h"
#include "tridiagonal_divide_conquer.h"

namespace covpool::cpu {

constexpr int kFusedTridiagonalMax = 64;

// Householder reduction of the symmetric n x n matrix a (row-major, both triangles stored) to
// tridiagonal form T = Q^T a Q, Q = H_0 H_1 ... H_{n-3}, H_k = I - tau_k v_k v_k^T, in LAPACK's
// ?sytrd('L') layout read column-major: d (n) is T's diagonal, e (n - 1) its off-diagonal, and
// row k of a holds v_k in columns k + 2 .. n - 1 (v_k is zero before k + 1 and 1 at k + 1), where
// ?ormtr('L') and backTransformBlocked read it. tau has n - 1 entries (the last is 0, as in ?sytrd).
//
// One pass over the trailing matrix per column: step k's rank-2 update A <- A - v w^T - w v^T is
// deferred and applied to each row of the trailing block in the same sweep that accumulates the
// next step's product p = A v (as p += v_i A_i over rows i, so no horizontal sums), instead of a
// ?syr2 pass followed by a ?symv pass. Both triangles are kept, so every row is contiguous.
// The loops are plain C++ left to the compiler's vectorizer; on x86-64 CPUs with AVX2 and FMA
// (checked at run time: the binaries target baseline x86-64) the same body is compiled for those,
// 41 -> 33 us at n = 64 (kernels.cpp). scratch: 3n values.
template <class T> [[gnu::always_inline]] inline void householderTridiagonalizeBody(int n, T* a, T* d, T* e, T* tau, T* scratch) {
  T* vPending = scratch;      // step k - 1's v and w, not yet applied to rows >= k
  T* wPending = scratch + n;
  T* p = scratch + 2 * n;
  bool pending = false;
#define COVPOOL_ROW(i) (a + static_cast<std::size_t>(i) * n)
  for (int k = 0; k + 2 < n; ++k) {
    T* rk = COVPOOL_ROW(k);
    if (pending) {
      const T vk = vPending[k], wk = wPending[k];
      for (int j = k; j < n; ++j) rk[j] -= vk * wPending[j] + wk * vPending[j];
    }
    d[k] = rk[k];
    // The reflector that maps x = rk[k+1..n-1] onto beta e_1 (as ?larfg: beta = -sign(alpha) ||x||).
    const T alpha = rk[k + 1];
    const T* rest = rk + k + 2;  // x without alpha
    const T tail = sumOverEight<T>(static_cast<std::size_t>(n - k - 2), [&](std::size_t i) { return rest[i] * rest[i]; });
    if (tail == T(0)) {  // already reduced: H_k = I; the deferred update still reaches the trailing rows
      e[k] = alpha;
      tau[k] = T(0);
      if (pending)
        for (int i = k + 1; i < n; ++i) {
          T* ri = COVPOOL_ROW(i);
          const T vi = vPending[i], wi = wPending[i];
          for (int c = k + 1; c < n; ++c) ri[c] -= vi * wPending[c] + wi * vPending[c];
        }
      pending = false;
      continue;
    }
    const T beta = -std::copysign(std::sqrt(alpha * alpha + tail), alpha);
    const T tk = (beta - alpha) / beta;
    const T scale = T(1) / (alpha - beta);
    for (int c = k + 2; c < n; ++c) rk[c] *= scale;
    rk[k + 1] = T(1);  // v_k over columns k+1.. (restored to beta below; never read back)
    e[k] = beta;
    tau[k] = tk;
    const T* v = rk;
    // p = A22 v over the trailing block (rows and columns k+1..), fused with the deferred update.
    for (int c = k + 1; c < n; ++c) p[c] = T(0);
    if (pending) {
      for (int i = k + 1; i < n; ++i) {
        T* ri = COVPOOL_ROW(i);
        const T vi = vPending[i], wi = wPending[i], xi = v[i];
        for (int c = k + 1; c < n; ++c) {
          const T aic = ri[c] - (vi * wPending[c] + wi * vPending[c]);
          ri[c] = aic;
          p[c] += xi * aic;
        }
      }
    } else {
      for (int i = k + 1; i < n; ++i) {
        const T* ri = COVPOOL_ROW(i);
        const T xi = v[i];
        for (int c = k + 1; c < n; ++c) p[c] += xi * ri[c];
      }
    }
    // w = tau p - (tau^2 / 2)(p . v) v: the update A22 - v w^T - w v^T equals H_k A22 H_k.
    T pv = 0;
    for (int c = k + 1; c < n; ++c) pv += p[c] * v[c];
    const T half = T(0.5) * tk * tk * pv;
    for (int c = k + 1; c < n; ++c) {
      wPending[c] = tk * p[c] - half * v[c];
      vPending[c] = v[c];
    }
    pending = true;
    rk[k + 1] = beta;
  }
  if (pending)
    for (int i = std::max(0, n - 2); i < n; ++i) {
      T* ri = COVPOOL_ROW(i);
      for (int c = std::max(0, n - 2); c < n; ++c) ri[c] -= vPending[i] * wPending[c] + wPending[i] * vPending[c];
    }
  if (n >= 2) {
    d[n - 2] = COVPOOL_ROW(n - 2)[n - 2];
    e[n - 2] = COVPOOL_ROW(n - 2)[n - 1];
    tau[n - 2] = T(0);
  }
  d[n - 1] = COVPOOL_ROW(n - 1)[n - 1];
#undef COVPOOL_ROW
}

#ifdef COVPOOL_X86_DISPATCH
template <class T> __attribute__((target("avx2,fma"))) void householderTridiagonalizeAvx2(int n, T* a, T* d, T* e, T* tau, T* scratch) {
  householderTridiagonalizeBody(n, a, d, e, tau, scratch);
}
#endif

template <class T> void householderTridiagonalize(int n, T* a, T* d, T* e, T* tau, T* scratch) {
#ifdef COVPOOL_X86_DISPATCH
  if (cpuHasAvx2Fma()) return householderTridiagonalizeAvx2(n, a, d, e, tau, scratch);
#endif
  householderTridiagonalizeBody(n, a, d, e, tau, scratch);
}

// LAPACK stages, column-major (a symmetric row-major matrix is its own column-major transpose).
inline int sytrdLower(int n, float* a, float* d, float* e, float* tau, float* work, lapack_int lwork) {
  return LAPACKE_ssytrd_work(LAPACK_COL_MAJOR, 'L', n, a, n, d, e, tau, work, lwork);
}
inline int sytrdLower(int n, double* a, double* d, double* e, double* tau, double* work, lapack_int lwork) {
  return LAPACKE_dsytrd_work(LAPACK_COL_MAJOR, 'L', n, a, n, d, e, tau, work, lwork);
}
inline int stedc(int n, float* d, float* e, float* z, float* work, lapack_int lwork, lapack_int* iwork, lapack_int liwork) {
  return LAPACKE_sstedc_work(LAPACK_COL_MAJOR, 'I', n, d, e, z, n, work, lwork, iwork, liwork);
}
inline int stedc(int n, double* d, double* e, double* z, double* work, lapack_int lwork, lapack_int* iwork, lapack_int liwork) {
  return LAPACKE_dstedc_work(LAPACK_COL_MAJOR, 'I', n, d, e, z, n, work, lwork, iwork, liwork);
}
inline void larftForward(int m, int k, const float* v, const float* tau, float* t, int ldt) {
  LAPACKE_slarft_work(LAPACK_COL_MAJOR, 'F', 'C', m, k, v, m, tau, t, ldt);
}
inline void larftForward(int m, int k, const double* v, const double* tau, double* t, int ldt) {
  LAPACKE_dlarft_work(LAPACK_COL_MAJOR, 'F', 'C', m, k, v, m, tau, t, ldt);
}
inline void gemmColMajor(bool ta, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasColMajor, tr(ta), CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void gemmColMajor(bool ta, int m, int n, int k, double alpha, const double* a, int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasColMajor, tr(ta), CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void trmmUpperLeft(int m, int n, const float* t, int ldt, float* x, int ldx) {
  cblas_strmm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, m, n, 1.0f, t, ldt, x, ldx);
}
inline void trmmUpperLeft(int m, int n, const double* t, int ldt, double* x, int ldx) {
  cblas_dtrmm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, m, n, 1.0, t, ldt, x, ldx);
}

// z (n x n, column-major) <- Q z for the Q of a ?sytrd('L') reduction (reflectors in a, column-
// major): what ?ormtr('L', 'L', 'N') computes, in blocks of nb reflectors as Q_b = I - V T V^T
// (?larft) applied with two GEMMs over the whole of z, where ?ormtr spends much of its time
// outside its GEMMs (bench/native/kernels.cpp, per matrix: 28 us against 36 at n = 64, 1.0 ms
// against 1.65 at n = 256; no slower at any n from 16 up). work: n nb + nb nb + nb n values.
template <class T> void backTransformBlocked(int n, const T* a, const T* tau, T* z, T* work) {
  const int reflectors = n - 2, nb = n >= 192 ? 32 : 16;
  if (reflectors <= 0) return;  // n <= 2: already tridiagonal, Q = I
  T* v = work;                                   // the block's V: (n - k0 - 1) x nb, unit lower trapezoidal
  T* t = v + static_cast<std::size_t>(n) * nb;   // its nb x nb triangular factor
  T* x = t + static_cast<std::size_t>(nb) * nb;  // nb x n: V^T z, then T V^T z
  for (int k0 = (reflectors - 1) / nb * nb; k0 >= 0; k0 -= nb) {  // Q = Q_0 Q_1 ...: last block first
    const int kb = std::min(nb, reflectors - k0), mb = n - k0 - 1;
    for (int j = 0; j < kb; ++j) {  // column j: v_{k0+j}, zero above its unit entry at row j
      T* col = v + static_cast<std::size_t>(j) * mb;
      const T* src = a + static_cast<std::size_t>(k0 + j) * n + (k0 + 1);
      std::fill(col, col + j, T(0));
      col[j] = T(1);
      std::copy(src + j + 1, src + mb, col + j + 1);
    }
    larftForward(mb, kb, v, tau + k0, t, nb);
    T* zb = z + (k0 + 1);  // rows k0+1.. of z, every column
    gemmColMajor(true, kb, n, mb, T(1), v, mb, zb, n, T(0), x, nb);
    trmmUpperLeft(kb, n, t, nb, x, nb);
    gemmColMajor(false, mb, n, kb, T(-1), v, mb, x, nb, T(1), zb, n);
  }
}

// Per-thread workspace: ?stedc('I') needs 1 + 4n + n^2 reals and 3 + 5n integers, ?sytrd n nb
// (LAPACK's block size is 32) and backTransformBlocked 2 n nb + nb^2 with nb <= 32; the fused
// reduction 3n; and each of the (up to kTridiagonalLanes) matrices of a batch its off-diagonal e
// and reflector factors tau between the stages. The float64 divide and conquer keeps its own
// (3 n^2 + 20 n values).
template <class T> struct EighWorkspace {
  std::vector<T> work, scratch, e, tau;
  std::vector<lapack_int> iwork;
  DivideConquerWorkspace divideConquer;  // float64 only (grown on first use)
  void reserve(int n) {
    const std::size_t nn = static_cast<std::size_t>(n);
    const std::size_t lw = std::max<std::size_t>(1 + 4 * nn + nn * nn, 64 * nn + 1024) + 1;
    if (work.size() < lw) work.resize(lw);
    if (iwork.size() < 3 + 5 * nn) iwork.resize(3 + 5 * nn);
    if (scratch.size() < 3 * nn) scratch.resize(3 * nn);
    if (e.size() < kTridiagonalLanes * nn) {
      e.resize(kTridiagonalLanes * nn);
      tau.resize(kTridiagonalLanes * nn);
    }
  }
  T* eOf(int q, int n) { return e.data() + static_cast<std::size_t>(q) * n; }
  T* tauOf(int q, int n) { return tau.data() + static_cast<std::size_t>(q) * n; }
};

// The row-major lower triangle of a, copied over the upper one (in 32 x 32 tiles, so the strided
// reads stay in cache): what every backend decomposes (core/backend.h). The fused reduction reads
// both triangles, ?sytrd('L' column-major) the row-major upper one, ?syevd('U' column-major) the
// lower one: after this they all see the same matrix, and so does cuSOLVER (native/cuda mirrors it
// the same way), even for an input that is symmetric only within the checks' tolerance.
template <class T> void mirrorLowerToUpper(int n, T* a) {
  constexpr int tile = 32;
  for (int ib = 0; ib < n; ib += tile)
    for (int jb = ib; jb < n; jb += tile)
      for (int i = ib; i < std::min(ib + tile, n); ++i)
        for (int j = std::max(jb, i + 1); j < std::min(jb + tile, n); ++j)
          a[static_cast<std::size_t>(i) * n + j] = a[static_cast<std::size_t>(j) * n + i];
}

// Stage 1 for one matrix: false when a is outside the safe range (the caller then runs ?syevd).
template <class T> bool reduceToTridiagonal(int n, T* a, T* d, T* e, T* tau, EighWorkspace<T>& ws) {
  mirrorLowerToUpper(n, a);
  const std::size_t m = static_cast<std::size_t>(n) * n;
  T amax = 0;
  for (std::size_t i = 0; i < m; ++i) amax = std::max(amax, std::fabs(a[i]));
  const T smallNum = std::numeric_limits<T>::min() / std::numeric_limits<T>::epsilon();
  const T safeMin = std::sqrt(smallNum), safeMax = std::sqrt(T(1) / smallNum);
  if (!(amax >= safeMin && amax <= safeMax)) return false;  // zero, tiny or huge entries
  if (n <= kFusedTridiagonalMax) {
    householderTridiagonalize(n, a, d, e, tau, ws.scratch.data());
  } else if (sytrdLower(n, a, d, e, tau, ws.work.data(), static_cast<lapack_int>(ws.work.size())) != 0) {
    return false;  // cannot happen with a valid workspace; ?syevd reports it then
  }
  return true;
}

// Up to kTridiagonalLanes matrices (a[q], n x n, symmetric, finite; destroyed): w[q] receives
// W = U^T, l[q] the eigenvalues ascending, info[q] LAPACK's info (0 on success). The tridiagonal
// problems of the matrices in the safe range are solved together by the lane-interleaved QL
// iteration (tridiagonal_batched.h) where it is faster (float64, three or more matrices,
// n <= kBatchedTridiagonalMax, a CPU with AVX2 and FMA), one by one otherwise (float64: covpool's
// divide and conquer, ?stedc where it declines; float32: ?stedc); matrices outside the range go
// to ?syevd.
template <class T> void eighBatch(int n, int count, T* const* a, T* const* w, T* const* l, int* info) {
  thread_local EighWorkspace<T> ws;
  ws.reserve(n);
  const std::size_t nn = static_cast<std::size_t>(n);
  int fast[kTridiagonalLanes], fastCount = 0;
  for (int q = 0; q < count; ++q) {
    info[q] = 0;
    if (reduceToTridiagonal(n, a[q], l[q], ws.eOf(q, n), ws.tauOf(q, n), ws)) {
      fast[fastCount++] = q;
    } else {
      std::copy(a[q], a[q] + nn * nn, w[q]);
      info[q] = syevd(n, w[q], l[q]);
    }
  }
  bool solved = false;
#ifdef COVPOOL_X86_DISPATCH
  if constexpr (std::is_same_v<T, double>) {
    if (fastCount > 2 && n <= kBatchedTridiagonalMax && cpuHasAvx2Fma()) {
      double *d[kTridiagonalLanes], *e[kTridiagonalLanes], *z[kTridiagonalLanes];
      for (int k = 0; k < fastCount; ++k) {
        d[k] = l[fast[k]];  // the diagonal comes in where the eigenvalues go out
        e[k] = ws.eOf(fast[k], n);
        z[k] = w[fast[k]];
      }
      solved = tridiagonalEigenBatched(n, fastCount, d, e, d, z);
    }
  }
#endif
  const lapack_int lw = static_cast<lapack_int>(ws.work.size()), liw = static_cast<lapack_int>(ws.iwork.size());
  for (int k = 0; k < fastCount; ++k) {
    const int q = fast[k];
    if (!solved) {
      bool done = false;
      if constexpr (std::is_same_v<T, double>) done = tridiagonalEigenDivideConquer(n, l[q], ws.eOf(q, n), w[q], ws.divideConquer);
      if (!done) info[q] = stedc(n, l[q], ws.eOf(q, n), w[q], ws.work.data(), lw, ws.iwork.data(), liw);
    }
    if (info[q] == 0) backTransformBlocked(n, a[q], ws.tauOf(q, n), w[q], ws.work.data());
  }
}

// One matrix: a (n x n, symmetric, finite) is destroyed; w receives W = U^T, l the eigenvalues
// ascending. Returns LAPACK's info (0 on success).
template <class T> int eigh(int n, T* a, T* w, T* l) {
  int info = 0;
  eighBatch(n, 1, &a, &w, &l, &info);
  return info;
}

}  // namespace covpool::cpu
