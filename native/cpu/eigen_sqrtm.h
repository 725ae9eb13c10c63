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
#include <type_traits>

#include "../core/methods.h"
#include "../core/pade.h"
#include "blas.h"
#include "matrix.h"
#include "symmetric_eigen.h"

namespace covpool::cpu {

inline void requireEighConverged(int info) {
  if (info != 0) fail("eigendecomposition did not converge (LAPACK info=" + std::to_string(info) + ")");
}

// After the eigendecomposition (w = W = U^T, l ascending): floors the eigenvalues at eps and, for
// svd-topn, sets all but the topN largest to eps. Then s = W^T diag(sqrt l) W.
template <class T> void eigenSqrtFromEigen(T* s, const T* w, T* l, int n, T eps, int topN, T* work) {
  for (int i = 0; i < n; ++i) l[i] = std::max(l[i], eps);
  if (topN > 0)
    for (int i = 0; i < n - topN; ++i) l[i] = eps;
  // s = V^T V with V = diag(l^{1/4}) W: one triangle (gemmUpper; OpenBLAS's syrk is slower at
  // n = 64: 9.7 us against 7.0 for float64, and no faster at n = 256).
  for (int i = 0; i < n; ++i) {
    const T f = std::sqrt(std::sqrt(l[i]));
    for (int j = 0; j < n; ++j) work[i * n + j] = f * w[i * n + j];
  }
  gemmUpper(true, false, n, n, T(1), work, n, work, n, T(0), s, n);
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

// Fills F (n x n), F_ij = coefficient of u_i in the derivative of u_j, i != j; F_ii = 0.
// `replace` = false skips the non-finite replacement (for analysis of the raw coefficients).
//
// The series methods (taylor, pade, pi) evaluate a polynomial of degree up to ~100 per entry. Both
// entries of a pair {i, j} use the same ratio, so each series is evaluated once per pair, and the
// Horner recurrences of one row's pairs run side by side (degree loop outside, pairs inside): the
// pairs are independent, so the inner loop vectorizes instead of waiting on one dependent chain.
// Every entry still goes through exactly the same operations, in the same order, as one scalar
// Horner evaluation would (the CUDA kernels mirror this arithmetic).
template <class T> void fillF(const SqrtmOptions& o, const T* l, T* F, int n, const PadeCoefficients* pade, bool replace = true) {
  for (int i = 0; i < n; ++i) F[i * n + i] = T(0);
  if (o.method == Method::SVD || o.method == Method::SVD_TOPN || o.method == Method::SVD_NEWTON || o.method == Method::SVD_TRUNC) {
    // svd-newton never gets here (it has its own backward); listed so F is defined for it.
    // One division per pair: 1/(l_i - l_j) = -1/(l_j - l_i) exactly, except on ties, where both
    // differences are +0 and both entries +inf.
    const bool clip = o.method == Method::SVD_TRUNC;
    const T kappa = static_cast<T>(o.kappa);
    for (int i = 0; i < n; ++i)
      for (int j = i + 1; j < n; ++j) {
        const T v = T(1) / (l[j] - l[i]);
        const T u = l[i] == l[j] ? v : -v;
        F[i * n + j] = clip ? std::clamp(v, -kappa, kappa) : v;
        F[j * n + i] = clip ? std::clamp(u, -kappa, kappa) : u;
      }
  } else {
    // Scratch for one row's pairs (i, j > i), indexed t = j - i - 1.
    Vec<T> r(n), big(n), acc(n), acc2(n), acc3(n);
    const int D = o.degree, T_ = o.iterations;
    Vec<T> pc, qc, qa;  // Pade coefficients in T, and |q_k|
    if (o.method == Method::SVD_PADE) {
      for (double v : pade->p) pc.push_back(static_cast<T>(v));
      for (double v : pade->q) { qc.push_back(static_cast<T>(v)); qa.push_back(std::fabs(static_cast<T>(v))); }
    }
    for (int i = 0; i < n - 1; ++i) {
      const int cnt = n - i - 1;
      const T li = l[i];
      const T* lj = l + i + 1;
      if (o.method == Method::SVD_PI) {
        // T power-iteration steps with deflation from the largest eigenvalue down (larger index =
        // deflated earlier). Linearizing at the converged vectors gives, with S_m(x) = sum_{k<m} x^k
        // and x = l_i / l_j (i < j): u_i in du_j = S_T(x) / l_j (u_i not yet deflated) and
        // u_j in du_i = -S_{T-1}(x) / l_j (u_j deflated: the deflation term cancels the first
        // power). Exact: 1/(l_j - l_i) and 1/(l_i - l_j), the T -> infinity limits.
        for (int t = 0; t < cnt; ++t) { r[t] = li / lj[t]; acc[t] = T(1); }
        for (int k = 0; k < T_ - 2; ++k)
          for (int t = 0; t < cnt; ++t) acc[t] = acc[t] * r[t] + T(1);  // -> S_{T-1}
        for (int t = 0; t < cnt; ++t) {
          const int j = i + 1 + t;
          F[j * n + i] = T_ >= 2 ? -acc[t] / lj[t] : T(0);
          const T sT = T_ >= 2 ? acc[t] * r[t] + T(1) : T(1);  // S_T = x S_{T-1} + 1
          F[i * n + j] = sT / lj[t];
        }
        continue;
      }
      // taylor / pade: K_ji = 1/(l_j - l_i) = s / big * 1/(1 - r),  r = small / big in [0, 1]
      for (int t = 0; t < cnt; ++t) {
        big[t] = std::max(li, lj[t]);
        r[t] = std::min(li, lj[t]) / big[t];
      }
      if (o.method == Method::SVD_TAYLOR) {
        for (int t = 0; t < cnt; ++t) acc[t] = T(1);
        for (int k = D - 1; k >= 0; --k)
          for (int t = 0; t < cnt; ++t) acc[t] = acc[t] * r[t] + T(1);
      } else {
        // P(r)/Q(r). Near r = 1 the computed Q(r) is rounding noise (its exact value tends to 0:
        // the approximant has the pole of 1/(1-r)); where |Q(r)| is below the Horner error bound
        // 2 (L+1) u sum |q_k| r^k we return the pole itself (+-inf), so ties get the `svd`
        // replacement rule instead of a noise value like 1e17 whose size depends on rounding.
        const int L = static_cast<int>(qc.size()) - 1;
        for (int t = 0; t < cnt; ++t) { acc[t] = pc[L]; acc2[t] = qc[L]; acc3[t] = qa[L]; }
        for (int k = L - 1; k >= 0; --k)
          for (int t = 0; t < cnt; ++t) {
            acc[t] = acc[t] * r[t] + pc[k];
            acc2[t] = acc2[t] * r[t] + qc[k];
            acc3[t] = acc3[t] * r[t] + qa[k];
          }
        const T inf = std::numeric_limits<T>::infinity();
        for (int t = 0; t < cnt; ++t) {
          const T bound = T(2) * (L + 1) * std::numeric_limits<T>::epsilon() * acc3[t];
          acc[t] = std::fabs(acc2[t]) <= bound ? (acc[t] >= 0 ? inf : -inf) : acc[t] / acc2[t];
        }
      }
      for (int t = 0; t < cnt; ++t) {
        const int j = i + 1 + t;
        const T sji = lj[t] >= li ? T(1) : T(-1), sij = li >= lj[t] ? T(1) : T(-1);
        F[i * n + j] = sji / big[t] * acc[t];
        F[j * n + i] = sij / big[t] * acc[t];
      }
    }
  }
  if (replace && (o.method == Method::SVD || o.method == Method::SVD_TOPN || o.method == Method::SVD_PADE))
    replaceNonFinite(F, n);
}

// Backward of eigenSqrtFromEigen: dS (raw) -> dA, symmetric up to rounding (the caller symmetrizes
// once, after the normalization backward). work: 3 n x n matrices.
template <class T> void eigenSqrtBackward(const SqrtmOptions& o, const T* dS, T* dA, const T* w, const T* l, int n,
                                          const PadeCoefficients* pade, T* work) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  T* g = work;
  T* t1 = work + m;
  T* inner = work + 2 * m;
  symmetrize(dS, g, n);
  // Both sandwich products W G W^T and W^T inner W are symmetric (G and inner are): the first
  // factor in full, the second as an upper triangle (gemmUpper), 1.5-1.6 GEMMs of time instead of 2.
  // M = W (W G)^T: where covpool's kernels take it (they read B by rows, not transposed), W G is
  // transposed first (an n^2 pass) so that the triangle is W times a plain matrix.
  gemm(false, false, n, T(1), w, g, T(0), t1);   // W G
  if (smallGemmApplies(n, n, n)) {
    transposeInto(t1, inner, n);                                   // (W G)^T = G W^T
    gemmUpper(false, false, n, n, T(1), w, n, inner, n, T(0), g, n);  // M = W G W^T (g reused)
  } else {
    gemmUpper(false, true, n, n, T(1), t1, n, w, n, T(0), g, n);
  }
  mirrorUpper(g, n);
  const T* M = g;
  Vec<T> sq(n);
  for (int i = 0; i < n; ++i) sq[i] = std::sqrt(l[i]);
  // inner is symmetric: its upper triangle row by row (contiguous, vectorized), then mirrored.
  bool done = false;
  if (o.method == Method::SVD_LYAP) {
    for (int i = 0; i < n; ++i) {
      const T si = sq[i];
      const T* mi = M + static_cast<std::size_t>(i) * n;
      T* xi = inner + static_cast<std::size_t>(i) * n;
      for (int j = i; j < n; ++j) xi[j] = mi[j] / (si + sq[j]);
    }
    done = true;
  } else if ((o.method == Method::SVD || o.method == Method::SVD_TRUNC || o.method == Method::SVD_TOPN) && std::is_sorted(l, l + n)) {
    // fillF's ordinary K fused into the pass, no F matrix: per pair (i < j) F_ij = 1/(l_j - l_i),
    // F_ji = -F_ij (both +inf on ties), clipped for svd-trunc, and X_ij = F_ij M_ij sqrt(l_j) +
    // F_ji M_ij sqrt(l_i) in the same operations as the general path below. svd and svd-topn
    // replace non-finite entries by the largest finite entry of F (+inf, NaN) or the smallest
    // (-inf), replaceNonFinite's rule; with l ascending those are hi = the largest finite 1/gap of
    // neighbours (fl(l_j - l_i) is smallest for neighbours, and 1/x is monotone under rounding, so
    // no pair has a larger finite entry; 0 when there is none, from F's zero diagonal) and -hi.
    const bool clip = o.method == Method::SVD_TRUNC, replace = !clip;
    const T kappa = static_cast<T>(o.kappa);
    T hi = 0;
    for (int i = 0; i + 1 < n; ++i)
      if (l[i + 1] > l[i]) {
        const T v = T(1) / (l[i + 1] - l[i]);
        if (v <= std::numeric_limits<T>::max()) hi = std::max(hi, v);
      }
    for (int i = 0; i < n; ++i) {
      const T li = l[i], si = sq[i];
      const T* mi = M + static_cast<std::size_t>(i) * n;
      T* xi = inner + static_cast<std::size_t>(i) * n;
      xi[i] = mi[i] / (T(2) * si);
      for (int j = i + 1; j < n; ++j) {
        T v = T(1) / (l[j] - li);
        T u = li == l[j] ? v : -v;
        if (clip) {
          v = std::clamp(v, -kappa, kappa);
          u = std::clamp(u, -kappa, kappa);
        }
        if (replace) {
          if (!(std::fabs(v) <= std::numeric_limits<T>::max())) v = v < 0 ? -hi : hi;
          if (!(std::fabs(u) <= std::numeric_limits<T>::max())) u = u < 0 ? -hi : hi;
        }
        const T mij = mi[j];
        xi[j] = v * mij * sq[j] + u * mij * si;
      }
    }
    done = true;
  }
  if (!done) {
    T* F = t1;
    fillF(o, l, F, n, pade);
    // X_ij = F_ij * 2 M_ij sqrt(l_j); inner = sym(X) + diag(M_ii / (2 sqrt l_i))
    for (int i = 0; i < n; ++i) {
      inner[i * n + i] = M[i * n + i] / (T(2) * sq[i]);
      for (int j = i + 1; j < n; ++j) {
        const T mij = M[i * n + j];
        inner[i * n + j] = F[i * n + j] * mij * sq[j] + F[j * n + i] * mij * sq[i];
      }
    }
  }
  mirrorUpper(inner, n);
  gemm(false, false, n, T(1), inner, w, T(0), t1);  // inner W
  gemmUpper(true, false, n, n, T(1), w, n, t1, n, T(0), dA, n);  // W^T inner W
  mirrorUpper(dA, n);
}

}  // namespace covpool::cpu
