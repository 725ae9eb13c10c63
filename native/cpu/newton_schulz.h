// Newton-Schulz iteration for the square root of a normalized SPD matrix (iSQRT-COV) and the exact
// reverse-mode derivative of that iteration (not of the true square root).
//   Y0 = A, Z0 = I;  P_k = (3I - Z_{k-1} Y_{k-1}) / 2;  Y_k = Y_{k-1} P_k;  Z_k = P_k Z_{k-1}
//   the last step only forms Y_T = Y_{T-1} P_T.
// The tape keeps Y_0..Y_{T-1}, Z_0..Z_{T-1} and P_1..P_T: backward then costs only its own GEMMs.
#pragma once
#include "blas.h"
#include "matrix.h"

namespace covpool::cpu {

template <class T> struct NsTape {
  int n = 0, iters = 0;
  T* Y = nullptr;  // iters matrices
  T* Z = nullptr;  // iters matrices (Z_0 = I stored for uniform indexing)
  T* P = nullptr;  // iters matrices: P[k-1] = P_k
  T* y(int k) const { return Y + static_cast<std::size_t>(k) * n * n; }
  T* z(int k) const { return Z + static_cast<std::size_t>(k) * n * n; }
  T* p(int k) const { return P + static_cast<std::size_t>(k - 1) * n * n; }
  static std::size_t matricesNeeded(int iters) { return 3 * static_cast<std::size_t>(iters); }
  void bind(T* storage, int n_, int iters_) {
    n = n_; iters = iters_;
    const std::size_t m = static_cast<std::size_t>(n) * n;
    Y = storage; Z = storage + iters * m; P = storage + 2 * iters * m;
  }
};

// Forward: a (normalized) -> s. GEMMs: 1 + 3(T-2) + 2 for T >= 2.
template <class T> void nsForward(const T* a, T* s, const NsTape<T>& t) {
  const int n = t.n, T_ = t.iters;
  const std::size_t m = static_cast<std::size_t>(n) * n;
  std::copy(a, a + m, t.y(0));
  setIdentity(t.z(0), n);
  for (int k = 1; k <= T_; ++k) {
    T* p = t.p(k);
    if (k == 1) {  // Z_0 = I: P_1 = (3I - Y_0)/2 without a GEMM
      for (std::size_t i = 0; i < m; ++i) p[i] = T(-0.5) * t.y(0)[i];
    } else {
      gemm(false, false, n, T(-0.5), t.z(k - 1), t.y(k - 1), T(0), p);
    }
    for (int i = 0; i < n; ++i) p[i * n + i] += T(1.5);
    if (k < T_) {
      gemm(false, false, n, T(1), t.y(k - 1), p, T(0), t.y(k));
      if (k == 1) std::copy(p, p + m, t.z(1));
      else gemm(false, false, n, T(1), p, t.z(k - 1), T(0), t.z(k));
    } else {
      gemm(false, false, n, T(1), t.y(k - 1), p, T(0), s);
    }
  }
}

// Backward: dS (w.r.t. Y_T) -> dA (w.r.t. Y_0), not symmetrized. `work` holds nsWorkMatrices
// n x n matrices. GEMMs: 4 + 6(T-2) + 2 for T >= 2.
constexpr int nsWorkMatrices = 5;
template <class T> void nsBackward(const T* dS, T* dA, const NsTape<T>& t, T* work) {
  const int n = t.n, T_ = t.iters;
  const std::size_t m = static_cast<std::size_t>(n) * n;
  T* dY = work;
  T* dZ = work + m;
  T* dP = work + 2 * m;
  T* dYprev = work + 3 * m;
  T* dZprev = work + 4 * m;
  std::copy(dS, dS + m, dY);
  bool haveDZ = false;  // Z_T is never formed, so the last step has no dZ
  for (int k = T_; k >= 1; --k) {
    const T* yPrev = t.y(k - 1);
    const T* zPrev = t.z(k - 1);
    const T* p = t.p(k);
    // Through Y_k = Y_{k-1} P_k and Z_k = P_k Z_{k-1}:
    gemm(true, false, n, T(1), yPrev, dY, T(0), dP);             // dP = Y_{k-1}^T dY
    if (haveDZ) {
      if (k == 1) for (std::size_t i = 0; i < m; ++i) dP[i] += dZ[i];  // Z_0 = I
      else gemm(false, true, n, T(1), dZ, zPrev, T(1), dP);       // dP += dZ Z_{k-1}^T
    }
    gemm(false, true, n, T(1), dY, p, T(0), dYprev);              // dY_{k-1} = dY P_k^T
    // Through P_k = (3I - Z_{k-1} Y_{k-1}) / 2:
    if (k == 1) {  // Z_0 = I is a constant
      for (std::size_t i = 0; i < m; ++i) dYprev[i] -= T(0.5) * dP[i];
    } else {
      gemm(true, false, n, T(-0.5), zPrev, dP, T(1), dYprev);     // dY_{k-1} -= Z_{k-1}^T dP / 2
      if (haveDZ) gemm(true, false, n, T(1), p, dZ, T(0), dZprev);  // dZ_{k-1} = P_k^T dZ
      gemm(false, true, n, T(-0.5), dP, yPrev, haveDZ ? T(1) : T(0), dZprev);  // dZ_{k-1} -= dP Y_{k-1}^T / 2
      std::swap(dZ, dZprev);
      haveDZ = true;
    }
    std::swap(dY, dYprev);
  }
  std::copy(dY, dY + m, dA);
}

}  // namespace covpool::cpu
