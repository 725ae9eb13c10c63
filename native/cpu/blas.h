// Thin type-generic wrappers over CBLAS and LAPACKE (OpenBLAS), row-major n x n matrices.
// BLAS runs single-threaded: batch items are spread over the cores by core/threadpool instead,
// which is both faster for the small matrices of GCP heads and safe under concurrent calls.
#pragma once
#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "../core/errors.h"
#include "matrix.h"
#include "small_gemm.h"

namespace covpool::cpu {

// Called once at module load.
void configureBlasThreads();

inline CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

// General rectangular, row-major: C (m x n) = alpha op(A) op(B) + beta C, op(A) is m x k. blasGemm
// is OpenBLAS's; gemm takes covpool's own kernels (small_gemm.h) where they apply, OpenBLAS otherwise.
inline void blasGemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void blasGemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
template <class T> void gemm(bool ta, bool tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb, T beta, T* c, int ldc) {
  if (!tb) {
    const GemmTerm<T> term{a, lda, ta, b, ldb, k};
    if (smallGemmFull(m, n, &term, 1, alpha, beta, c, ldc)) return;
  }
  blasGemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
// C = alpha * op(A) op(B) + beta * C, all n x n row-major.
template <class T> void gemm(bool ta, bool tb, int n, T alpha, const T* a, const T* b, T beta, T* c) {
  gemm(ta, tb, n, n, n, alpha, a, n, b, n, beta, c, n);
}
// Upper triangle (diagonal included) of C = alpha op(A) op(B) + beta C, for products known to be
// symmetric (op(A): n x k, op(B): k x n, row-major; the strictly lower triangle of C is left as it
// was). covpool's kernels (small_gemm.h) form it tile by tile up to the diagonal where they apply.
// Otherwise, as OpenBLAS 0.3.21 has no gemmt, this splits: above 64 rows it halves (the
// off-diagonal block is one GEMM, the two diagonal blocks recurse); a diagonal block of <= 64 rows
// is a staircase of wide GEMMs, block row i (h = n/4 rows, rounded up to a multiple of 8) being
// C[i:i+h, i:n], 0.625 of the block's flops in four calls. Splits fall on multiples of 8: aligned,
// SIMD-friendly blocks. Against a full GEMM, single-threaded OpenBLAS (bench/native/kernels.cpp),
// float32 / float64, Cooperlake kernels (what OpenBLAS picks on this AVX-512 machine): 0.67 / 0.64
// at n = 64, 0.57 / 0.57 at n = 256; Haswell kernels: 0.79 / 0.79 and 0.63 / 0.66. Halving down to
// 32-row leaves done in full, as before, did 0.77 / 0.76 at n = 64: too few flops saved there.
template <class T> const T* opRowsFrom(const T* a, int lda, bool ta, int i) { return ta ? a + i : a + static_cast<std::size_t>(i) * lda; }
template <class T> const T* opColumnsFrom(const T* b, int ldb, bool tb, int i) { return tb ? b + static_cast<std::size_t>(i) * ldb : b + i; }
template <class T>
void gemmUpperBlas(bool ta, bool tb, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb, T beta, T* c, int ldc) {
  if (n <= 64) {
    const int h = std::max(8, (n / 4 + 7) / 8 * 8);
    for (int i = 0; i < n; i += h)
      blasGemm(ta, tb, std::min(h, n - i), n - i, k, alpha, opRowsFrom(a, lda, ta, i), lda, opColumnsFrom(b, ldb, tb, i), ldb, beta,
               c + static_cast<std::size_t>(i) * ldc + i, ldc);
    return;
  }
  const int h = (n / 2 + 7) / 8 * 8;
  const T* bRight = opColumnsFrom(b, ldb, tb, h);
  gemmUpperBlas(ta, tb, h, k, alpha, a, lda, b, ldb, beta, c, ldc);
  blasGemm(ta, tb, h, n - h, k, alpha, a, lda, bRight, ldb, beta, c + h, ldc);
  gemmUpperBlas(ta, tb, n - h, k, alpha, opRowsFrom(a, lda, ta, h), lda, bRight, ldb, beta, c + static_cast<std::size_t>(h) * ldc + h, ldc);
}
template <class T>
void gemmUpper(bool ta, bool tb, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb, T beta, T* c, int ldc) {
  if (!tb) {
    const GemmTerm<T> term{a, lda, ta, b, ldb, k};
    if (smallGemm(n, n, &term, 1, alpha, beta, c, ldc, true)) return;
  }
  gemmUpperBlas(ta, tb, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
// Square n x n operands, no transposes.
template <class T> void gemmUpper(int n, T alpha, const T* a, const T* b, T beta, T* c) {
  gemmUpper(false, false, n, n, alpha, a, n, b, n, beta, c, n);
}

// out = alpha a b for a product known to be symmetric (e.g. of commuting symmetric a, b): the
// upper triangle by gemmUpper, mirrored.
template <class T> void symProduct(int n, T alpha, const T* a, const T* b, T* out) {
  gemmUpper(n, alpha, a, b, T(0), out);
  mirrorUpper(out, n);
}
// out = upper(a1 b1 + a2 b2), mirrored: a symmetric sum of two products (a tangent of one). One
// pass of covpool's kernels (both products accumulate in the same registers) where they apply.
template <class T> void symProduct2(int n, T alpha, const T* a1, const T* b1, const T* a2, const T* b2, T* out) {
  const GemmTerm<T> terms[2] = {{a1, n, false, b1, n, n}, {a2, n, false, b2, n, n}};
  if (!smallGemm(n, n, terms, 2, alpha, T(0), out, n, true)) {
    gemmUpper(n, alpha, a1, b1, T(0), out);
    gemmUpper(n, alpha, a2, b2, T(1), out);
  }
  mirrorUpper(out, n);
}

// Upper triangle of C (n x n) = alpha A A^T (A is n x k, trans=false) or alpha A^T A (A is k x n).
inline void syrkUpper(bool trans, int n, int k, float alpha, const float* a, int lda, float* c) {
  cblas_ssyrk(CblasRowMajor, CblasUpper, tr(trans), n, k, alpha, a, lda, 0.0f, c, n);
}
inline void syrkUpper(bool trans, int n, int k, double alpha, const double* a, int lda, double* c) {
  cblas_dsyrk(CblasRowMajor, CblasUpper, tr(trans), n, k, alpha, a, lda, 0.0, c, n);
}

// Symmetric eigendecomposition in place. `a` (n x n, symmetric) is overwritten so that row i holds
// the eigenvector of w[i]; eigenvalues ascending. (Row-major symmetric input is its own
// column-major transpose, so LAPACK's column-major eigenvector matrix reads as rows here.)
// LAPACKE_?syevd would query and malloc its workspace on every call (1 MiB of fresh pages at
// n = 256); each thread keeps one instead, of LAPACK's documented size for JOBZ = 'V', which is
// also what the workspace query returns (1 + 6n + 2n^2 reals, 3 + 5n integers).
template <class T> struct SyevdWorkspace {
  std::vector<T> work;
  std::vector<lapack_int> iwork;
  void reserve(int n) {
    const std::size_t lw = 1 + 6 * static_cast<std::size_t>(n) + 2 * static_cast<std::size_t>(n) * n, liw = 3 + 5 * static_cast<std::size_t>(n);
    if (work.size() < lw) work.resize(lw);
    if (iwork.size() < liw) iwork.resize(liw);
  }
};
inline int syevd(int n, float* a, float* w) {
  thread_local SyevdWorkspace<float> ws;
  ws.reserve(n);
  return LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, 'V', 'U', n, a, n, w, ws.work.data(), static_cast<lapack_int>(ws.work.size()),
                             ws.iwork.data(), static_cast<lapack_int>(ws.iwork.size()));
}
inline int syevd(int n, double* a, double* w) {
  thread_local SyevdWorkspace<double> ws;
  ws.reserve(n);
  return LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', n, a, n, w, ws.work.data(), static_cast<lapack_int>(ws.work.size()),
                             ws.iwork.data(), static_cast<lapack_int>(ws.iwork.size()));
}

// Solves A X = B for X (n x n) with A symmetric positive definite and B symmetric (so row- and
// column-major agree), overwriting B; A gets its Cholesky factor. Returns LAPACK's info (> 0: A
// is not positive definite).
inline int posvSymmetric(int n, float* a, float* b) { return LAPACKE_sposv(LAPACK_COL_MAJOR, 'U', n, n, a, n, b, n); }
inline int posvSymmetric(int n, double* a, double* b) { return LAPACKE_dposv(LAPACK_COL_MAJOR, 'U', n, n, a, n, b, n); }

// Solves A X = B for X (n x n), overwriting B; row-major.
inline int gesv(int n, float* a, float* b, lapack_int* ipiv) { return LAPACKE_sgesv(LAPACK_ROW_MAJOR, n, n, a, n, ipiv, b, n); }
inline int gesv(int n, double* a, double* b, lapack_int* ipiv) { return LAPACKE_dgesv(LAPACK_ROW_MAJOR, n, n, a, n, ipiv, b, n); }

}  // namespace covpool::cpu
