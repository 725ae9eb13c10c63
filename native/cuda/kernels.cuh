// Custom CUDA kernels of the CUDA backend, as host launch functions. This header and kernels.cu need
// only the CUDA runtime (no cuBLAS / cuSOLVER), so they compile wherever nvcc does (scripts/check-cuda.sh
// builds them in CI), and the emulated device runs them unchanged on the CPU (native/cuda/test/emulator).
//
// Conventions, shared with the CPU backend:
//   - matrices are row-major, batch first: matrix b of a batch [B, n, n] starts at b * n * n;
//   - every launch is asynchronous on the given stream; nothing here synchronizes or allocates;
//   - `status` arrays hold one int per batch item; a check ORs its code into the item's entry
//     (atomicOr), so one download after a pipeline tells which items failed which checks;
//   - templates are instantiated for float and double (conversions for every pair) in kernels.cu.
#pragma once
#include <cstddef>
#include <cuda_runtime.h>

#include "../core/methods.h"
#include "kmath.cuh"

namespace covpool::cuda {

// Codes ORed into status arrays, in the order the CPU backend checks them for one item: when an
// item fails several checks, the lowest bit is the one to report.
enum StatusCode : int {
  kBadFeatures = 1 << 0,     // input features non-finite
  kBadGradIn = 1 << 1,       // incoming gradient non-finite
  kBadMatrix = 1 << 2,       // (covariance / input) matrix non-finite
  kAsymmetric = 1 << 3,      // input matrix not symmetric within tolerance
  kBadNormalizer = 1 << 4,   // tau <= 0 or non-finite
  kBadNewtonTrace = 1 << 5,  // svd-newton backward: trace of A not positive
  kBadSqrt = 1 << 6,         // forward produced a non-finite square root
  kBadGradOut = 1 << 7,      // backward produced a non-finite gradient
};

namespace kernels {

// ---- element types and layout --------------------------------------------------------------
template <class S, class D> void convert(const S* src, D* dst, std::size_t count, cudaStream_t s);
template <class T> void fill(T* a, T value, std::size_t count, cudaStream_t s);
// a[b] = base + b * stride for b < B: the pointer arrays cuBLAS' *Batched (non-strided) calls take.
template <class T> void pointerArray(T** arr, T* base, std::size_t stride, int B, cudaStream_t s);
template <class T> void transpose(const T* in, T* out, int B, int n, cudaStream_t s);  // out != in
// [B, rows, cols] -> [B, cols, rows], out != in: channels-last features [B, N, C] to [B, C, N], and back.
template <class T> void transposeBatch(const T* in, T* out, int B, int rows, int cols, cudaStream_t s);

// ---- covariance ----------------------------------------------------------------------------------
// xc = x - row means, rows = B * C rows of N positions; means accumulated in double. xc may be x.
template <class T> void centerRows(const T* x, T* xc, std::size_t rows, int N, cudaStream_t s);
// Copies the upper triangle into the lower one (the covariance GEMM is treated as syrk's upper
// triangle, as on the CPU, so the result is exactly symmetric whatever the GEMM's tiling).
template <class T> void mirrorUpper(T* a, int B, int n, cudaStream_t s);
// Copies the lower triangle into the upper one. Before an eigensolver: every backend decomposes the
// row-major lower triangle of sqrtm's and eigh's input (core/backend.h; the CPU mirrors it the same
// way before its reduction), so a matrix that is symmetric only within the tolerance is the same
// matrix to cuSOLVER as to the CPU's solver.
template <class T> void mirrorLower(T* a, int B, int n, cudaStream_t s);
// g <- g + g^T in place (covariance backward).
template <class T> void addTranspose(T* g, int B, int n, cudaStream_t s);
// out = (a + a^T) / 2; out may alias a.
template <class T> void symmetrize(const T* a, T* out, int B, int n, cudaStream_t s);

// ---- triangular vectorization ------------------------------------------------------------------
// y [B, n(n+1)/2] = upper triangle row by row, diagonal included; unpack is its gradient (zeros below).
template <class T> void packUpper(const T* a, T* y, int B, int n, cudaStream_t s);
template <class T> void unpackUpper(const T* y, T* a, int B, int n, cudaStream_t s);

// ---- checks ----------------------------------------------------------------------------------------
// status[b] |= code when item b (per elements each) holds a NaN or an infinity.
template <class T> void flagNonFinite(const T* a, std::size_t per, int B, int* status, int code, cudaStream_t s);
// Symmetry within 100 eps max|A| (the CPU's tolerance): firstBad[b] = the smallest i * n + j
// (i < j) that violates it, left untouched when none does; initialize firstBad to INT_MAX
// (fill<int>). status[b] |= kAsymmetric for those items. Non-finite items are skipped.
template <class T> void checkSymmetric(const T* a, int B, int n, int* firstBad, int* status, cudaStream_t s);

// ---- normalization -------------------------------------------------------------------------------
// tau[b] = trace (summed in order, as the CPU does), Frobenius norm (sum of squares in double) or 1;
// status[b] |= code when !(tau > 0) or tau is not finite (never for 'none').
template <class T> void normalizer(const T* a, int B, int n, Normalization nm, T* tau, int* status, int code, cudaStream_t s);
// svd-newton's backward check: status[b] |= code when !(tau[b] > 0).
template <class T> void flagNotPositive(const T* tau, int B, int* status, int code, cudaStream_t s);
// a[b] /= tau[b] elementwise (per elements per item); out may alias in.
template <class T> void divideByTau(const T* in, T* out, const T* tau, std::size_t per, int B, cudaStream_t s);
// out = in * sqrt(tau[b]) (multiply = true) or in / sqrt(tau[b]); out may alias in.
template <class T> void scaleBySqrtTau(const T* in, T* out, const T* tau, std::size_t per, int B, bool multiply, cudaStream_t s);
// Backward of S = sqrt(tau) f(A / tau) around a core backward dA_hat (in dA, replaced by dA):
//   c = <dS, S_hat> / (2 sqrt tau) - <dA_hat, A_hat> / tau   (inner products in double)
//   dA = dA_hat / tau + c * (I for trace, A_hat for Frobenius).
// dots: B * 2 doubles of scratch. No-op for 'none'.
template <class T> void normalizationBackward(Normalization nm, const T* tau, const T* dS, const T* sHat, const T* aHat,
                                              T* dA, double* dots, int B, int n, cudaStream_t s);

// ---- Newton-Schulz / Pade / Lyapunov elementwise steps ------------------------------------------
// out = alpha * in + diag * I (in == nullptr: out = diag * I); out may alias in.
template <class T> void axpbyIdentity(const T* in, T* out, T alpha, T diag, int B, int n, cudaStream_t s);
// a += v I.
template <class T> void addDiagonal(T* a, T v, int B, int n, cudaStream_t s);
// y += alpha x over count elements.
template <class T> void axpy(T* y, T alpha, const T* x, std::size_t count, cudaStream_t s);
// MPA-Lya forward accumulation: p += pk * zk, q += qk * zk.
template <class T> void padeAccumulate(T* p, T* q, const T* zk, T pk, T qk, std::size_t count, cudaStream_t s);

// ---- eigen-based square root ---------------------------------------------------------------------
// l = max(l, eps); with topN > 0 the n - topN smallest (first, ascending order) are set to eps.
template <class T> void floorEigenvalues(T* l, int B, int n, T eps, int topN, cudaStream_t s);
// v = diag(l^{1/4}) w (w row i = eigenvector i), so that S = v^T v.
template <class T> void scaleRowsQuarterRoot(const T* w, const T* l, T* v, int B, int n, cudaStream_t s);
// Fused K-matrix backward kernel: inner = sym(F o 2 M diag(sqrt l)) + diag(M_ii / 2 sqrt l_i) for
// the K methods, M o C for svd-lyap, with F filled on the fly and, for svd / svd-topn / svd-pade,
// its non-finite entries replaced per matrix (two passes: statistics, then the fill).
// stats: scratch of B * 4 values of T (hi, lo, bad flag, padding). k.padeP / padeQ: device memory.
template <class T> void eigenBackwardInner(const KParams& k, const T* M, const T* l, T* inner, T* stats, int B, int n, cudaStream_t s);
// The analysis op: F (after replacement when k.replace) or svd-lyap's C, from eigenvalues l.
template <class T> void coefficientMatrix(const KParams& k, const T* l, T* F, T* stats, int B, int n, cudaStream_t s);

}  // namespace kernels
}  // namespace covpool::cuda
