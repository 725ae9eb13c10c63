// Eigen-based square root S = U diag(sqrt(l)) U^T and its backward variants.
//
// Storage convention: W = U^T, i.e. row i of W is the eigenvector of l_i, eigenvalues ascending
// (what LAPACK's column-major syevd returns when handed a row-major symmetric matrix).
//
// Backward (G = sym(dS), M = U^T G U):
//   K methods:  dA = U [ sym(F o (U^T dU)) + diag(M_ii / (2 sqrt l_i)) ] U^T,
//               (U^T dU)_ij = 2 M_ij sqrt(l_j),  F_ij = K_ji = coefficient of u_i in du_j
//   svd-lyap:   dA = U [ M o C ] U^T,  C_ij = 1 / (sqrt l_i + sqrt l_j)
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>

#include "../core/methods.h"
#include "../core/pade.h"
#include "blas.h"
#include "matrix.h"

namespace covpool::cpu {

// Eigendecomposition of a (n x n) into w (W = U^T) and l; floors eigenvalues at eps and, for
// svd-topn, sets all but the topN largest to eps. Then s = W^T diag(sqrt l) W.
template <class T> void eigenSqrtForward(const T* a, T* s, T* w, T* l, int n, T eps, int topN, T* work) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  std::copy(a, a + m, w);
  const int info = syevd(n, w, l);
  if (info != 0) fail("eigendecomposition did not converge (LAPACK syevd info=" + std::to_string(info) + ")");
  for (int i = 0; i < n; ++i) l[i] = std::max(l[i], eps);
  if (topN > 0)
    for (int i = 0; i < n - topN; ++i) l[i] = eps;
  // s = V^T V with V = diag(l^{1/4}) W: one syrk instead of a full GEMM.
  for (int i = 0; i < n; ++i) {
    const T f = std::sqrt(std::sqrt(l[i]));
    for (int j = 0; j < n; ++j) work[i * n + j] = f * w[i * n + j];
  }
  syrkUpper(true, n, n, T(1), work, n, s);
  mirrorUpper(s, n);
}

// Per-matrix replacement of non-finite K entries (the `svd` rule): +inf -> largest finite entry,
// -inf -> smallest finite entry, NaN -> largest finite entry. Per matrix, so samples stay
// independent (the paper's code does it batch-wide).
template <class T> void replaceNonFinite(T* f, int n) {
  T hi = -std::numeric_limits<T>::infinity(), lo = std::numeric_limits<T>::infinity();
  bool bad = false;
  for (int i = 0; i < n * n; ++i) {
    if (std::isfinite(f[i])) { hi = std::max(hi, f[i]); lo = std::min(lo, f[i]); }
    else bad = true;
  }
  if (!bad) return;
  if (!std::isfinite(hi)) { hi = 0; lo = 0; }  // nothing finite at all (n = 1 cannot get here)
  for (int i = 0; i < n * n; ++i) {
    if (std::isnan(f[i])) f[i] = hi;
    else if (f[i] == std::numeric_limits<T>::infinity()) f[i] = hi;
    else if (f[i] == -std::numeric_limits<T>::infinity()) f[i] = lo;
  }
}

// Horner evaluation of sum_{k=0}^{deg} c_k r^k (c == nullptr: all ones, i.e. the geometric sum).
template <class T> inline T polyval(const double* c, int deg, T r) {
  T acc = c ? static_cast<T>(c[deg]) : T(1);
  for (int k = deg - 1; k >= 0; --k) acc = acc * r + (c ? static_cast<T>(c[k]) : T(1));
  return acc;
}

// P(r)/Q(r) for svd-pade. Near r = 1 the computed Q(r) is pure rounding noise (its exact value
// tends to 0: the approximant has the pole of 1/(1-r)); when |Q(r)| is below the Horner error
// bound 2 (L+1) u sum |q_k| r^k we return the pole itself (+-inf), so that ties get the `svd`
// replacement rule instead of a noise value like 1e17 whose size depends on rounding.
template <class T> inline T padeRatio(const PadeCoefficients& c, T r) {
  const int L = static_cast<int>(c.q.size()) - 1;
  const T num = polyval<T>(c.p.data(), L, r);
  const T den = polyval<T>(c.q.data(), L, r);
  T absDen = std::fabs(static_cast<T>(c.q[L]));
  for (int k = L - 1; k >= 0; --k) absDen = absDen * r + std::fabs(static_cast<T>(c.q[k]));
  const T bound = T(2) * (L + 1) * std::numeric_limits<T>::epsilon() * absDen;
  if (std::fabs(den) <= bound) return num >= 0 ? std::numeric_limits<T>::infinity() : -std::numeric_limits<T>::infinity();
  return num / den;
}

