// Newton-Schulz iteration for the square root of a normalized SPD matrix (iSQRT-COV) and the exact
// derivative of that iteration (not of the true square root).
//   Y0 = A, Z0 = I;  P_k = (3I - Z_{k-1} Y_{k-1}) / 2;  Y_k = Y_{k-1} P_k;  Z_k = P_k Z_{k-1}
//   the last step only forms Y_T = Y_{T-1} P_T.
//
// Every iterate is a polynomial in A, so Y_k, Z_k and P_k are symmetric and commute, and every
// product above is symmetric: each is formed as its upper triangle (gemmUpper) and mirrored,
// 0.57-0.67 of a full GEMM's time (blas.h). The backward reads Y_0..Y_{T-1}, Z_1..Z_{T-1} and
// P_1..P_T from the tape; Z_0 = I is never read, Z_1 = P_1 is not stored twice, and Y_0 (the
// normalized input) is the caller's own copy, which it keeps anyway for the normalization's
// backward: 3T - 3 stored matrices instead of 3T. Each is fresh memory written per item, and at
// n = 64 those writes are not small next to the GEMMs.
//
// Backward. The iteration computes a fixed matrix polynomial S = p(A). For symmetric A the
// Frechet derivative L of a polynomial is self-adjoint on symmetric matrices
// (<G, A^i E A^j> = <A^j G A^i, E> summed over the same pairs), and the layer only ever uses the
// symmetric part of dA (inputs are symmetric; sqrtmItemBackward symmetrizes), so
//   sym(dA) = sym(L*(dS)) = L(sym dS):
// the backward is the forward-mode tangent of the iteration in the direction G = sym(dS). The
// tangents of symmetric, commuting products are symmetric too, e.g.
//   dY_k = dY_{k-1} P_k + Y_{k-1} dP_k,
// so each is one upper triangle of a two-term product. Cost in full n^3 GEMMs (T >= 2): forward
// 3T - 3 products, each half a GEMM in flops; backward 2 + 6 (T - 2) + 4 half-products, i.e.
// (3T - 3)/2 + (6T - 6)/2 GEMMs of flops instead of 3T - 3 + 6T - 6 for the reverse-mode
// tape with full GEMMs: half the flops (T = 5: 18 GEMMs of flops instead of 36).
#pragma once
#include "blas.h"
#include "matrix.h"

namespace covpool::cpu {

template <class T> struct NsTape {
  int n = 0, iters = 0;
  const T* y0 = nullptr;  // Y_0: the caller's kept copy of the normalized input
  T* Y = nullptr;         // Y_1..Y_{T-1}
  T* Z = nullptr;         // Z_2..Z_{T-1}
  T* P = nullptr;         // P_1..P_T
  const T* y(int k) const { return k == 0 ? y0 : ySlot(k); }
  T* ySlot(int k) const { return Y + static_cast<std::size_t>(k - 1) * n * n; }  // k >= 1: written by nsForward
  T* z(int k) const { return k == 1 ? p(1) : Z + static_cast<std::size_t>(k - 2) * n * n; }  // k >= 1
  T* p(int k) const { return P + static_cast<std::size_t>(k - 1) * n * n; }
  static std::size_t matricesNeeded(int iters) {
    return static_cast<std::size_t>(iters - 1) + static_cast<std::size_t>(std::max(0, iters - 2)) + iters;
  }
  // keptY0: the normalized input, which the caller holds unchanged from nsForward to nsBackward.
  void bind(T* storage, int n_, int iters_, const T* keptY0) {
    n = n_; iters = iters_;
    const std::size_t m = static_cast<std::size_t>(n) * n;
    y0 = keptY0;
    Y = storage;
    Z = Y + static_cast<std::size_t>(iters - 1) * m;
    P = Z + static_cast<std::size_t>(std::max(0, iters - 2)) * m;
  }
};

// Forward: Y_0 (the tape's kept input: normalized, symmetric) -> s.
template <class T> void nsForward(T* s, const NsTape<T>& t) {
  const int n = t.n, T_ = t.iters;
  const std::size_t m = static_cast<std::size_t>(n) * n;
  for (int k = 1; k <= T_; ++k) {
    T* p = t.p(k);
    if (k == 1) {  // Z_0 = I: P_1 = (3I - Y_0)/2 without a GEMM
      for (std::size_t i = 0; i < m; ++i) p[i] = T(-0.5) * t.y(0)[i];
    } else {
      symProduct(n, T(-0.5), t.z(k - 1), t.y(k - 1), p);
    }
    for (int i = 0; i < n; ++i) p[i * n + i] += T(1.5);
    if (k < T_) {
      symProduct(n, T(1), t.y(k - 1), p, t.ySlot(k));
      if (k > 1) symProduct(n, T(1), p, t.z(k - 1), t.z(k));  // Z_1 = P_1 is P_1's own slot
    } else {
      symProduct(n, T(1), t.y(k - 1), p, s);
    }
  }
}

// Backward: dS (w.r.t. Y_T, any n x n) -> dA = L(sym dS), symmetric; equal to the symmetric part of
// the reverse-mode gradient (see the top of the file). `work` holds nsWorkMatrices n x n matrices.
constexpr int nsWorkMatrices = 5;
template <class T> void nsBackward(const T* dS, T* dA, const NsTape<T>& t, T* work) {
  const int n = t.n, T_ = t.iters;
  const std::size_t m = static_cast<std::size_t>(n) * n;
  T* dY = work;          // tangent of Y_{k-1}, then of Y_k
  T* dZ = work + m;      // tangent of Z_{k-1}, then of Z_k
  T* dP = work + 2 * m;  // tangent of P_k
  T* dYnext = work + 3 * m;
  T* dZnext = work + 4 * m;
  symmetrize(dS, dY, n);  // dY_0 = G
  for (int k = 1; k <= T_; ++k) {
    const T* yPrev = t.y(k - 1);
    const T* p = t.p(k);
    // dP_k = -(dZ_{k-1} Y_{k-1} + Z_{k-1} dY_{k-1}) / 2; with Z_0 = I, dZ_0 = 0: -G / 2.
    if (k == 1) {
      for (std::size_t i = 0; i < m; ++i) dP[i] = T(-0.5) * dY[i];
    } else {
      symProduct2(n, T(-0.5), dZ, yPrev, t.z(k - 1), dY, dP);
    }
    // dY_k = dY_{k-1} P_k + Y_{k-1} dP_k (the last step's is the result).
    T* yOut = k < T_ ? dYnext : dA;
    symProduct2(n, T(1), dY, p, yPrev, dP, yOut);
    if (k < T_) {
      // dZ_k = dP_k Z_{k-1} + P_k dZ_{k-1}; Z_1 = P_1 so dZ_1 = dP_1.
      if (k == 1) std::copy(dP, dP + m, dZnext);
      else symProduct2(n, T(1), dP, t.z(k - 1), p, dZ, dZnext);
      std::swap(dY, dYnext);
      std::swap(dZ, dZnext);
    }
  }
}

}  // namespace covpool::cpu