// Fills F (n x n), F_ij = coefficient of u_i in the derivative of u_j, i != j; F_ii = 0.
// `replace` = false skips the non-finite replacement (for analysis of the raw coefficients).
template <class T> void fillF(const SqrtmOptions& o, const T* l, T* F, int n, const PadeCoefficients* pade, bool replace = true) {
  const int D = o.degree, T_ = o.iterations;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      T v = 0;
      if (i != j) {
        const T li = l[i], lj = l[j];
        switch (o.method) {
          case Method::SVD:
          case Method::SVD_TOPN:
          case Method::SVD_NEWTON:  // (not used: svd-newton has its own backward)
            v = T(1) / (lj - li);
            break;
          case Method::SVD_TRUNC:
            v = std::clamp(T(1) / (lj - li), static_cast<T>(-o.kappa), static_cast<T>(o.kappa));
            break;
          case Method::SVD_TAYLOR:
          case Method::SVD_PADE: {
            // K_ji = 1/(l_j - l_i) = s / big * 1/(1 - r),  r = small/big in [0, 1]
            const T big = std::max(li, lj), r = std::min(li, lj) / big;
            const T sgn = lj >= li ? T(1) : T(-1);
            const T series = o.method == Method::SVD_TAYLOR ? polyval<T>(nullptr, D, r) : padeRatio(*pade, r);
            v = sgn / big * series;
            break;
          }
          case Method::SVD_PI: {
            // T power-iteration steps with deflation from the largest eigenvalue down (larger index
            // = deflated earlier). Linearizing at the converged vectors gives, with
            // S_m(x) = sum_{k<m} x^k:  u_i in du_j = S_T(l_i/l_j)/l_j if u_i is not yet deflated
            // (i < j), and -S_{T-1}(l_j/l_i)/l_i if it is (i > j; the deflation term cancels the
            // first power). Exact: 1/(l_j - l_i), the T -> infinity limit of both.
            if (i < j) v = polyval<T>(nullptr, T_ - 1, li / lj) / lj;
            else v = T_ >= 2 ? -polyval<T>(nullptr, T_ - 2, lj / li) / li : T(0);
            break;
          }
          default: break;
        }
      }
      F[i * n + j] = v;
    }
  }
  if (replace && (o.method == Method::SVD || o.method == Method::SVD_TOPN || o.method == Method::SVD_PADE))
    replaceNonFinite(F, n);
}

// Backward of eigenSqrtForward: dS (raw) -> dA (symmetric). work: 3 n x n matrices.
template <class T> void eigenSqrtBackward(const SqrtmOptions& o, const T* dS, T* dA, const T* w, const T* l, int n,
                                          const PadeCoefficients* pade, T* work) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  T* g = work;
  T* t1 = work + m;
  T* inner = work + 2 * m;
  symmetrize(dS, g, n);
  gemm(false, false, n, T(1), w, g, T(0), t1);   // W G
  gemm(false, true, n, T(1), t1, w, T(0), g);    // M = W G W^T (g reused)
  const T* M = g;
  Vec<T> sq(n);
  for (int i = 0; i < n; ++i) sq[i] = std::sqrt(l[i]);
  if (o.method == Method::SVD_LYAP) {
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) inner[i * n + j] = M[i * n + j] / (sq[i] + sq[j]);
  } else {
    T* F = t1;
    fillF(o, l, F, n, pade);
    // X_ij = F_ij * 2 M_ij sqrt(l_j); inner = sym(X) + diag(M_ii / (2 sqrt l_i))
    for (int i = 0; i < n; ++i) {
      inner[i * n + i] = M[i * n + i] / (T(2) * sq[i]);
      for (int j = i + 1; j < n; ++j) {
        const T mij = M[i * n + j];
        const T v = F[i * n + j] * mij * sq[j] + F[j * n + i] * mij * sq[i];
        inner[i * n + j] = v;
        inner[j * n + i] = v;
      }
    }
  }
  gemm(false, false, n, T(1), inner, w, T(0), t1);  // inner W
  gemm(true, false, n, T(1), w, t1, T(0), dA);      // W^T inner W
  symmetrize(dA, dA, n);
}

}  // namespace covpool::cpu
